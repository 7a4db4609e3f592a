"""Shared helpers for the deployment tests (tests/deploy): tool lookup, helm rendering,
YAML parsing, and the exported-metric catalogue.

Paths come from the environment CTest sets: MOESERVE_SOURCE_DIR (the source tree) and
MOESERVE_BIN_DIR (the build's bin folder). helm and kubectl are taken from
<source>/.tools/bin (scripts/install-deps.sh puts them there); promtool from PATH
(Debian's prometheus package). A missing tool fails the test with the command that
installs it.
"""

import os
import shutil
import subprocess
import tempfile

import yaml

SOURCE_DIR = os.environ.get("MOESERVE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("MOESERVE_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))
CHART_DIR = os.path.join(SOURCE_DIR, "charts", "moeserve")
MONITORING_DIR = os.path.join(SOURCE_DIR, "deploy", "monitoring")
RULES_FILE = os.path.join(MONITORING_DIR, "moeserve-rules.yaml")
DASHBOARD_FILE = os.path.join(MONITORING_DIR, "moeserve-dashboard.json")

# Every optional toggle of the chart switched on.
ALL_TOGGLES = [
    "monitoring.operator.serviceMonitor.enabled=true",
    "monitoring.operator.podMonitor.enabled=true",
    "monitoring.workers.podMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
]


class ToolMissing(AssertionError):
    pass


def tool(name):
    """Absolute path of helm/kubectl (.tools/bin) or promtool (PATH); raises ToolMissing."""
    if name in ("helm", "kubectl"):
        path = os.path.join(SOURCE_DIR, ".tools", "bin", name)
        if os.access(path, os.X_OK):
            return path
        raise ToolMissing(f"{name} not found at {path}: run scripts/install-deps.sh "
                          f"(installs helm and kubectl into .tools/bin)")
    path = shutil.which(name)
    if path:
        return path
    raise ToolMissing(f"{name} not found on PATH: install Debian's prometheus package "
                      f"(scripts/install-deps.sh)")


def run(argv, check=True, input_text=None, timeout=120, env=None):
    """Runs argv; returns CompletedProcess (text). With check, a non-zero exit raises with
    the command and its output."""
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def helm_stderr(text):
    """helm's stderr without its note about the chart's intended symlinks."""
    return "\n".join(l for l in text.splitlines() if "found symbolic link in path" not in l)


def helm_template(sets=(), release="moeserve", namespace="moeserve-system",
                  include_crds=False, chart=CHART_DIR, check=True):
    argv = [tool("helm"), "template", release, chart, "--namespace", namespace]
    if include_crds:
        argv.append("--include-crds")
    for s in sets:
        argv += ["--set", s]
    return run(argv, check=check)


def parse_documents(text):
    """Every non-empty YAML document of a multi-document stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def render(sets=(), **kwargs):
    return parse_documents(helm_template(sets, **kwargs).stdout)


def write_temp(contents, suffix):
    f = tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False)
    f.write(contents)
    f.close()
    return f.name


def read_text(path):
    with open(path) as f:
        return f.read()
