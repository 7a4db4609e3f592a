#!/usr/bin/env python3
"""Reference renderer for the Jinja golden tests: renders chat templates exactly as
Hugging Face transformers' apply_chat_template does (and so vLLM and SGLang), with
Python's jinja2.

Environment: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]); tojson is json.dumps(ensure_ascii=False, indent=...,
sort_keys=False); raise_exception raises TemplateError; strftime_now formats a fixed
time given by the case (so both sides agree).

Usage: render_chat_templates.py CASES.json OUT.json, where CASES.json is a list of
{"template": str, "variables": {...}} and OUT.json receives, per case, {"text": str} or
{"error": str}.
"""

import json
import sys
import time

from jinja2.ext import loopcontrols
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_environment(fixed_time):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return time.strftime(fmt, time.gmtime(fixed_time))

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    results = []
    for case in cases:
        env = make_environment(case.get("fixed_time", 0))
        try:
            text = env.from_string(case["template"]).render(**case["variables"])
            results.append({"text": text})
        except Exception as e:  # every failure is compared as "an error"
            results.append({"error": f"{type(e).__name__}: {e}"})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
