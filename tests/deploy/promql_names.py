"""Metric names referenced by a PromQL expression (or a Grafana variable query).

A small scanner, not a parser: strings, label matchers {...}, ranges [...] and Grafana
variables ($x, ${x}, [[x]]) are dropped; identifiers that call a function or an
aggregation, keywords, and the label lists after by/without/on/ignoring/group_left/
group_right are not names; every other identifier is a metric name. The syntax itself
is checked separately with promtool.
"""

import re

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev",
    "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk",
    "limit_ratio", "start", "end",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def strip(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]", "", expr)
    out, depth_brace, depth_bracket = [], 0, 0
    for c in expr:
        if c == "{":
            depth_brace += 1
        elif c == "}":
            depth_brace -= 1
        elif c == "[":
            depth_bracket += 1
        elif c == "]":
            depth_bracket -= 1
        elif depth_brace == 0 and depth_bracket == 0:
            out.append(c)
    return "".join(out)


def metric_names(expr):
    text = strip(expr)
    names, i = set(), 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or (c == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            while i < len(text) and (text[i].isalnum() or text[i] in "._"):
                i += 1
            continue
        m = IDENT.match(text, i)
        if not m:
            i += 1
            continue
        word, i = m.group(0), m.end()
        rest = text[i:].lstrip()
        if word.lower() in LABEL_LIST_KEYWORDS and rest.startswith("("):
            i = text.index(")", i) + 1
            continue
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def grafana_query_expr(query):
    """The PromQL inside a Grafana Prometheus variable query."""
    m = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.S)
    if m:
        inner = m.group(1)
        depth = 0
        for i, c in enumerate(inner):
            depth += c in "({["
            depth -= c in ")}]"
            if c == "," and depth == 0:
                return inner[:i]
        return ""  # label_values(label): no metric
    m = re.fullmatch(r"\s*(?:query_result|metrics)\((.*)\)\s*", query, re.S)
    return m.group(1) if m else query
