#!/usr/bin/python3
"""Reference renderer for chat templates: Python Jinja2 configured as Hugging
Face transformers configures it for apply_chat_template
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
raise_exception, strftime_now, tojson = json.dumps(ensure_ascii=False)).
Needs Debian's python3-jinja2; run with /usr/bin/python3.

  render_templates.py [--now EPOCH] TEMPLATE_FILE VARS.json
      print the render of one template (errors: message on stderr, exit 1)
  render_templates.py --write-conversations DIR
      write the test conversations (VARS files) used by tests/scripts/templates.sh
  render_templates.py --batch OUT_DIR [--now EPOCH] TEMPLATE_FILE... -- VARS.json...
      render every pair into OUT_DIR/<template>__<vars>.out (or .err)

--now fixes the time strftime_now sees, formatted as UTC (as mica-template).
"""
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        if now is None:
            return datetime.now().strftime(fmt)
        return datetime.fromtimestamp(now, tz=timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, template_text, variables):
    return env.from_string(template_text).render(**variables)


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "Temperature unit"},
                "days": {"type": "integer", "description": "Forecast days"},
            },
            "required": ["city"],
        },
    }},
    {"type": "function", "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "tags": {"type": "array", "items": {"type": "string"}, "description": "Filters"},
            },
            "required": ["query"],
        },
    }},
]

CALL = {"id": "call12345", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}


