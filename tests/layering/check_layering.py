#!/usr/bin/env python3
"""The include rules of docs/architecture.md, checked on every tracked .h/.cpp/.cu/.cuh.

Two checks, both over direct #include lines (a header's own includes are checked where
that header lives):

1. Include rules (RULES below): who may include whom, plus "folders form a DAG".
2. CMake mirrors the includes: for each library (moeserve_library,
   moeserve_glob_library, or add_library + target_link_libraries), each test binary
   (moeserve_test, moeserve_glob_tests) and each executable (moeserve_executable) whose
   sources are named literally, every project library its sources include is reachable
   through its link dependencies, and every project library it links directly is
   included by at least one of its sources (no unused project DEP). Executables built in
   a foreach loop (bench/, tools/) name their sources through a variable and are not
   checked here.

Each finding is printed as `file:line: message (rule)`; the exit status is 1 when there
is any. Usage: check_layering.py [--root DIR] (default: the repository this file is in).
"""

import argparse
import os
import re
import subprocess
import sys
from collections import namedtuple

# Folder -> the CMake library built from it. A file belongs to the longest folder listed
# here that contains it; any other file belongs to its own folder (executables, tests).
# A new library folder gets one line here; a library declared in CMake that is missing
# here is itself a finding, so the map cannot fall behind.
LIBRARIES = {
    "common": "moeserve_common",
    "proto": "moeserve_proto",
    "kernels/cpu": "moeserve_kernels_cpu",
    "kernels/cuda": "moeserve_kernels_cuda",
    "worker/model": "moeserve_worker_model",
    "worker/model/jinja": "moeserve_worker_jinja",
    "worker/parallel": "moeserve_worker_parallel",
    "worker/parallel/nccl": "moeserve_worker_parallel_nccl",
    "worker/engine": "moeserve_worker_engine",
    "worker/structured": "moeserve_worker_structured",
    "worker/server": "moeserve_worker_server",
    "worker/cli": "moeserve_worker_cli",
    "operator/placement": "moeserve_operator_placement",
    "operator/autoscaler": "moeserve_operator_autoscaler",
    "operator/deployment": "moeserve_operator_deployment",
    "operator/kube": "moeserve_operator_kube",
    "operator/controller": "moeserve_operator_controller",
    "operator/local": "moeserve_operator_local",
    "operator/gateway": "moeserve_operator_gateway",
    "tools/fixtures": "moeserve_fixtures",
    "tools/fetch": "moeserve_fetch",
    "tests/support": "moeserve_test_support",
    "bench/sim": "moeserve_bench_sim",
    "bench/load": "moeserve_bench_load",
}

# Headers generated at build time, by include name: they belong to the folder whose
# library generates them (protoc writes worker.pb.h / worker.grpc.pb.h for proto/).
GENERATED = ((re.compile(r"(^|/)[^/]+\.pb\.h$"), "proto"),)

SOURCE_SUFFIXES = (".h", ".cpp", ".cu", ".cuh")
PRODUCT = ("common/", "kernels/", "proto/", "worker/", "operator/")
WORKER_UPPER = {
    "engine": ("worker/server/", "worker/cli/"),
    "model": ("worker/engine/", "worker/parallel/", "worker/server/", "worker/cli/"),
    "parallel": ("worker/engine/", "worker/server/", "worker/cli/"),
    "server": ("worker/cli/",),
}
CLIENT_CODE = ("operator/kube/", "operator/controller/", "operator/local/",
               "common/http_client.h", "common/http_server.h")

# Files in the pure operator folders that are metric sources and so talk HTTP. The
# autoscaler's policy and loop use them only through the MetricSource interface.
HTTP_SOURCES = {
    # GETs each group's rank-0 worker /metrics.
    "operator/autoscaler/scrape_source.h",
    "operator/autoscaler/scrape_source.cpp",
    # Sends PromQL to a Prometheus server's HTTP API.
    "operator/autoscaler/prometheus_source.h",
    "operator/autoscaler/prometheus_source.cpp",
}

