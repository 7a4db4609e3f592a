"""Which Kubernetes requests does the operator's code make? A static scan of operator/
that the RBAC test compares with the chart's ClusterRole and Role; operator/gateway is
scanned apart and compared with the gateway's roles.

The convention it relies on (also stated in charts/moeserve/templates/rbac.yaml):
  * operator/kube is resource-agnostic (the REST client, the reflector) and is not
    scanned; every other .h/.cpp under operator/ is.
  * A kube::Client is reached through a name containing "client" (client_, client,
    kube_client, deps.client->...). Each call `<client>.<verb>(ref, ...)` with verb one
    of get, list, list_all, create, update, update_status, patch, remove, watch is one
    request; update_status is PUT <resource>/status, a patch or get naming the "status"
    subresource is <resource>/status.
  * The resource argument must be resolvable, in this order: `kube::resources::kX` at
    the call; a name bound to one in the same file (`const auto& ref =
    kube::resources::kX;`); a name bound to the result of a function defined in the same
    file (`ASSIGN_OR_RETURN(ResourceRef ref, resource_for_kind(kind))`: every
    resources::kX in that function's body); a comment on one of the three lines above
    naming the resources (`// rbac: statefulsets services`). An unresolvable call is an
    error, never skipped.
  * Informers: constructing a kube::Reflector lists and watches its ref (2nd argument,
    resolved as above). A class whose constructor takes kube::ResourceRef parameters and
    builds Reflectors from them (a generic controller) is a watcher type: its internal
    Reflectors are accounted for at its construction sites, where every resources::kX in
    the arguments is listed and watched. Reading an informer cache by
    `resources::kX.resource` also needs list and watch on kX.
"""

import os
import re
from dataclasses import dataclass

CLIENT_VERBS = {
    "get": "get", "list": "list", "list_all": "list", "create": "create", "update": "update",
    "update_status": "update", "patch": "patch", "remove": "delete", "watch": "watch",
}
NS = r"(?:(?:::)?moeserve::)?(?:kube::)?"
CALL_RE = re.compile(
    r"\b(\w*client\w*)\s*(?:\(\s*\))?\s*(?:\.|->)\s*(" + "|".join(CLIENT_VERBS) + r")\s*\(")
RESOURCE_RE = re.compile(r"^" + NS + r"resources::k(\w+)$")
ANY_RESOURCE_RE = re.compile(r"resources::k(\w+)")
INFORMER_READ_RE = re.compile(
    r"\binformer\w*\s*(?:\.|->)\s*\w+\s*\(\s*" + NS + r"resources::k(\w+)\.resource\b")
RESOURCE_DEF_RE = re.compile(
    r'inline const ResourceRef k(\w+)\{"([^"]*)",\s*"([^"]*)",\s*"([^"]*)",\s*(true|false)\}')
ANNOTATION_RE = re.compile(r"//\s*rbac:\s*([a-z0-9./ ,]+)")
WATCHER_CTOR_RE = re.compile(r"\b(\w+)::\1\s*\(([^)]*)\)")


def _read(path):
    with open(path) as f:
        return f.read()


@dataclass(frozen=True)
class Request:
    group: str      # API group, "" for core
    resource: str   # plural, with "/status" for the subresource
    verb: str
    where: str      # "file:line"
    origin: str = "call"  # call | reflector | watcher (a generic controller's construction) | cache


def known_resources(source_dir):
    """{"Pods": ("", "pods"), ...} from operator/kube/client.h's resources namespace."""
    text = _read(os.path.join(source_dir, "operator", "kube", "client.h"))
    return {m.group(1): (m.group(2), m.group(4)) for m in RESOURCE_DEF_RE.finditer(text)}


class Source:
    """One file with block comments blanked (line numbers kept)."""

    def __init__(self, text, path):
        self.path = path
        self.text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
        self.lines = self.text.split("\n")
        self.offsets = [0]
        for line in self.lines:
            self.offsets.append(self.offsets[-1] + len(line) + 1)

    def line_of(self, index):
        lo, hi = 0, len(self.lines) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.offsets[mid] <= index:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def in_line_comment(self, index):
        line = self.line_of(index)
        return index - self.offsets[line] > len(self.lines[line].split("//", 1)[0])

    def where(self, index):
        return f"{self.path}:{self.line_of(index) + 1}"


def balanced(text, open_index):
    """(arguments, end) of the bracketed list opening at open_index: top-level
    comma-separated parts, and the index just past the closing bracket."""
    depth, args, current, i, in_string = 0, [], [], open_index, False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                current.append(text[i:i + 2])
                i += 2
                continue
            in_string = c != '"'
        elif c == '"':
            in_string = True
        elif c in "([{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return [a for a in args if a], i + 1
        elif c == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    return [a for a in args if a], len(text)


def function_resources(src, name):
    """Every resources::kX in the body of function `name` defined in src, or None."""
    for m in re.finditer(r"\b" + re.escape(name) + r"\s*\(", src.text):
        _, end = balanced(src.text, m.end() - 1)
        rest = re.match(r"\s*(?:const\s*)?(?:noexcept\s*)?(?:->\s*[\w:<>]+\s*)?\{", src.text[end:])
        if rest:
            _, body_end = balanced(src.text, end + rest.end() - 1)
            return ANY_RESOURCE_RE.findall(src.text[end:body_end])
    return None