def conversations():
    base = {"bos_token": "<s>", "eos_token": "</s>", "tools": None}

    def conv(messages, gen=True, **extra):
        d = dict(base)
        d.update({"messages": messages, "add_generation_prompt": gen})
        d.update(extra)
        return d

    sys_msg = {"role": "system", "content": "You are a helpful assistant."}
    u1 = {"role": "user", "content": "Hello! What's 2+2?"}
    a1 = {"role": "assistant", "content": "2 + 2 = 4."}
    u2 = {"role": "user", "content": "Thanks. Now say \"hi\" in Japanese: こんにちは?\n  (two lines)\t{json: [1, 2]}"}
    tool_user = {"role": "user", "content": "What's the weather in Zürich?"}
    tool_call = {"role": "assistant", "content": "", "tool_calls": [CALL]}
    tool_res = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
                "content": "{\"temperature\": 21, \"condition\": \"sunny\"}"}
    tool_final = {"role": "assistant", "content": "It is 21 °C and sunny in Zürich."}
    return {
        "sys_user": conv([sys_msg, u1]),
        "user_only": conv([u1]),
        "multi_turn": conv([u1, a1, u2]),
        "sys_multi_nogen": conv([sys_msg, u1, a1, u2, {"role": "assistant", "content": "こんにちは！"}], gen=False),
        "thinking_off": conv([u1], enable_thinking=False),
        "thinking_on": conv([sys_msg, u1], enable_thinking=True),
        "reasoning": conv([u1, {"role": "assistant", "content": "4.",
                                "reasoning_content": "Simple arithmetic."}, u2]),
        "think_tags": conv([u1, {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nIt is 4."}, u2]),
        "tools_offered": conv([sys_msg, tool_user], tools=TOOLS),
        "tools_call": conv([sys_msg, tool_user, tool_call, tool_res], tools=TOOLS),
        "tools_final": conv([tool_user, tool_call, tool_res, tool_final], gen=False, tools=TOOLS),
        "custom_kwargs": conv([sys_msg, u1], reasoning_effort="high", model_identity="You are Mica."),
        "tools_multi": conv([tool_user, {"role": "assistant", "content": "Checking both.", "tool_calls": [
            CALL, {"id": "call67890", "type": "function",
                   "function": {"name": "search", "arguments": "{\"query\": \"Z\u00fcrich weather\"}"}}]},
            tool_res, dict(tool_res, tool_call_id="call67890", name="search", content="no results")],
            tools=TOOLS),
        "oss_thinking": conv([u1, {"role": "assistant", "content": "4.", "thinking": "2+2 is 4"}], gen=False),
        "empty_content": conv([{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
                               {"role": "user", "content": " spaced \n"}]),
        # The variants below always pass `tools` (a list, possibly empty):
        # templates such as Hermes-3 tool_use iterate over it unconditionally.
        # Most have no system message and alternate user/assistant strictly,
        # so Gemma-2 accepts them too.
        "tl_user_only": conv([u1], tools=[]),
        "tl_multi_turn": conv([u1, a1, u2], tools=TOOLS),
        "tl_sys_multi_nogen": conv([sys_msg, u1, a1, u2, {"role": "assistant", "content": "こんにちは！"}],
                                   gen=False, tools=TOOLS),
        "tl_empty_system": conv([{"role": "system", "content": ""}, u1], tools=TOOLS),
        "tl_empty_strings": conv([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
                                 gen=False, tools=[]),
        "unicode_gen": conv([
            {"role": "user", "content": "👋🏽 Grüße aus Zürich! 🇨🇭👨‍👩‍👧"},
            {"role": "assistant", "content": "你好，世界。今日は良い天気ですね。안녕하세요!"},
            {"role": "user", "content": "مرحبا بالعالم — שלום עולם (RTL) \u200f!"},
            {"role": "assistant", "content": "e\u0301 = é, Ω ≠ ∞, ½ ≤ ¾, ﬁ"},
            {"role": "user", "content": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 zero\u200bwidth, NBSP\u00a0here, tab\tend  "}],
            tools=[]),
        "unicode_nogen": conv([
            {"role": "user", "content": "Переведи: «доброе утро» ✨"},
            {"role": "assistant", "content": "Good morning ☀️ — 早上好 — صباح الخير"}],
            gen=False, tools=TOOLS),
        "reasoning_multi": conv([
            u1, {"role": "assistant", "content": "4.", "reasoning_content": "Let me think… 2+2 is 4."},
            u2, {"role": "assistant", "content": "こんにちは (konnichiwa).",
                 "reasoning_content": "日本語の挨拶。\nKeep it short."}], gen=False, tools=[]),
        "reasoning_gen": conv([
            u1, {"role": "assistant", "content": "", "reasoning_content": "Only reasoning, no answer."},
            {"role": "user", "content": "Again, 🙂?"}], tools=[]),
        "tool_call_gen": conv([tool_user, tool_call], tools=TOOLS),
        "reasoning_tools": conv([tool_user, {"role": "assistant", "content": "",
                                             "reasoning_content": "I need the weather tool.",
                                             "tool_calls": [CALL]},
                                 tool_res, dict(tool_final, reasoning_content="Report the result.")],
                                gen=False, tools=TOOLS),
        "parallel_calls": conv([tool_user, {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call00001", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"東京\", \"days\": 2}"}},
            {"id": "call00002", "type": "function",
             "function": {"name": "search", "arguments": {"query": "Tokyo", "tags": ["news", "天気"]}}}]},
            dict(tool_res, tool_call_id="call00001", content="{\"temperature\": 12}"),
            dict(tool_res, tool_call_id="call00002", name="search", content="[]")], tools=TOOLS),
        "whitespace": conv([
            {"role": "user", "content": "  leading and trailing  "},
            {"role": "assistant", "content": "\n\nnewlines\n\n"},
            {"role": "user", "content": "\ttabs\t and {{ braces }} {% raw %} <|im_end|>"}], tools=[]),
        "content_parts": conv([
            {"role": "user", "content": [{"type": "text", "text": "Describe "},
                                         {"type": "text", "text": "this: ünïcödé"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A list of parts."}]},
            {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]}], tools=[]),
    }


def main(argv):
    now = None
    if len(argv) >= 2 and argv[0] == "--now":
        now = int(argv[1])
        argv = argv[2:]
    if len(argv) == 2 and argv[0] == "--write-conversations":
        os.makedirs(argv[1], exist_ok=True)
        for name, c in conversations().items():
            with open(os.path.join(argv[1], name + ".json"), "w", encoding="utf-8") as f:
                json.dump(c, f, ensure_ascii=False, indent=1)
        return 0
    if len(argv) >= 1 and argv[0] == "--batch":
        out_dir = argv[1]
        rest = argv[2:]
        if len(rest) >= 2 and rest[0] == "--now":
            now = int(rest[1])
            rest = rest[2:]
        sep = rest.index("--")
        templates, var_files = rest[:sep], rest[sep + 1:]
        env = make_env(now)
        os.makedirs(out_dir, exist_ok=True)
        for t in templates:
            with open(t, encoding="utf-8") as f:
                text = f.read()
            tname = os.path.splitext(os.path.basename(t))[0]
            for v in var_files:
                vname = os.path.splitext(os.path.basename(v))[0]
                with open(v, encoding="utf-8") as f:
                    variables = json.load(f)
                base = os.path.join(out_dir, tname + "__" + vname)
                try:
                    out = render(env, text, variables)
                    with open(base + ".out", "w", encoding="utf-8", newline="") as f:
                        f.write(out)
                except Exception as e:  # the C renderer must fail too
                    with open(base + ".err", "w", encoding="utf-8") as f:
                        f.write("%s: %s\n" % (type(e).__name__, e))
        return 0
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        text = f.read()
    with open(argv[1], encoding="utf-8") as f:
        variables = json.load(f)
    try:
        sys.stdout.write(render(make_env(now), text, variables))
    except Exception as e:
        sys.stderr.write("%s: %s\n" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
