"""Runs the project's binaries for the deployment tests: the test Kubernetes API server
(with a kubeconfig for kubectl and the operator), the operator, and a worker serving a
tiny model, each on 127.0.0.1 and stopped by its own PID. Also parses the Prometheus
text exposition format into metric names."""

import glob
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import deploy_support as ds


def binary(name):
    return os.path.join(ds.BIN_DIR, name)


def has_binary(name):
    return os.access(binary(name), os.X_OK)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def http_post(url, body, timeout=30.0):
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, urllib.error.URLError) as e:
            last_error = e
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last error: {last_error})")


class Process:
    """A child process with its output in a log file; killed (by PID) on exit."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.flush()
        return ds.read_text(self.log_path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class ApiServer:
    """moeserve-test-apiserver on an ephemeral port, with a kubeconfig for it."""

    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.log_path = os.path.join(work_dir, "apiserver.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([binary("moeserve-test-apiserver"), "--port", "0"],
                                         stdout=subprocess.PIPE, stderr=log, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise AssertionError(f"moeserve-test-apiserver did not start: "
                                 f"{ds.read_text(self.log_path)}")
        self.kubeconfig = os.path.join(work_dir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{self.url}"}}}}]
users: [{{name: test, user: {{}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test, namespace: default}}}}]
current-context: test
""")

    def kubectl(self, *args, check=True, input_text=None):
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, HOME=self.work_dir)
        return ds.run([ds.tool("kubectl"), *args], check=check, input_text=input_text, env=env,
                      timeout=60)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()


def exposition_names(text):
    """Metric names in a Prometheus text exposition: each family's samples, with the
    _bucket/_sum/_count (histogram) and _sum/_count (summary) series names."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            name, kind = m.groups()
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
            elif kind == "summary":
                names |= {name + "_sum", name + "_count"}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def operator_runnable():
    """The operator binary has the `run` command with a metrics port, and the test API
    server it reconciles against is built."""
    if not (has_binary("moeserve-operator") and has_binary("moeserve-test-apiserver")):
        return False
    proc = ds.run([binary("moeserve-operator"), "run", "--help"], check=False)
    return proc.returncode == 0 and "--metrics-port" in proc.stdout + proc.stderr


def worker_runnable():
    """The worker binary has the `serve` command, and the tiny model maker is built."""
    if not (has_binary("moeserve-worker") and has_binary("moeserve-make-tiny-model")):
        return False
    proc = ds.run([binary("moeserve-worker"), "serve", "--help"], check=False)
    return proc.returncode == 0


def scrape_operator(work_dir):
    """/metrics of an operator that has reconciled every deploy/examples file (between
    them they set a cost budget, a TTFT SLO and an expert placement, so every
    per-deployment gauge has a series)."""
    api = ApiServer(work_dir)
    operator = None
    examples = sorted(glob.glob(os.path.join(ds.SOURCE_DIR, "deploy", "examples", "*.yaml")))
    try:
        api.kubectl("apply", "--validate=false", "-f",
                    os.path.join(ds.SOURCE_DIR, "deploy", "crds"))
        names = []
        for example in examples:
            api.kubectl("apply", "--validate=false", "-n", "default", "-f", example)
            names += [d["metadata"]["name"] for d in ds.parse_documents(ds.read_text(example))]
        port = free_port()
        operator = Process([binary("moeserve-operator"), "run", "--kubeconfig", api.kubeconfig,
                            "--metrics-host", "127.0.0.1", "--metrics-port", str(port)],
                           os.path.join(work_dir, "operator.log"))
        url = f"http://127.0.0.1:{port}/metrics"

        def reconciled_all():
            text = http_get(url)[1]
            return "moeserve_operator_reconcile_total" in text and all(
                f'moeserve_deployment_replicas_desired{{deployment="{name}"' in text
                for name in names)

        wait_for(reconciled_all, 60, "every example's first reconcile to show in /metrics")
        return http_get(url)[1]
    except AssertionError as e:
        raise AssertionError(f"{e}\noperator log:\n{operator.output() if operator else ''}")
    finally:
        if operator:
            operator.stop()
        api.stop()


def scrape_worker(work_dir):
    """/metrics of rank 0 of a 2-rank expert-parallel worker group serving a tiny model
    after one good and one bad request (a group, so the placement and per-slot series
    exist; rank 1 lends its experts)."""
    model = os.path.join(work_dir, "model")
    ds.run([binary("moeserve-make-tiny-model"), "--out", model], timeout=300)
    port, follower_port, leader_port = free_port(), free_port(), free_port()
    group = ["--world-size", "2", "--leader", f"127.0.0.1:{leader_port}"]
    follower = Process([binary("moeserve-worker"), "serve", "--model", model, "--host",
                        "127.0.0.1", "--port", str(follower_port), "--rank", "1"] + group,
                       os.path.join(work_dir, "worker-rank1.log"))
    worker = Process([binary("moeserve-worker"), "serve", "--model", model, "--host", "127.0.0.1",
                      "--port", str(port), "--served-model-name", "tiny", "--rank", "0",
                      # drafts, so the speculative-decoding series exist
                      "--speculative", "ngram", "--num-draft-tokens", "2"] + group,
                     os.path.join(work_dir, "worker.log"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, 120, "the worker to be ready")
        status, body = http_post(base + "/v1/completions", json.dumps(
            {"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0}))
        if status != 200:
            raise AssertionError(f"completion failed: {status} {body}")
        status, _ = http_post(base + "/v1/completions", "{not json")
        if status != 400:
            raise AssertionError(f"malformed request answered {status}, not 400")
        return http_get(base + "/metrics")[1]
    except AssertionError as e:
        raise AssertionError(f"{e}\nworker log:\n{worker.output()}\n"
                             f"rank 1 log:\n{follower.output()}")
    finally:
        worker.stop()
        follower.stop()
