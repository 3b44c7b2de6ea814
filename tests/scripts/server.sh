#!/usr/bin/env bash
# mica serve, driven over HTTP with curl (every call bounded by a timeout):
#  - stories260K (converted from llama2.c) on a server with --api-key,
#    --parallel 2, --metrics, --cors: every endpoint and error status,
#    greedy /v1/completions identical to `mica run --temp 0`, stop strings
#    (one split across tokens), seeds, n, logprobs against a numpy
#    log-softmax of `mica logits`, SSE framing and stream == non-stream,
#    4 concurrent requests on 2 slots, prefix reuse (cached_tokens), /metrics;
#  - a generated Qwen3-architecture model with the real Qwen3 vocabulary and
#    chat template: /apply-template with tools and a tool-call round trip
#    against Python Jinja2's render of the same template, thinking on/off,
#    stream == non-stream on random-weight output (multi-byte text), a client
#    that disconnects mid-stream frees its slot;
#  - a tiny MoE model on a server with --mem-budget that forces expert
#    streaming: greedy completions equal a server without it, /metrics
#    exports the expert-cache counters, a budget below the minimum is one
#    error line naming it;
#  - the chat output parser's unit test (think / tool_call splitting);
#  - the official openai npm package (tests/client/client.mjs);
#  - constrained decoding (response_format json_schema / json_object,
#    tool_choice required / named): on stories260K (SentencePiece) and on the
#    Qwen3 model through the openai npm package (tests/client/grammar.mjs),
#    25 schemas and tool calls, each answer checked by Python's jsonschema
#    (tests/server/validate_grammar.py), plus the 400s for bad schemas.
# With CI=true missing data or tools are failures, not skips.
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
T="$B/test-tmp/server"; mkdir -p "$T"
pass=0 fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
finish() { echo "server: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
need() { # file: missing data is a failure in CI, a skip otherwise
    [ -e "$1" ] && return 0
    if [ "${CI:-}" = true ]; then bad "data" "missing $1"; else echo "skip: missing $1"; fi
    return 1
}
PY=/usr/bin/python3
for tool in curl jq node npm; do
    command -v $tool >/dev/null || { bad "setup" "$tool is not installed"; finish; }
done

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

# start_server NAME ARGS... : starts mica serve on a free loopback port; sets PORT.
start_server() {
    local name=$1; shift
    rm -f "$T/$name.err" # the port is read from it: no stale copy
    "$B/mica" serve --host 127.0.0.1 --port 0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
    PIDS+=($!)
    PORT=""
    for _ in $(seq 1 100); do
        PORT=$(sed -nE 's/.*listening on http:\/\/[^ ]+:([0-9]+)$/\1/p' "$T/$name.err" 2>/dev/null)
        [ -n "$PORT" ] && return 0
        kill -0 "$!" 2>/dev/null || break
        sleep 0.1
    done
    bad "start $name" "$(cat "$T/$name.err")"
    return 1
}
# req OUTFILE METHOD URL [BODY] [curl args...] : prints the HTTP status.
req() {
    local out=$1 method=$2 url=$3; shift 3
    local body=${1-}; [ $# -gt 0 ] && shift
    if [ -n "$body" ]; then
        curl -s -m 30 -X "$method" -o "$out" -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary "$body" "$@" "$url"
    else
        curl -s -m 30 -X "$method" -o "$out" -w '%{http_code}' "$@" "$url"
    fi
}
# expect_error NAME STATUS PARAM METHOD PATH BODY [curl args]: status and an OpenAI error object.
expect_error() {
    local name=$1 want=$2 param=$3 method=$4 path=$5 body=$6; shift 6
    local st; st=$(req "$T/err.json" "$method" "$A$path" "$body" "$@")
    if [ "$st" = "$want" ] && jq -e '(.error.message | type == "string") and (.error.type | type == "string")
            and (.error | has("param") and has("code"))' "$T/err.json" >/dev/null 2>&1 &&
       { [ -z "$param" ] || [ "$(jq -r .error.param "$T/err.json")" = "$param" ]; }; then
        ok "$name -> $want"
    else
        bad "$name" "status $st: $(head -c 300 "$T/err.json")"
    fi
}

# ---- the chat output parser (C unit test) ----
if cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iserver -o "$T/test_chat_parse" tests/server/test_chat_parse.c \
      server/chat_parse.c server/util.c -ljansson 2>"$T/cc.err"; then
    "$T/test_chat_parse" >"$T/chat_parse.log"
    np=$(sed -nE 's/^chat-parse: ([0-9]+) passed, ([0-9]+) failed/\1 \2/p' "$T/chat_parse.log")
    if [ -n "$np" ] && [ "${np#* }" = 0 ]; then ok "chat parser unit test (${np% *} checks)"
    else bad "chat parser unit test" "$(grep FAIL "$T/chat_parse.log" | head -5)"; fi
else
    bad "chat parser unit test" "$(head -5 "$T/cc.err")"
fi

# ---- srv_parse_size (--mem-budget) (C unit test) ----
if cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iserver -o "$T/test_util" tests/server/test_util.c server/util.c 2>"$T/cc.err"; then
    "$T/test_util" >"$T/util.log"
    np=$(sed -nE 's/^srv-util: ([0-9]+) passed, ([0-9]+) failed/\1 \2/p' "$T/util.log")
    if [ -n "$np" ] && [ "${np#* }" = 0 ]; then ok "server size parser unit test (${np% *} checks)"
    else bad "server size parser unit test" "$(grep FAIL "$T/util.log" | head -5)"; fi
else
    bad "server size parser unit test" "$(head -5 "$T/cc.err")"
fi

# ---- models ----
need "$D/tinystories/stories260K.bin" || finish
M="$B/test-tmp/golden/stories260K.gguf"
mkdir -p "$B/test-tmp/golden"
[ -f "$M" ] || "$B/mica" convert llama2c "$D/tinystories/stories260K.bin" "$D/tinystories/tok512.bin" -o "$M" 2>/dev/null
[ -f "$M" ] || { bad "model" "cannot convert stories260K"; finish; }
Q="$T/qwen3.gguf"
QT="$D/templates/Qwen-Qwen3-0.6B.jinja"
if need "$D/vocab/ggml-vocab-qwen2.gguf" && need "$QT"; then
    "$B/mica-gen" --preset tiny-qwen3 --type Q8_0 --vocab "$D/vocab/ggml-vocab-qwen2.gguf" --chat-template "$QT" \
        -o "$Q" 2>"$T/gen.err" || { bad "generate qwen3 model" "$(cat "$T/gen.err")"; Q=""; }
else
    Q=""
fi

# ---- server A: stories260K, API key, 2 slots ----
KEY=test-key-123
start_server a -m "$M" -t 1 -c 256 --parallel 2 --api-key "$KEY" --metrics --cors http://example.test --queue 32 || finish
A="http://127.0.0.1:$PORT"
AUTH=(-H "Authorization: Bearer $KEY")

st=$(req "$T/h.json" GET "$A/health")
[ "$st" = 200 ] && [ "$(jq -r .status "$T/h.json")" = ok ] && ok "GET /health without a key -> 200" || bad "health" "$st"
expect_error "GET /v1/models without a key" 401 "" GET /v1/models ""
expect_error "GET /v1/models with a wrong key" 401 "" GET /v1/models "" -H "Authorization: Bearer nope"
expect_error "POST /v1/completions without a key" 401 "" POST /v1/completions '{"model":"m","prompt":"x"}'
st=$(req "$T/models.json" GET "$A/v1/models" "" "${AUTH[@]}")
[ "$st" = 200 ] && [ "$(jq -r '.object + " " + .data[0].id + " " + .data[0].object' "$T/models.json")" = "list stories260K.gguf model" ] &&
    ok "GET /v1/models" || bad "models" "$st $(cat "$T/models.json")"
expect_error "unknown path" 404 "" GET /v1/nothing "" "${AUTH[@]}"
expect_error "GET on a POST endpoint" 405 "" GET /v1/chat/completions "" "${AUTH[@]}"
expect_error "malformed JSON" 400 "" POST /v1/chat/completions '{"model": "m", "messages": [' "${AUTH[@]}"
expect_error "body that is not an object" 400 "" POST /v1/completions '[1,2]' "${AUTH[@]}"
expect_error "duplicate key" 400 "" POST /v1/completions '{"model":"m","prompt":"a","prompt":"b"}' "${AUTH[@]}"
expect_error "invalid UTF-8" 400 "" POST /v1/completions $'{"model":"m","prompt":"\xff\xfe"}' "${AUTH[@]}"
expect_error "unknown field" 400 frobnicate POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"frobnicate":1}' "${AUTH[@]}"
expect_error "unsupported field" 400 reasoning_effort POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low"}' "${AUTH[@]}"
expect_error "missing model" 400 model POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}]}' "${AUTH[@]}"
expect_error "wrong type" 400 temperature POST /v1/completions '{"model":"m","prompt":"a","temperature":"hot"}' "${AUTH[@]}"
expect_error "temperature out of range" 400 temperature POST /v1/completions '{"model":"m","prompt":"a","temperature":3}' "${AUTH[@]}"
expect_error "n over the cap" 400 n POST /v1/completions '{"model":"m","prompt":"a","n":9}' "${AUTH[@]}"
expect_error "top_logprobs without logprobs" 400 top_logprobs POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"top_logprobs":2}' "${AUTH[@]}"
expect_error "response_format with an unsupported schema keyword" 400 response_format POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a+"}}}}' "${AUTH[@]}"
grep -q "'pattern'" "$T/err.json" && ok "the 400 names the unsupported keyword" || bad "keyword in message" "$(cat "$T/err.json")"
expect_error "response_format of an unknown type" 400 response_format POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"yaml"}}' "${AUTH[@]}"
expect_error "response_format json_schema without a name" 400 response_format POST /v1/completions \
    '{"model":"m","prompt":"a","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}' "${AUTH[@]}"