# A rule applies to files under `sources` (except `exempt`) and forbids including files
# under `forbidden`; with `only`, every include outside `only` is forbidden instead.
Rule = namedtuple("Rule", "name sources forbidden only exempt", defaults=((), None, ()))

RULES = (
    Rule("kernels is a leaf", ("kernels/",), only=("kernels/",)),
    Rule("common is the bottom layer", ("common/",), only=("common/",)),
    Rule("the engine includes no server or CLI", ("worker/engine/",), WORKER_UPPER["engine"]),
    Rule("the model includes no engine, parallel, server or CLI", ("worker/model/",),
         WORKER_UPPER["model"]),
    Rule("parallel includes no engine, server or CLI", ("worker/parallel/",),
         WORKER_UPPER["parallel"]),
    Rule("structured (grammars, token masks) includes only common", ("worker/structured/",),
         only=("common/", "worker/structured/")),
    Rule("the server includes no CLI", ("worker/server/",), WORKER_UPPER["server"]),
    Rule("deployment, autoscaler and placement include no client code",
         ("operator/deployment/", "operator/autoscaler/", "operator/placement/"), CLIENT_CODE,
         exempt=tuple(sorted(HTTP_SOURCES))),
    Rule("the gateway's router is pure", ("operator/gateway/router.h",
                                           "operator/gateway/router.cpp"), CLIENT_CODE),
    Rule("operator and worker meet only in proto/ and common/", ("operator/",), ("worker/",)),
    Rule("operator and worker meet only in proto/ and common/", ("worker/",), ("operator/",)),
    Rule("product code includes no tests, tools or benchmarks", PRODUCT,
         ("tests/", "tools/", "bench/")),
)
CYCLE_RULE = "folders form a DAG"

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
Include = namedtuple("Include", "file line target")