def resolve(arg, src, index, resources):
    """Resource names (keys of `resources`) an argument stands for, or None."""
    arg = re.sub(r"^std::move\((.*)\)$", r"\1", arg.strip()).strip()
    m = RESOURCE_RE.match(arg)
    if m:
        return [m.group(1)]
    if re.fullmatch(r"[A-Za-z_]\w*", arg):
        name = re.escape(arg)
        bind = re.search(r"\b" + name + r"\s*(?:=|\{|\()\s*&?\s*" + NS + r"resources::k(\w+)",
                         src.text)
        if bind:
            return [bind.group(1)]
        call = (re.search(r"\b" + name + r"\s*=\s*(?:\w+::)*(\w+)\s*\(", src.text) or
                re.search(r"ASSIGN_OR_RETURN\s*\([^,]*\b" + name + r"\s*,\s*(?:\w+::)*(\w+)\s*\(",
                          src.text))
        if call:
            found = function_resources(src, call.group(1))
            if found:
                return found
    line = src.line_of(index)
    for back in range(1, 4):
        if line - back < 0:
            break
        a = ANNOTATION_RE.search(src.lines[line - back])
        if a:
            plurals = {plural: key for key, (_, plural) in resources.items()}
            names = [n for n in re.split(r"[\s,]+", a.group(1).strip()) if n]
            return [plurals.get(n.split(".")[0], "?" + n) for n in names]
    return None


def watcher_types(sources):
    """{class name: defining file} of classes whose constructor takes ResourceRefs."""
    found = {}
    for src in sources:
        for m in WATCHER_CTOR_RE.finditer(src.text):
            if "ResourceRef" in m.group(2):
                found[m.group(1)] = src.path
    return found


def scan_source(src, resources, watchers):
    """(requests, errors) of one source file."""
    requests, errors = [], []

    def add(names, verbs, subresource, where, origin="call"):
        for name in names:
            if name.startswith("?") or name not in resources:
                errors.append(f"{where}: unknown resource {name.lstrip('?')} "
                              f"(not in operator/kube/client.h resources)")
                continue
            group, plural = resources[name]
            for verb in verbs:
                requests.append(Request(group, plural + subresource, verb, where, origin))

    for m in CALL_RE.finditer(src.text):
        if src.in_line_comment(m.start()):
            continue
        method = m.group(2)
        args, _ = balanced(src.text, m.end() - 1)
        names = resolve(args[0], src, m.start(), resources) if args else None
        if names is None:
            errors.append(f"{src.where(m.start())}: cannot tell which resource "
                          f"{m.group(1)}.{method}({args[0] if args else ''}, ...) requests; pass "
                          f"kube::resources::kX, bind it in this file, or add `// rbac: <plurals>`")
            continue
        sub_index = {"get": 3, "patch": 5}.get(method)
        subresource = "/status" if method == "update_status" else ""
        if sub_index is not None and len(args) > sub_index and args[sub_index].strip('"'):
            subresource = "/" + args[sub_index].strip('"')
        add(names, [CLIENT_VERBS[method]], subresource, src.where(m.start()))

    owns_generic_watcher = src.path in watchers.values()
    for m in re.finditer(r"\bReflector\b\s*(?:>\s*)?(?:\w+\s*)?[({]", src.text):
        if src.in_line_comment(m.start()):
            continue
        args, _ = balanced(src.text, m.end() - 1)
        if len(args) < 2:
            continue  # a declaration or a mention of the type, not a construction
        names = resolve(args[1], src, m.start(), resources)
        if names is None:
            if owns_generic_watcher:
                continue  # counted where the generic watcher is constructed
            errors.append(f"{src.where(m.start())}: cannot tell which resource this Reflector "
                          f"watches ({args[1]}); pass kube::resources::kX or add `// rbac: <plurals>`")
            continue
        add(names, ["list", "watch"], "", src.where(m.start()), "reflector")
    for watcher in watchers:
        for m in re.finditer(r"\b" + watcher + r"\b\s*(?:>\s*)?(?:\w+\s*)?[({]", src.text):
            if src.in_line_comment(m.start()):
                continue
            args, _ = balanced(src.text, m.end() - 1)
            add(ANY_RESOURCE_RE.findall(" ".join(args)), ["list", "watch"], "", src.where(m.start()),
                "watcher")
    for m in INFORMER_READ_RE.finditer(src.text):
        if not src.in_line_comment(m.start()):
            add([m.group(1)], ["list", "watch"], "", src.where(m.start()), "cache")
    return requests, errors


def scan_sources(sources, resources):
    watchers = watcher_types(sources)
    requests, errors = [], []
    for src in sources:
        r, e = scan_source(src, resources, watchers)
        requests += r
        errors += e
    return requests, errors


def operator_sources(source_dir, only=None):
    """Sources under operator/ except operator/kube and the gateway's operator/gateway
    (another ServiceAccount, scanned on its own); with `only` ("gateway"), just that
    folder."""
    root = os.path.join(source_dir, "operator")
    skip = {os.path.join(root, "kube"), os.path.join(root, "gateway")}
    if only:
        root = os.path.join(root, only)
        skip = set()
    sources = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.join(folder, d) not in skip)
        for name in sorted(files):
            if name.endswith((".cpp", ".h")):
                path = os.path.join(folder, name)
                sources.append(Source(_read(path), os.path.relpath(path, source_dir)))
    return sources


def scan_operator(source_dir):
    """(requests, errors) over operator/ except operator/kube."""
    return scan_sources(operator_sources(source_dir), known_resources(source_dir))


def scan_gateway(source_dir):
    """(requests, errors) over operator/gateway: what moeserve-gateway's ServiceAccount
    needs."""
    return scan_sources(operator_sources(source_dir, "gateway"), known_resources(source_dir))
