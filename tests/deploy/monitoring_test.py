"""deploy/monitoring: promtool accepts the rules, the dashboard's queries are valid
PromQL, and every metric name in the rules and the dashboard is exported by a
component (or recorded by the rules themselves).

Where the names come from, per component:
  * worker: a running `moeserve-worker serve` on a tiny model (after one good and one
    malformed request, so label-vector families have series) when the build has the
    serve command; else the documented list.
  * operator: a running `moeserve-operator run` that reconciled tiny-cpu.yaml against
    moeserve-test-apiserver, when both are built; else the documented list.
  * autoscaler gauges (moeserve_deployment_*): the same running operator once
    operator/autoscaler has sources; else the documented list.
  * vLLM and SGLang (vllm:*, sglang:*): the names docs/engines.md gives, read from those
    engines' sources (they need GPUs, so none runs here).
The documented list is docs/metrics.md (every `moeserve_...` name in it).
"""

import glob
import json
import os
import re
import sys
import tempfile
import unittest

import yaml

import components
import deploy_support as ds
import promql_names

DOCS_METRICS = os.path.join(ds.SOURCE_DIR, "docs", "metrics.md")
DOCS_ENGINES = os.path.join(ds.SOURCE_DIR, "docs", "engines.md")


def component_of(name):
    if name.startswith("moeserve_operator_"):
        return "operator"
    if name.startswith("moeserve_deployment_"):
        return "autoscaler"
    if name.startswith("moeserve_gateway_"):
        return "gateway"
    return "worker"