expect_error "unknown role" 400 messages POST /v1/chat/completions '{"model":"m","messages":[{"role":"wizard","content":"hi"}]}' "${AUTH[@]}"
expect_error "image part" 400 "messages[0].content" POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}' "${AUTH[@]}"
expect_error "tool result without a matching call" 400 messages POST /v1/chat/completions \
    '{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"call_9","content":"42"}]}' "${AUTH[@]}"
expect_error "echo" 400 echo POST /v1/completions '{"model":"m","prompt":"a","echo":true}' "${AUTH[@]}"
expect_error "stream_options without stream" 400 stream_options POST /v1/completions \
    '{"model":"m","prompt":"a","stream_options":{"include_usage":true}}' "${AUTH[@]}"
long=$(printf 'Once upon a time %.0s' $(seq 1 120))
expect_error "prompt longer than the context" 400 prompt POST /v1/completions "{\"model\":\"m\",\"prompt\":\"$long\"}" "${AUTH[@]}"
[ "$(jq -r .error.code "$T/err.json")" = context_length_exceeded ] && ok "context_length_exceeded code" || bad "code" "$(cat "$T/err.json")"
expect_error "max_tokens beyond the context" 400 max_tokens POST /v1/completions '{"model":"m","prompt":"a","max_tokens":300}' "${AUTH[@]}"
head -c $((9 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$T/big.json"
st=$(curl -s -m 30 -o "$T/big.out" -w '%{http_code}' -H 'Content-Type: application/json' "${AUTH[@]}" \
     --data-binary @"$T/big.json" "$A/v1/completions")
[ "$st" = 413 ] && jq -e .error.message "$T/big.out" >/dev/null 2>&1 && ok "9 MiB body -> 413" || bad "413" "$st $(head -c 200 "$T/big.out")"
st=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X OPTIONS -D "$T/cors.h" "$A/v1/chat/completions")
[ "$st" = 204 ] && grep -qi '^access-control-allow-origin: http://example.test' "$T/cors.h" &&
    ok "CORS preflight" || bad "cors" "$st $(cat "$T/cors.h")"

# tokenize / detokenize against the CLI tokenizer
st=$(req "$T/tok.json" POST "$A/tokenize" '{"content":"Once upon a time","add_special":true}' "${AUTH[@]}")
cli_ids=$("$B/mica" tokenize -m "$M" -p "Once upon a time" 2>/dev/null)
srv_ids=$(jq -r '.tokens | map(tostring) | join(" ")' "$T/tok.json")
[ "$st" = 200 ] && [ -n "$cli_ids" ] && [ "$srv_ids" = "$cli_ids" ] && ok "/tokenize equals mica tokenize ($srv_ids)" ||
    bad "tokenize" "$st '$srv_ids' vs '$cli_ids'"
st=$(req "$T/detok.json" POST "$A/detokenize" "{\"tokens\":$(jq -c .tokens "$T/tok.json")}" "${AUTH[@]}")
[ "$st" = 200 ] && [ "$(jq -r .content "$T/detok.json")" = "Once upon a time" ] && ok "/detokenize round trip (BOS text left out)" ||
    bad "detokenize" "$st $(cat "$T/detok.json")"
expect_error "detokenize out-of-range id" 400 tokens POST /detokenize '{"tokens":[1,99999]}' "${AUTH[@]}"

# greedy completion == mica run --temp 0
P="Once upon a time"
"$B/mica" run -m "$M" -p "$P" -n 40 --temp 0 -t 1 -c 256 >"$T/run.txt" 2>/dev/null
want=$(cat "$T/run.txt"); want=${want#"$P"}
st=$(req "$T/c1.json" POST "$A/v1/completions" "{\"model\":\"m\",\"prompt\":\"$P\",\"max_tokens\":40,\"temperature\":0}" "${AUTH[@]}")
got=$(jq -r '.choices[0].text' "$T/c1.json")
[ "$st" = 200 ] && [ -n "$want" ] && [ "$got" = "$want" ] && ok "greedy /v1/completions equals mica run --temp 0" ||
    bad "greedy completion" "$st '$got' vs '$want'"
jq -e '.object == "text_completion" and (.id | startswith("cmpl-")) and (.created | type == "number") and
       .usage.prompt_tokens == 5 and .usage.completion_tokens == 40 and .usage.total_tokens == 45 and
       (.usage.prompt_tokens_details.cached_tokens | type == "number") and .choices[0].finish_reason == "length"' \
    "$T/c1.json" >/dev/null && ok "completion response fields and usage" || bad "completion fields" "$(cat "$T/c1.json")"

# stop strings: one inside a token sequence, cut before it
for stop in "Lily" "le gi"; do
    cut=${want%%"$stop"*}
    [ "$cut" = "$want" ] && { bad "stop '$stop'" "not in the greedy text"; continue; }
    st=$(req "$T/stop.json" POST "$A/v1/completions" \
        "{\"model\":\"m\",\"prompt\":\"$P\",\"max_tokens\":40,\"temperature\":0,\"stop\":[\"zzz\",\"$stop\"]}" "${AUTH[@]}")
    [ "$(jq -r '.choices[0].text' "$T/stop.json")" = "$cut" ] && [ "$(jq -r '.choices[0].finish_reason' "$T/stop.json")" = stop ] &&
        ok "stop '$stop' cuts before it (finish_reason stop)" || bad "stop '$stop'" "$(cat "$T/stop.json")"
    curl -s -N -m 30 "${AUTH[@]}" "$A/v1/completions" -d "{\"model\":\"m\",\"prompt\":\"$P\",\"max_tokens\":40,\"temperature\":0,\"stop\":\"$stop\",\"stream\":true}" >"$T/stop.sse"
    sgot=$(sed -n 's/^data: //p' "$T/stop.sse" | grep -v '^\[DONE\]' | jq -j '.choices[0].text')
    [ "$sgot" = "$cut" ] && ok "stop '$stop' in a stream (never sent)" || bad "stream stop '$stop'" "'$sgot'"
done

# sampling: seeds, n
body='{"model":"m","prompt":"Once upon a time","max_tokens":24,"temperature":1.0,"top_p":0.9,"seed":1234}'
req "$T/s1.json" POST "$A/v1/completions" "$body" "${AUTH[@]}" >/dev/null
req "$T/s2.json" POST "$A/v1/completions" "$body" "${AUTH[@]}" >/dev/null
req "$T/s3.json" POST "$A/v1/completions" "${body/1234/99}" "${AUTH[@]}" >/dev/null
a1=$(jq -r '.choices[0].text' "$T/s1.json"); a2=$(jq -r '.choices[0].text' "$T/s2.json"); a3=$(jq -r '.choices[0].text' "$T/s3.json")
[ -n "$a1" ] && [ "$a1" = "$a2" ] && ok "same seed, same text" || bad "seed" "'$a1' vs '$a2'"
[ "$a1" != "$a3" ] && ok "another seed, another text" || bad "seed 2" "'$a1' = '$a3'"
st=$(req "$T/n.json" POST "$A/v1/completions" '{"model":"m","prompt":"Once upon a time","max_tokens":12,"temperature":1,"seed":5,"n":3}' "${AUTH[@]}")
[ "$(jq '[.choices[].index] == [0,1,2] and (.usage.completion_tokens == ([.choices[].text] | length) * 0 + .usage.completion_tokens)' "$T/n.json")" = true ] &&
    [ "$(jq '[.choices[].text] | unique | length' "$T/n.json")" -ge 2 ] && ok "n=3 gives 3 choices" || bad "n" "$(cat "$T/n.json")"
st=$(req "$T/pen.json" POST "$A/v1/completions" "{\"model\":\"m\",\"prompt\":\"$P\",\"max_tokens\":40,\"temperature\":0,\"frequency_penalty\":2,\"presence_penalty\":1}" "${AUTH[@]}")
pen=$(jq -r '.choices[0].text' "$T/pen.json")
[ "$st" = 200 ] && [ -n "$pen" ] && [ "$pen" != "$want" ] && ok "presence/frequency penalties change the greedy text" ||
    bad "penalties" "$st '$pen'"

# logprobs: the server's values against numpy's log-softmax of mica logits
st=$(req "$T/lp.json" POST "$A/v1/completions" "{\"model\":\"m\",\"prompt\":\"$P\",\"max_tokens\":1,\"temperature\":0,\"logprobs\":5}" "${AUTH[@]}")
"$B/mica" logits -m "$M" -p "$P" -o "$T/logits.f32" -t 1 2>/dev/null
if [ "$st" = 200 ] && [ -f "$T/logits.f32" ] && "$PY" - "$T/logits.f32" "$T/lp.json" 512 <<'PYEOF'
import json, sys
import numpy as np
x = np.fromfile(sys.argv[1], dtype=np.float32).reshape(-1, int(sys.argv[3]))[-1].astype(np.float64)
lsm = x - (x.max() + np.log(np.exp(x - x.max()).sum()))
lp = json.load(open(sys.argv[2]))["choices"][0]["logprobs"]
tops = sorted(lp["top_logprobs"][0].values(), reverse=True)
want = np.sort(lsm)[::-1][:5]
assert abs(lp["token_logprobs"][0] - want[0]) < 1e-3, (lp["token_logprobs"][0], want[0])
assert len(tops) == 5 and np.allclose(tops, want, atol=1e-3), (tops, want)
PYEOF
then ok "logprobs equal numpy's log-softmax of the model's logits"; else bad "logprobs" "$(head -c 400 "$T/lp.json")"; fi

# constrained decoding with a SentencePiece vocabulary (both endpoints, streamed and not):
# the answers validate against the schema (Python's jsonschema, an independent validator)
SCH='{"type":"object","properties":{"who":{"enum":["Lily","Tom","Sue"]},"age":{"type":"integer","minimum":1},"happy":{"type":"boolean"}},"required":["who","age","happy"],"additionalProperties":false}'
RF="\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"kid\",\"schema\":$SCH,\"strict\":true}}"
: >"$T/spm_json.txt"
for seed in 1 2 3; do
    req "$T/sj.json" POST "$A/v1/completions" "{\"model\":\"m\",\"prompt\":\"$P\",\"max_tokens\":120,\"seed\":$seed,$RF}" "${AUTH[@]}" >/dev/null
    jq -c '[.choices[0].finish_reason, .choices[0].text]' "$T/sj.json" >>"$T/spm_json.txt"
    curl -s -N -m 30 "${AUTH[@]}" "$A/v1/chat/completions" -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"$P\"}],\"max_tokens\":120,\"seed\":$seed,\"stream\":true,$RF}" >"$T/sj.sse"
    sed -n 's/^data: //p' "$T/sj.sse" | grep -v '^\[DONE\]' |
        jq -s -c '[(map(.choices[0].finish_reason) | map(select(. != null)) | .[0]), (map(.choices[0].delta.content // "") | join(""))]' >>"$T/spm_json.txt"
done
if "$PY" - "$T/spm_json.txt" "$SCH" <<'PYEOF'
import json, sys
import jsonschema
schema = json.loads(sys.argv[2])
lines = open(sys.argv[1]).read().split("\n")[:-1]
assert len(lines) == 6, lines
for line in lines:
    finish, text = json.loads(line)
    assert finish == "stop", (finish, text)
    jsonschema.validate(json.loads(text), schema)
PYEOF
then ok "response_format json_schema on a SentencePiece vocabulary: 6 answers validate (completions and chat, streamed and not)"
else bad "spm json_schema" "$(head -c 600 "$T/spm_json.txt")"; fi
# the same schema through mica run --json-schema
printf '%s' "$SCH" >"$T/kid_schema.json"
runok=1
for seed in 1 2; do
    "$B/mica" run -m "$M" -p "$P" --json-schema "$T/kid_schema.json" -n 150 --seed $seed -t 1 -c 256 2>/dev/null >"$T/run_json.txt" || runok=0
    "$PY" - "$T/run_json.txt" "$P" "$SCH" <<'PYEOF' || runok=0
import json, sys
import jsonschema
text = open(sys.argv[1]).read()
assert text.startswith(sys.argv[2]) and text.endswith("\n"), repr(text)
jsonschema.validate(json.loads(text[len(sys.argv[2]):]), json.loads(sys.argv[3]))
PYEOF
done
[ $runok = 1 ] && ok "mica run --json-schema: the output validates" || bad "mica run --json-schema" "$(head -c 300 "$T/run_json.txt")"

# chat: non-streaming vs streaming, SSE framing
CHAT='{"model":"m","messages":[{"role":"system","content":"You tell stories."},{"role":"user","content":[{"type":"text","text":"Once upon"},{"type":"text","text":"a time"}]}],"temperature":0,"max_tokens":30'
st=$(req "$T/chat.json" POST "$A/v1/chat/completions" "$CHAT}" "${AUTH[@]}")
jq -e '.object == "chat.completion" and (.id | startswith("chatcmpl-")) and .choices[0].message.role == "assistant"
       and (.choices[0].message.content | type == "string") and (.choices[0].finish_reason | IN("stop","length"))
       and .usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens' "$T/chat.json" >/dev/null &&
    ok "chat completion fields" || bad "chat" "$st $(cat "$T/chat.json")"
curl -s -N -m 30 "${AUTH[@]}" "$A/v1/chat/completions" -d "$CHAT,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$T/chat.sse"
if "$PY" - "$T/chat.sse" "$T/chat.json" <<'PYEOF'
import json, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8")
full = json.load(open(sys.argv[2]))
assert raw.endswith("data: [DONE]\n\n"), "must end with [DONE]"
events = raw.split("\n\n")[:-1]
assert all(e.startswith("data: ") and "\n" not in e for e in events), "framing"
chunks = [json.loads(e[6:]) for e in events[:-1]]
assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
assert text == full["choices"][0]["message"]["content"], (text, full["choices"][0]["message"]["content"])
fin = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert fin == [full["choices"][0]["finish_reason"]], fin
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == full["usage"]["completion_tokens"]
PYEOF
then ok "SSE framing; deltas concatenate to the non-streamed answer; finish and usage chunks"
else bad "chat stream" "$(head -c 600 "$T/chat.sse")"; fi

# prefix reuse: the same conversation again reuses all but the last prompt token
req "$T/chat2.json" POST "$A/v1/chat/completions" "$CHAT}" "${AUTH[@]}" >/dev/null
pt=$(jq .usage.prompt_tokens "$T/chat2.json"); ct=$(jq .usage.prompt_tokens_details.cached_tokens "$T/chat2.json")
[ "$ct" = $((pt - 1)) ] && [ "$(jq -r .choices[0].message.content "$T/chat2.json")" = "$(jq -r .choices[0].message.content "$T/chat.json")" ] &&
    ok "prefix reuse: cached_tokens $ct of $pt, same answer" || bad "cached_tokens" "$ct of $pt"

# 4 concurrent requests on 2 slots: each equals its sequential answer
prompts=("Once upon a time" "The cat sat" "Lily went to the park" "Tom had a big red ball")
for i in 0 1 2 3; do
    req "$T/seq$i.json" POST "$A/v1/completions" "{\"model\":\"m\",\"prompt\":\"${prompts[$i]}\",\"max_tokens\":60,\"temperature\":0}" "${AUTH[@]}" >/dev/null
done
for i in 0 1 2 3; do
    req "$T/par$i.json" POST "$A/v1/completions" "{\"model\":\"m\",\"prompt\":\"${prompts[$i]}\",\"max_tokens\":60,\"temperature\":0}" "${AUTH[@]}" >"$T/par$i.st" &
done
wait_ok=1
for j in $(jobs -p); do [ "$j" = "${PIDS[0]}" ] || wait "$j" || true; done
for i in 0 1 2 3; do
    [ "$(cat "$T/par$i.st")" = 200 ] && [ "$(jq -r .choices[0].text "$T/par$i.json")" = "$(jq -r .choices[0].text "$T/seq$i.json")" ] || wait_ok=0
done
[ $wait_ok = 1 ] && ok "4 concurrent requests on 2 slots all answer as sequentially" || bad "parallel" "$(cat "$T"/par*.st)"

# load: 32 concurrent streaming clients, 2 requests each, on 2 slots (queue 32:
# a refused one (429) would retry after a pause); every stream completes
# with [DONE] and a usage chunk counting the tokens it sent
mkdir -p "$T/load"; rm -f "$T/load/"*
for i in $(seq 1 32); do
    (for k in 1 2; do
        for attempt in $(seq 1 50); do
            st=$(curl -s -N -m 60 -o "$T/load/$i-$k.sse" -w '%{http_code}' "${AUTH[@]}" "$A/v1/completions" \
                 -d "{\"model\":\"m\",\"prompt\":\"Once upon a time $i\",\"max_tokens\":64,\"temperature\":1,\"seed\":$k,\"stream\":true,\"stream_options\":{\"include_usage\":true}}")
            [ "$st" = 429 ] || break
            sleep 0.2
        done
        echo "$st" >"$T/load/$i-$k.st"
    done) &
done
wait_load=0
for j in $(jobs -p); do [ "$j" = "${PIDS[0]}" ] || wait "$j" || true; done
for f in "$T"/load/*.sse; do
    [ "$(cat "${f%.sse}.st")" = 200 ] || continue
    n=$(sed -n 's/^data: //p' "$f" | grep -v '^\[DONE\]' | jq -s '[.[] | select(.choices | length > 0) | select(.choices[0].finish_reason == null)] | length' 2>/dev/null)
    u=$(sed -n 's/^data: //p' "$f" | grep -v '^\[DONE\]' | jq -s '.[-1].usage.completion_tokens' 2>/dev/null)
    tail -c 14 "$f" | grep -q 'data: \[DONE\]' && [ -n "$n" ] && [ "$n" = "$u" ] && wait_load=$((wait_load + 1))
done
[ "$wait_load" = 64 ] && ok "32 concurrent streaming clients x 2 requests: all complete, token counts match" ||
    bad "load" "$wait_load of 64 streams complete"

# metrics
st=$(req "$T/metrics.txt" GET "$A/metrics" "" "${AUTH[@]}")
if [ "$st" = 200 ] && grep -q '^mica_requests_total [1-9]' "$T/metrics.txt" && grep -q '^mica_generated_tokens_total [1-9]' "$T/metrics.txt" &&
   grep -q '^mica_slots 2$' "$T/metrics.txt" && grep -q '^mica_requests_active 0$' "$T/metrics.txt" &&
   grep -q '^mica_requests_queued 0$' "$T/metrics.txt" && grep -q '^mica_generation_tokens_per_second [0-9]' "$T/metrics.txt" &&
   grep -q '^mica_prompt_tokens_cached_total [1-9]' "$T/metrics.txt" && grep -q '^mica_kv_cache_tokens [1-9]' "$T/metrics.txt"; then
    ok "/metrics (Prometheus text)"
else
    bad "metrics" "$st $(head -c 300 "$T/metrics.txt")"
fi

# the openai npm package
if (cd tests/client && timeout 120 npm install --no-audit --no-fund --silent >"../../$T/npm.log" 2>&1); then
    timeout 60 node tests/client/client.mjs "$A/v1" "$KEY" >"$T/client.log" 2>&1
    cat "$T/client.log" | sed 's/^/  client: /'
    cl=$(sed -nE 's/^client: ([0-9]+) passed, ([0-9]+) failed/\1 \2/p' "$T/client.log")
    [ -n "$cl" ] && [ "${cl#* }" = 0 ] && ok "openai npm client (${cl% *} checks)" || bad "openai npm client" "see above"
else
    bad "npm install openai" "$(tail -5 "$T/npm.log")"
fi

# ---- server B: Qwen3 architecture, real Qwen3 vocabulary and template ----
if [ -n "$Q" ] && start_server q -m "$Q" -t 2 -c 8192 --timeout 4 --queue 1; then
    QS="http://127.0.0.1:$PORT"
    TOOLS='[{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]'
    MSGS='[{"role":"system","content":"You are helpful."},{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"18 C, sunny"}]'
    st=$(curl -s -m 30 -o "$T/tmpl.json" -w '%{http_code}' "$QS/apply-template" -d "{\"model\":\"q\",\"messages\":$MSGS,\"tools\":$TOOLS}")
    # reference: Python Jinja2 renders the same template with the OpenAI
    # messages (tool-call arguments as an object, as the server passes them)
    echo "{\"messages\":$MSGS,\"tools\":$TOOLS,\"add_generation_prompt\":true,\"bos_token\":\"\",\"eos_token\":\"<|endoftext|>\"}" |
        jq '.messages[2].tool_calls[0].function.arguments |= fromjson' >"$T/tmpl_vars.json"
    if [ "$st" = 200 ] && "$PY" tests/ref/render_templates.py "$QT" "$T/tmpl_vars.json" >"$T/tmpl_ref.txt" 2>"$T/tmpl_ref.err" &&
       [ "$(jq -r .prompt "$T/tmpl.json")" = "$(cat "$T/tmpl_ref.txt")" ] &&
       grep -q '<tool_call>' "$T/tmpl_ref.txt" && grep -q '<tool_response>' "$T/tmpl_ref.txt"; then
        ok "qwen3: tools and a tool-call round trip render as Python Jinja2 renders them"
    else
        bad "qwen3 template" "$st $(head -c 300 "$T/tmpl.json") | $(head -c 300 "$T/tmpl_ref.err")"
    fi
    st=$(curl -s -m 30 -o "$T/tmpl2.json" -w '%{http_code}' "$QS/apply-template" -d '{"model":"q","messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"enable_thinking":false}}')
    [ "$st" = 200 ] && jq -e '.prompt | endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")' "$T/tmpl2.json" >/dev/null &&
        ok "qwen3: chat_template_kwargs reach the template (enable_thinking false)" || bad "kwargs" "$(cat "$T/tmpl2.json")"
    NAMED=',"tool_choice":{"type":"function","function":{"name":"get_weather"}},"n":2,"seed":3,"max_completion_tokens":20'
    for think in true false named; do
        extra=""; [ $think = named ] && { extra=$NAMED; think=true; }
        QB="{\"model\":\"q\",\"messages\":$MSGS,\"tools\":$TOOLS,\"temperature\":0,\"max_tokens\":48,\"chat_template_kwargs\":{\"enable_thinking\":$think}$extra"
        [ -n "$extra" ] && think="true, named tool_choice, n=2"
        st=$(curl -s -m 30 -o "$T/q.json" -w '%{http_code}' "$QS/v1/chat/completions" -d "$QB}")
        curl -s -N -m 30 "$QS/v1/chat/completions" -d "$QB,\"stream\":true}" >"$T/q.sse"
        if [ "$st" = 200 ] && "$PY" - "$T/q.sse" "$T/q.json" <<'PYEOF'
import json, sys
raw = open(sys.argv[1], "rb").read().decode("utf-8")
assert raw.endswith("data: [DONE]\n\n")
full = json.load(open(sys.argv[2]))
chunks = [json.loads(e[6:]) for e in raw.split("\n\n")[:-1] if e != "data: [DONE]"]
assert len(full["choices"]) in (1, 2)
for i, ch in enumerate(full["choices"]):
    mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
    content = "".join(c["delta"].get("content") or "" for c in mine)
    reasoning = "".join(c["delta"].get("reasoning_content") or "" for c in mine)
    calls = [t for c in mine for t in c["delta"].get("tool_calls") or []]
    msg = ch["message"]
    assert content == (msg["content"] or ""), (content, msg["content"])
    assert reasoning == msg.get("reasoning_content", ""), (reasoning, msg.get("reasoning_content"))
    firsts = [t for t in calls if "id" in t]
    assert [t["index"] for t in firsts] == list(range(len(msg.get("tool_calls") or []))), calls
    assert [t["function"]["name"] for t in firsts] == [t["function"]["name"] for t in msg.get("tool_calls") or []]
    assert mine[0]["delta"].get("role") == "assistant" and mine[-1]["finish_reason"] == ch["finish_reason"]
    assert "<|im_end|>" not in content and "<|im_start|>" not in content
PYEOF
        then ok "qwen3 (thinking $think): stream equals non-stream on random-weight output"
        else bad "qwen3 stream (thinking $think)" "$st $(head -c 400 "$T/q.json")"; fi
    done
    st=$(curl -s -m 30 -o "$T/req.json" -w '%{http_code}' "$QS/v1/chat/completions" -d "{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"}],\"tools\":$TOOLS,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}")
    [ "$st" = 400 ] && [ "$(jq -r .error.param "$T/req.json")" = tool_choice ] && ok "qwen3: tool_choice naming an unknown function -> 400" ||
        bad "tool_choice unknown" "$st $(cat "$T/req.json")"
    # the per-request wall-time cap (--timeout 4) ends a long generation with "length"
    t0=$(date +%s.%N)
    st=$(curl -s -m 30 -o "$T/long.json" -w '%{http_code}' "$QS/v1/chat/completions" -d '{"model":"q","messages":[{"role":"user","content":"Talk"}],"max_tokens":8000,"temperature":0,"logit_bias":{"151645":-100,"151643":-100}}')
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    [ "$st" = 200 ] && [ "$(jq -r .choices[0].finish_reason "$T/long.json")" = length ] &&
        [ "$(jq .usage.completion_tokens "$T/long.json")" -lt 8000 ] && awk -v d="$dt" 'BEGIN { exit !(d < 10) }' &&
        ok "--timeout ends a long generation (finish_reason length after $dt s)" || bad "timeout" "$st ${dt}s $(jq -c .usage "$T/long.json")"
    # queue full: one request generating, one waiting (--queue 1), the next gets 429 + Retry-After;
    # the two streaming clients then leave (curl -m) and their slot is freed
    LONG='{"model":"q","messages":[{"role":"user","content":"Talk"}],"max_tokens":1000,"temperature":1,"stream":true}'
    curl -s -N -m 2 -o "$T/busy1.sse" "$QS/v1/chat/completions" -d "$LONG" & b1=$!
    sleep 0.4
    curl -s -N -m 1.6 -o "$T/busy2.sse" "$QS/v1/chat/completions" -d "$LONG" & b2=$!
    sleep 0.4
    st=$(curl -s -m 30 -o "$T/full.json" -D "$T/full.h" -w '%{http_code}' "$QS/v1/chat/completions" -d "$LONG")
    wait $b1 $b2
    [ "$st" = 429 ] && grep -qi '^retry-after: [0-9]' "$T/full.h" && jq -e .error.message "$T/full.json" >/dev/null &&
        grep -q '^data: ' "$T/busy1.sse" && ok "queue full -> 429 with Retry-After" ||
        bad "queue full" "$st $(cat "$T/full.json") $(head -c 100 "$T/busy1.sse")"
    idle=0
    for _ in $(seq 1 40); do
        curl -s -m 5 "$QS/health" >"$T/qh.json"
        [ "$(jq '.active + .queued' "$T/qh.json")" = 0 ] && { idle=1; break; }
        sleep 0.1
    done
    [ $idle = 1 ] && ok "the slot and the queue are free again after both streaming clients left" || bad "idle" "$(cat "$T/qh.json")"
    # a client that disconnects mid-stream frees its slot
    curl -s -N -m 1 "$QS/v1/chat/completions" -d '{"model":"q","messages":[{"role":"user","content":"Talk"}],"max_tokens":900,"temperature":1,"stream":true}' >"$T/cut.sse" 2>/dev/null
    freed=0
    for _ in $(seq 1 30); do
        curl -s -m 5 "$QS/health" >"$T/qh.json"
        [ "$(jq .active "$T/qh.json")" = 0 ] && { freed=1; break; }
        sleep 0.1
    done
    grep -q '^data: ' "$T/cut.sse" && [ $freed = 1 ] && ok "a client that disconnects mid-stream frees its slot" ||
        bad "disconnect" "$(cat "$T/qh.json") $(head -c 200 "$T/cut.sse")"
fi

# ---- server G: constrained decoding on the Qwen3 model (no wall-time cap) ----
# 25 schemas through response_format, json_object, tool_choice required and
# named (streamed and not), parallel calls, a round trip and the error cases,
# driven by the openai npm package (tests/client/grammar.mjs); every answer is
# then checked by Python's jsonschema (tests/server/validate_grammar.py).
if [ -n "$Q" ] && [ -d tests/client/node_modules/openai ] && start_server g -m "$Q" -t 2 -c 4096; then
    GS="http://127.0.0.1:$PORT"
    timeout 300 node tests/client/grammar.mjs "$GS/v1" tests/server/grammar_schemas.json "$T/grammar_results.json" \
        >"$T/grammar_client.log" 2>&1
    sed 's/^/  grammar client: /' "$T/grammar_client.log"
    cl=$(sed -nE 's/^grammar-client: ([0-9]+) passed, ([0-9]+) failed/\1 \2/p' "$T/grammar_client.log")
    [ -n "$cl" ] && [ "${cl#* }" = 0 ] && ok "constrained decoding through the openai npm client (${cl% *} checks)" ||
        bad "grammar client" "see above"
    if [ -f "$T/grammar_results.json" ]; then
        "$PY" tests/server/validate_grammar.py "$T/grammar_results.json" >"$T/grammar_validate.log" 2>&1
        sed 's/^/  validate: /' "$T/grammar_validate.log"
        gv=$(sed -nE 's/^grammar-validate: ([0-9]+) passed, ([0-9]+) failed/\1 \2/p' "$T/grammar_validate.log")
        [ -n "$gv" ] && [ "${gv#* }" = 0 ] && [ "${gv% *}" -ge 30 ] &&
            ok "every constrained answer validates against its schema (${gv% *} answers, Python jsonschema)" ||
            bad "grammar validation" "see above"
    fi
elif [ -n "$Q" ]; then
    bad "grammar server" "cannot start it, or the openai package is missing"
fi

# ---- servers C and D: a tiny MoE model with and without --mem-budget (issue 7) ----
# The budget (resident part plus one layer's experts) is computed here from the
# GGUF tensor table, as tests/scripts/stream.sh does, not by mica.
moe_layout() { # FILE -> "dense experts n_per_layer slot" (slot: O_DIRECT-aligned expert, 4 KiB blocks)
    "$PY" - "$1" <<'PYEOF'
import re, struct, sys
d = open(sys.argv[1], 'rb').read()
def s(o):
    n, = struct.unpack_from('<Q', d, o); return d[o + 8:o + 8 + n].decode('utf-8', 'replace'), o + 8 + n
fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t, o):
    if t == 8: return s(o)[1]
    if t == 9:
        et, n = struct.unpack_from('<IQ', d, o); o += 12
        if et in fixed: return o + fixed[et] * n
        for _ in range(n): o = skip(et, o)
        return o
    return o + fixed[t]
nt, nkv = struct.unpack_from('<QQ', d, 8); off = 24
for _ in range(nkv):
    k, off = s(off); t, = struct.unpack_from('<I', d, off); off = skip(t, off + 4)
bs = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144), 14: (256, 210)}
dense = experts = 0; per_layer = {}
for _ in range(nt):
    name, off = s(off); nd, = struct.unpack_from('<I', d, off); off += 4
    ne = struct.unpack_from('<%dQ' % nd, d, off); off += 8 * nd
    t, _o = struct.unpack_from('<IQ', d, off); off += 12
    n = 1
    for x in ne: n *= x
    nb = n // bs[t][0] * bs[t][1]
    m = re.fullmatch(r'blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight', name)
    if m:
        experts += nb
        L = per_layer.setdefault(int(m.group(1)), [ne[2], 0])
        L[1] += -(-(nb // ne[2] + 4095) // 4096) * 4096   # aligned superset of one expert's part
    else:
        dense += nb
print(dense, experts, max(v[0] for v in per_layer.values()), max(v[1] for v in per_layer.values()))
PYEOF
}
MOE="$T/moe.gguf"
if "$B/mica-gen" --preset tiny-qwen3moe --type Q8_0 --seed 1 -o "$MOE" 2>"$T/gen.err" &&
   read -r mdense mexperts mper mslot <<<"$(moe_layout "$MOE")" && [ -n "$mslot" ]; then
    budget=$((mdense + mper * mslot)) # resident part + one layer's experts (< the whole model)
    minb=$((mdense + 4 * mslot))      # resident part + expert_used_count (4) slots
    [ "$budget" -lt "$((mdense + mexperts))" ] || bad "moe budget" "$budget does not force streaming"
    MP='{"model":"m","prompt":"Once upon a time","max_tokens":48,"temperature":0}'
    MP2='{"model":"m","prompt":"The cat sat on","max_tokens":48,"temperature":0}'
    if start_server moe -m "$MOE" -t 1 -c 256 --metrics --mem-budget "$budget"; then
        MS="http://127.0.0.1:$PORT"
        st1=$(req "$T/moe1.json" POST "$MS/v1/completions" "$MP"); st2=$(req "$T/moe2.json" POST "$MS/v1/completions" "$MP2")
        st=$(req "$T/moe_metrics.txt" GET "$MS/metrics")
        if start_server moeref -m "$MOE" -t 1 -c 256 --metrics; then
            RS="http://127.0.0.1:$PORT"
            req "$T/moeref1.json" POST "$RS/v1/completions" "$MP" >/dev/null; req "$T/moeref2.json" POST "$RS/v1/completions" "$MP2" >/dev/null
            req "$T/moeref_metrics.txt" GET "$RS/metrics" >/dev/null
            t1=$(jq -r .choices[0].text "$T/moe1.json"); t2=$(jq -r .choices[0].text "$T/moe2.json")
            if [ "$st1$st2" = 200200 ] && [ "$(jq .usage.completion_tokens "$T/moe1.json")" -ge 8 ] &&
               [ "$t1" = "$(jq -r .choices[0].text "$T/moeref1.json")" ] && [ "$t2" = "$(jq -r .choices[0].text "$T/moeref2.json")" ]; then
                ok "moe: greedy completions with --mem-budget $budget (experts streamed) equal those without"
            else
                bad "moe placement" "$st1 $st2 $(head -c 200 "$T/moe1.json") vs $(head -c 200 "$T/moeref1.json")"
            fi
            grep -q '^mica_experts_streaming 0$' "$T/moeref_metrics.txt" && grep -q '^mica_expert_lookups_total 0$' "$T/moeref_metrics.txt" &&
                ok "moe: /metrics of the server without --mem-budget: not streaming" ||
                bad "moe ref metrics" "$(grep '^mica_expert' "$T/moeref_metrics.txt" | head -5)"
        fi
        mval() { sed -nE "s/^$1 ([0-9.e+-]+)$/\1/p" "$T/moe_metrics.txt"; }
        look=$(mval mica_expert_lookups_total); hits=$(mval mica_expert_hits_total); miss=$(mval mica_expert_misses_total)
        res=$(mval mica_resident_bytes); cache=$(mval mica_expert_cache_bytes)
        # every sample of the exposition has its HELP and TYPE lines
        untyped=$(awk '/^# TYPE /{t[$3]=1} /^# HELP /{h[$3]=1} /^[a-z]/{ if (!t[$1] || !h[$1]) print $1 }' "$T/moe_metrics.txt")
        if [ "$st" = 200 ] && grep -q '^mica_experts_streaming 1$' "$T/moe_metrics.txt" &&
           [ "$(mval mica_memory_budget_bytes)" = "$budget" ] && [ "${look:-0}" -gt 0 ] && [ $((hits + miss)) = "$look" ] &&
           [ "$(mval mica_expert_cache_slots)" = "$mper" ] && [ $((res + cache)) -le "$budget" ] && [ "$res" = "$mdense" ] &&
           [ "$(mval mica_expert_read_bytes_total)" -gt 0 ] && [ -n "$(mval mica_expert_stall_seconds_total)" ] &&
           [ -n "$(mval mica_expert_io_busy_seconds_total)" ] && [ -n "$(mval mica_expert_prefetch_reads_total)" ] &&
           grep -q '^# TYPE mica_expert_lookups_total counter$' "$T/moe_metrics.txt" &&
           grep -q '^# TYPE mica_expert_cache_experts gauge$' "$T/moe_metrics.txt" && [ -z "$untyped" ]; then
            ok "moe: /metrics exports the expert cache (streaming 1, $look lookups = $hits hits + $miss misses, resident + cache <= budget)"
        else
            bad "moe metrics" "$st look=$look hits=$hits miss=$miss res=$res cache=$cache untyped=$untyped $(grep '^mica_expert' "$T/moe_metrics.txt" | head -3)"
        fi
        unset -f mval
        grep -q '^mica serve: streaming the routed experts' "$T/moe.err" && ok "moe: start-up says the experts stream" ||
            bad "moe start-up" "$(cat "$T/moe.err")"
    fi
    # a budget below the minimum: a non-zero exit and one line naming the minimum
    if timeout 20 "$B/mica" serve --port 0 -m "$MOE" --mem-budget 64K >"$T/small.out" 2>"$T/small.err"; then
        bad "moe budget too small" "exit status 0"
    elif [ "$(wc -l <"$T/small.err")" -eq 1 ] && grep -q "^mica: error: .*minimum budget is .* ($minb bytes)" "$T/small.err"; then
        ok "moe: --mem-budget below the minimum: exit 1, one line naming the minimum ($minb bytes)"
    else
        bad "moe budget too small" "$(cat "$T/small.err")"
    fi
    if timeout 20 "$B/mica" serve --port 0 -m "$MOE" --mem-budget 4X >"$T/small.out" 2>"$T/small.err"; then bad "bad size" "accepted 4X"
    elif grep -q "^mica: error: bad --mem-budget .* 4X$" "$T/small.err"; then ok "moe: --mem-budget 4X rejected"
    else bad "bad size" "$(cat "$T/small.err")"; fi
else
    bad "generate moe model" "$(cat "$T/gen.err")"
fi

# stop the servers: they exit cleanly on SIGTERM
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
clean=1
for p in "${PIDS[@]}"; do wait "$p" || clean=0; done
PIDS=()
[ $clean = 1 ] && ok "servers exit 0 on SIGTERM" || bad "shutdown" "$(tail -2 "$T"/*.err)"
finish
