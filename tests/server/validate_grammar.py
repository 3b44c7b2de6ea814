"""validate_grammar.py - checks the answers tests/client/grammar.mjs collected
from mica serve under constrained decoding, with an independent validator:
Python's json module (strict: no NaN/Infinity) and Debian's python3-jsonschema
(Draft 2020-12 unless the schema names another draft).

    /usr/bin/python3 validate_grammar.py RESULTS_JSON

Prints "ok"/"FAIL" per answer and "grammar-validate: N passed, M failed".
"""
import json
import sys

import jsonschema


def strict_loads(text):
    def no_constant(name):
        raise ValueError("non-standard JSON constant " + name)
    return json.loads(text, parse_constant=no_constant)


# Formats checked as well where the grammar is exact (dates are range-checked
# by the grammar, not calendar-checked, so "date"/"date-time" are not asked).
FORMATS = jsonschema.FormatChecker(formats=["uuid", "ipv4", "email"])


def validate(instance, schema):
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    cls(schema, format_checker=FORMATS).validate(instance)


def main():
    cases = json.load(open(sys.argv[1]))
    passed = failed = 0
    for c in cases:
        name = c["kind"] + " " + c["name"]
        try:
            if c["kind"] in ("schema", "object"):
                assert c["finish"] == "stop", "finish_reason %r, not stop" % c["finish"]
                value = strict_loads(c["content"])
                if c["kind"] == "schema":
                    validate(value, c["schema"])
                else:
                    assert isinstance(value, dict), "not an object"
            else:
                tools = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in c["tools"]}
                calls = c["calls"]
                assert calls, "no tool call (content %r)" % (c.get("content") or "")[:200]
                if c.get("single"):
                    assert len(calls) == 1, "%d calls with parallel_tool_calls false" % len(calls)
                    assert c["finish"] == "tool_calls", "finish_reason %r" % c["finish"]
                else:
                    assert c["finish"] in ("tool_calls", "length"), "finish_reason %r" % c["finish"]
                for call in calls:
                    fn = call["function"]
                    assert fn["name"] in tools, "unknown function %r" % fn["name"]
                    if c.get("named"):
                        assert fn["name"] == c["named"], "called %r, not the named %r" % (fn["name"], c["named"])
                    validate(strict_loads(fn["arguments"]), tools[fn["name"]])
            print("ok   %s" % name)
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            print("FAIL %s: %s | %r" % (name, str(e).splitlines()[0][:300], c.get("content") if c["kind"] != "tools" else c["calls"]))
            failed += 1
    print("grammar-validate: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