def documented_names():
    """{component: names} of the documented list, with histogram series suffixes."""
    found = {"worker": set(), "operator": set(), "autoscaler": set(), "gateway": set()}
    for name in re.findall(r"\b(moeserve_[a-z0-9_]+)", ds.read_text(DOCS_METRICS)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        found[component_of(base)] |= {base, base + "_bucket", base + "_sum", base + "_count"}
    return found, "docs/metrics.md"


def exported_metrics(work_dir):
    """(names, sources): the names every component exports, and where each came from."""
    documented, doc_source = documented_names()
    names, sources = set(), {}
    if components.worker_runnable():
        names |= components.exposition_names(components.scrape_worker(work_dir))
        sources["worker"] = "running moeserve-worker serve"
    else:
        names |= documented["worker"]
        sources["worker"] = doc_source
    autoscaler_exists = bool(glob.glob(os.path.join(ds.SOURCE_DIR, "operator", "autoscaler", "*.cpp")))
    if components.operator_runnable():
        names |= components.exposition_names(components.scrape_operator(work_dir))
        sources["operator"] = "running moeserve-operator run"
        if autoscaler_exists:
            sources["autoscaler"] = "running moeserve-operator run"
        else:
            names |= documented["autoscaler"]
            sources["autoscaler"] = doc_source + " (operator/autoscaler has no sources yet)"
    else:
        names |= documented["operator"] | documented["autoscaler"]
        sources["operator"] = sources["autoscaler"] = doc_source
    names |= engine_names()
    sources["vllm, sglang"] = "docs/engines.md"
    # moeserve-gateway's names: the documented list (the binary is not scraped here).
    names |= documented["gateway"]
    sources["gateway"] = doc_source
    return names, sources


def engine_names():
    """The vLLM and SGLang series named in docs/engines.md (those engines need GPUs)."""
    found = set()
    for name in re.findall(r"\b((?:vllm|sglang):[a-z0-9_]+)", ds.read_text(DOCS_ENGINES)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        found |= {base, base + "_bucket", base + "_sum", base + "_count"}
    return found


def rules():
    return yaml.safe_load(ds.read_text(ds.RULES_FILE))


def dashboard():
    return json.loads(ds.read_text(ds.DASHBOARD_FILE))


def all_panels(board):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board):
    """(where, PromQL) of every panel target and every query variable."""
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            yield f"panel '{panel['title']}' target {target['refId']}", target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            expr = promql_names.grafana_query_expr(query)
            if expr:
                yield f"variable ${var['name']}", expr


def grafana_to_promql(expr):
    """A dashboard query with Grafana's variables replaced by values Prometheus accepts."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


class MonitoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory()
        cls.exported, cls.sources = exported_metrics(cls.work.name)
        print(f"metric names from: {cls.sources}", file=sys.stderr)
        cls.recorded = {r["record"] for g in rules()["groups"] for r in g["rules"] if "record" in r}

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def test_promtool_accepts_the_rules(self):
        proc = ds.run([ds.tool("promtool"), "check", "rules", ds.RULES_FILE])
        self.assertIn("SUCCESS", proc.stdout)

    def test_alerts_fire_as_specified(self):
        ds.run([ds.tool("promtool"), "test", "rules",
                os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules_test.yaml")])

    def test_rules_reference_only_exported_metrics(self):
        unknown = []
        for group in rules()["groups"]:
            for rule in group["rules"]:
                for name in promql_names.metric_names(rule["expr"]):
                    if name not in self.exported and name not in self.recorded:
                        unknown.append(f"{rule.get('alert') or rule.get('record')}: {name}")
        self.assertEqual(unknown, [], f"names no component exports (sources: {self.sources})")

    def test_dashboard_references_only_exported_metrics(self):
        unknown = [f"{where}: {name}" for where, expr in dashboard_queries(dashboard())
                   for name in promql_names.metric_names(expr) if name not in self.exported]
        self.assertEqual(unknown, [], f"names no component exports (sources: {self.sources})")

    def test_dashboard_queries_are_valid_promql(self):
        records = [{"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
                   for i, (_, expr) in enumerate(dashboard_queries(dashboard()))]
        path = os.path.join(self.work.name, "dashboard-queries.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, f)
        ds.run([ds.tool("promtool"), "check", "rules", path])

    def test_dashboard_has_the_required_panels(self):
        titles = [p["title"] for p in all_panels(dashboard()) if p["type"] != "row"]
        for required in ["Tokens/s (prompt and generation)", "Cost per million tokens vs budget",
                         "Groups desired / ready", "Time to first token (p50 / p95 / p99)",
                         "Inter-token latency (p50 / p95 / p99)",
                         "Queue: running and waiting requests", "KV-cache usage",
                         "Prefix cache hit rate", "Expert load, layer $layer",
                         "Placement balancedness", "Speculative decoding acceptance",
                         "Gateway requests/s by code", "Requests held while waking",
                         "Time to first token from zero (p50 / max)",
                         "Outstanding tokens per group"]:
            self.assertIn(required, titles)
        heatmap = [p for p in all_panels(dashboard()) if p["type"] == "heatmap"][0]
        self.assertEqual(heatmap["repeat"], "layer")
        self.assertIn("moeserve_expert_tokens_total", heatmap["targets"][0]["expr"])

    def test_dashboard_panels_have_unique_ids_and_fit_the_grid(self):
        ids = [p["id"] for p in all_panels(dashboard())]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in all_panels(dashboard()):
            pos = panel["gridPos"]
            self.assertLessEqual(pos["x"] + pos["w"], 24, panel["title"])

    def test_rules_have_the_required_alerts_with_severity_and_summary(self):
        alerts = {r["alert"]: r for g in rules()["groups"] for r in g["rules"] if "alert" in r}
        for required in ["MoeserveCostAboveBudget", "MoeserveTTFTSLOBurnFast",
                         "MoeserveTTFTSLOBurnSlow", "MoeserveGroupNotReady",
                         "MoeservePlacementImbalanced", "MoeserveWorkerRestarts"]:
            self.assertIn(required, alerts)
        self.assertEqual(alerts["MoeserveGroupNotReady"]["for"], "10m")
        for name, alert in alerts.items():
            self.assertIn(alert["labels"]["severity"], ("warning", "critical"), name)
            self.assertIn("summary", alert["annotations"], name)


class PromqlNamesTest(unittest.TestCase):
    def test_names_skip_functions_keywords_labels_and_ranges(self):
        self.assertEqual(promql_names.metric_names(
            'histogram_quantile(0.95, sum by (namespace, le) (rate(a_bucket{x="y"}[5m])))'
            ' > on (namespace) group_left(pod) b offset 15m and c'), {"a_bucket", "b", "c"})

    def test_grafana_variables_and_strings_are_not_names(self):
        self.assertEqual(promql_names.metric_names(
            'sum(rate(m{n=~"$namespace", d="${d}"}[$__rate_interval])) / 1e3'), {"m"})

    def test_label_values_query_names_its_metric(self):
        self.assertEqual(promql_names.grafana_query_expr('label_values(m{a="b"}, deployment)'),
                         'm{a="b"}')
        self.assertEqual(promql_names.grafana_query_expr("label_values(deployment)"), "")

    def test_exposition_names_include_histogram_series(self):
        text = ("# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE c counter\nc_total 1\n"
                "# TYPE g gauge\n")
        self.assertEqual(components.exposition_names(text),
                         {"h", "h_bucket", "h_sum", "h_count", "c", "c_total", "g"})

    def test_an_unexported_name_is_reported(self):
        exported = {"moeserve_prompt_tokens_total"}
        names = promql_names.metric_names("rate(moeserve_prompt_tokens_total[5m]) / up")
        self.assertEqual(names - exported, {"up"})


if __name__ == "__main__":
    unittest.main()