def list_sources(root):
    """Tracked source files (every file when `root` is not a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "build"))]
            rel = os.path.relpath(dirpath, root)
            files += [os.path.normpath(os.path.join(rel, f)) for f in filenames]
    return sorted(f for f in files if f.endswith(SOURCE_SUFFIXES) or
                  os.path.basename(f) == "CMakeLists.txt")


def module_of(path):
    """The folder a file belongs to: its library folder, else its own folder."""
    folder = os.path.dirname(path)
    best = None
    for lib_folder in LIBRARIES:
        if (folder == lib_folder or folder.startswith(lib_folder + "/")) and (
                best is None or len(lib_folder) > len(best)):
            best = lib_folder
    return best or folder


def resolve(name, including_file, tracked):
    """The project file an include names (relative to the root, or to the including
    file's folder), a generated header's folder + name, or None for third-party code."""
    for candidate in (name, os.path.normpath(os.path.join(os.path.dirname(including_file), name))):
        if candidate in tracked:
            return candidate
    for pattern, folder in GENERATED:
        if pattern.search(name):
            return folder + "/" + os.path.basename(name)
    return None


def read_includes(root, files):
    tracked = set(files)
    result = []
    for path in files:
        if not path.endswith(SOURCE_SUFFIXES):
            continue
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f, 1):
                match = INCLUDE.match(text)
                if match:
                    target = resolve(match.group(1), path, tracked)
                    if target:
                        result.append(Include(path, number, target))
    return result


def under(path, prefixes):
    return any(path == p.rstrip("/") or path.startswith(p) if p.endswith("/") else path == p
               for p in prefixes)


def check_rules(includes):
    findings = []
    for inc in includes:
        for rule in RULES:
            if not under(inc.file, rule.sources) or inc.file in rule.exempt:
                continue
            bad = (not under(inc.target, rule.only)) if rule.only else under(inc.target,
                                                                              rule.forbidden)
            if bad:
                findings.append(f"{inc.file}:{inc.line}: includes {inc.target} ({rule.name})")
    return findings


def folder_graph(includes):
    """folder -> {folder: first include that makes the edge}."""
    graph = {}
    for inc in includes:
        a, b = module_of(inc.file), module_of(inc.target)
        if a != b:
            graph.setdefault(a, {}).setdefault(b, inc)
        graph.setdefault(b, {})
    return graph


def strongly_connected(graph):
    """Tarjan's components of size > 1, each as a sorted list."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def cycle_in(graph, component):
    """One cycle through the component's first folder, as a list of folders."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}

    def walk(v):
        for w in sorted(graph[v]):
            if w == start:
                return True
            if w in members and w not in seen:
                seen.add(w)
                path.append(w)
                if walk(w):
                    return True
                path.pop()
        return False

    walk(start)
    return path + [start]


def check_cycles(includes):
    graph = folder_graph(includes)
    findings = []
    for component in strongly_connected(graph):
        cycle = cycle_in(graph, component)
        name = f"{CYCLE_RULE}: {' -> '.join(cycle)}"
        for a, b in zip(cycle, cycle[1:]):
            inc = graph[a][b]
            findings.append(f"{inc.file}:{inc.line}: includes {inc.target} ({name})")
    return findings


# CMake: the calls that declare targets and their link dependencies.
CALL = re.compile(r"\b(moeserve_library|moeserve_glob_library|moeserve_test|moeserve_glob_tests|"
                  r"moeserve_executable|add_library|target_link_libraries)\s*\(")
KEYWORDS = {"SOURCES", "DEPS", "PRIVATE_DEPS", "DIR", "LABELS", "TIMEOUT", "PUBLIC", "PRIVATE",
            "INTERFACE", "STATIC", "SHARED", "IMPORTED", "OBJECT"}
# `sources`: the target's files when they are named literally; None for a whole folder.
Target = namedtuple("Target", "name kind cmake line folder sources deps")


def cmake_calls(text):
    """(function, line, [arguments]) of each target call, comments removed."""
    text = re.sub(r"#[^\n]*", "", text)
    for match in CALL.finditer(text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        yield match.group(1), text.count("\n", 0, match.start()) + 1, text[match.end():end - 1].split()


def sections(args):
    """{keyword: [values]} of a call's arguments after its first (the target name)."""
    result, key = {}, ""
    for arg in args[1:]:
        if arg in KEYWORDS:
            key = arg
            result.setdefault(key, [])
        else:
            result.setdefault(key, []).append(arg)
    return result


def literal_sources(cmake_folder, sources):
    """A target's source files when they are all named literally, else None."""
    paths = set()
    for src in sources:
        src = src.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")
        if "$" in src:
            return None
        paths.add(os.path.normpath(os.path.join(cmake_folder, src)))
    return paths or None


def read_targets(root, files):
    """name -> Target for every project target; link deps of target_link_libraries are
    added to the target they name."""
    targets, extra_deps = {}, []
    for cmake in (f for f in files if os.path.basename(f) == "CMakeLists.txt"):
        folder = os.path.dirname(cmake)
        with open(os.path.join(root, cmake), encoding="utf-8") as f:
            text = f.read()
        for function, line, args in cmake_calls(text):
            if not args:
                continue
            name, parts = args[0], sections(args)
            if function == "target_link_libraries":
                extra_deps.append((name, [a for a in args[1:] if a not in KEYWORDS]))
                continue
            deps = parts.get("DEPS", []) + parts.get("PRIVATE_DEPS", [])
            sources = None
            if function in ("moeserve_library", "moeserve_glob_library", "add_library"):
                kind = "library"
                target_folder = None
                for lib_folder, lib in LIBRARIES.items():
                    if lib == name:
                        target_folder = lib_folder
                if function == "add_library" and target_folder is None:
                    continue  # third-party or helper targets (gloo, moeserve_flags)
            elif function == "moeserve_glob_tests":
                kind, target_folder = "test", folder
            else:
                kind = "test" if function == "moeserve_test" else "executable"
                sources = literal_sources(folder, parts.get("SOURCES", []))
                folders = {module_of(s) for s in sources or ()}
                target_folder = folders.pop() if len(folders) == 1 else None
            targets.setdefault(name, Target(name, kind, cmake, line, target_folder, sources, []))
            targets[name].deps.extend(deps)
    for name, deps in extra_deps:
        if name in targets:
            targets[name].deps.extend(deps)
    return targets


def reachable(targets, name):
    seen, todo = set(), [name]
    while todo:
        for dep in targets[todo.pop()].deps:
            if dep in targets and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def through_header_only(inc, includes_of, library_of):
    """`inc`, and the includes reached through headers that belong to no library."""
    reached, todo, seen = [], [inc], set()
    while todo:
        current = todo.pop()
        if current.target in seen:
            continue
        seen.add(current.target)
        reached.append(current)
        if library_of.get(module_of(current.target)) is None:
            todo.extend(includes_of.get(current.target, ()))
    return reached


def check_cmake(root, files, includes):
    targets = read_targets(root, files)
    includes_of = {}
    for inc in includes:
        includes_of.setdefault(inc.file, []).append(inc)
    library_of = dict(LIBRARIES)
    findings = []
    for t in targets.values():
        if t.kind == "library" and t.folder is None:
            findings.append(f"{t.cmake}:{t.line}: declares {t.name}, which LIBRARIES in "
                            f"tests/layering/check_layering.py does not map to a folder "
                            f"(the library map is explicit)")
    folders_with_sources = {module_of(f) for f in files if f.endswith(SOURCE_SUFFIXES)}
    declared = {t.name for t in targets.values()}
    for folder, lib in LIBRARIES.items():
        if folder in folders_with_sources and lib not in declared:
            findings.append(f"{folder}: has sources but no CMake library {lib} "
                            f"(CMake mirrors the includes)")
    for t in sorted(targets.values(), key=lambda t: (t.cmake, t.line)):
        if t.folder is None:
            continue
        # A library's own folder is not a dependency; an executable's or test's is when
        # a library lives there (tests/support/apiserver_main.cpp).
        own = t.folder if library_of.get(t.folder) == t.name else None
        used = {}
        for inc in includes:
            mine = inc.file in t.sources if t.sources else module_of(inc.file) == t.folder
            if not mine:
                continue
            # A header of no library (a header-only test helper such as
            # tests/worker/engine/tiny_engine.h) is compiled into its includer, so what it
            # includes is the includer's dependency too.
            for reached in through_header_only(inc, includes_of, library_of):
                if module_of(reached.target) != own:
                    used.setdefault(module_of(reached.target), reached)
        linked = reachable(targets, t.name)
        for folder, inc in sorted(used.items()):
            lib = library_of.get(folder)
            if lib in declared and lib not in linked:
                findings.append(f"{inc.file}:{inc.line}: includes {inc.target} ({t.name} does not "
                                f"link {lib}: add it to DEPS in {t.cmake}; CMake mirrors the "
                                f"includes)")
        for dep in t.deps:
            if dep in declared and targets[dep].folder not in used and dep != t.name:
                findings.append(f"{t.cmake}:{t.line}: {t.name} links {dep}, but no file in "
                                f"{t.folder}/ includes {targets[dep].folder}/ (unused DEP; CMake "
                                f"mirrors the includes)")
    return findings


def check(root):
    files = list_sources(root)
    includes = read_includes(root, files)
    return check_rules(includes) + check_cycles(includes) + check_cmake(root, files, includes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    root = os.path.abspath(parser.parse_args().root)
    findings = check(root)
    for finding in findings:
        print(finding)
    print(f"layering: {len(findings)} violation(s)" if findings else "layering: ok")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
