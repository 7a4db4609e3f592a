"""The Helm chart: lint, render with defaults and with every toggle, schema rejections,
standard labels, security contexts, probes, the CRD and monitoring files reached through
symlinks (helm template --include-crds and helm package), and NOTES.txt."""

import json
import os
import shutil
import tarfile
import tempfile
import unittest

import yaml

import deploy_support as ds

STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
]


def kinds(docs):
    return sorted(d["kind"] for d in docs)


def find(docs, kind, name_suffix=""):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} named *{name_suffix}, found {len(found)}")
    return found[0]


class ChartTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.default_docs = ds.render()
        cls.all_docs = ds.render(ds.ALL_TOGGLES)

    def test_lint_passes_with_defaults_and_with_every_toggle(self):
        helm = ds.tool("helm")
        ds.run([helm, "lint", "--strict", ds.CHART_DIR])
        argv = [helm, "lint", "--strict", ds.CHART_DIR]
        for s in ds.ALL_TOGGLES:
            argv += ["--set", s]
        ds.run(argv)

    def test_default_render_has_the_operator_objects_and_no_monitoring(self):
        self.assertEqual(kinds(self.default_docs), [
            "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role",
            "RoleBinding", "Service", "ServiceAccount"])

    def test_every_toggle_adds_its_monitoring_object(self):
        added = kinds(self.all_docs)
        for kind in kinds(self.default_docs):
            added.remove(kind)
        self.assertEqual(added, ["ConfigMap", "PodMonitor", "PodMonitor", "PodMonitor",
                                 "PrometheusRule", "ServiceMonitor"])

    def test_every_rendered_object_carries_the_standard_labels(self):
        for doc in self.all_docs:
            labels = doc["metadata"].get("labels", {})
            for key in STANDARD_LABELS:
                self.assertIn(key, labels, f"{doc['kind']}/{doc['metadata']['name']} lacks {key}")
            self.assertEqual(labels["app.kubernetes.io/part-of"], "moeserve")
            self.assertEqual(labels["app.kubernetes.io/instance"], "moeserve")
            self.assertEqual(labels["app.kubernetes.io/managed-by"], "Helm")

    def test_operator_pods_carry_the_standard_labels(self):
        pod_labels = find(self.default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        for key in STANDARD_LABELS:
            self.assertIn(key, pod_labels)

    def test_operator_runs_two_replicas_with_leader_election(self):
        deployment = find(self.default_docs, "Deployment")
        self.assertEqual(deployment["spec"]["replicas"], 2)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--leader-elect", args)
        self.assertIn("--metrics-port=8080", args)
        self.assertEqual(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)

    def test_operator_pod_is_hardened(self):
        pod = find(self.default_docs, "Deployment")["spec"]["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
        self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        for container in pod["containers"]:
            sc = container["securityContext"]
            self.assertFalse(sc["allowPrivilegeEscalation"])
            self.assertTrue(sc["readOnlyRootFilesystem"])
            self.assertTrue(sc["runAsNonRoot"])
            self.assertFalse(sc["privileged"])
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
            self.assertNotIn("add", sc["capabilities"])
            self.assertEqual(sc["seccompProfile"]["type"], "RuntimeDefault")
            for kind in ("requests", "limits"):
                self.assertIn("cpu", container["resources"][kind])
                self.assertIn("memory", container["resources"][kind])
        # A read-only root filesystem still needs a writable /tmp.
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        self.assertIn("/tmp", mounts)

    def test_probes_hit_healthz_and_readyz_on_the_metrics_port(self):
        container = find(self.default_docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"metrics": 8080})
        self.assertEqual(container["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        self.assertEqual(container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})

    def test_metrics_service_selects_the_operator_pods(self):
        deployment = find(self.default_docs, "Deployment")
        service = find(self.default_docs, "Service", "-metrics")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for key, value in service["spec"]["selector"].items():
            self.assertEqual(pod_labels[key], value)
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], "metrics")
        self.assertEqual(service["metadata"]["namespace"], "moeserve-system")

    def test_service_account_is_bound_to_the_roles(self):
        account = find(self.default_docs, "ServiceAccount")["metadata"]["name"]
        deployment = find(self.default_docs, "Deployment")
        self.assertEqual(deployment["spec"]["template"]["spec"]["serviceAccountName"], account)
        for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
            binding = find(self.default_docs, kind)
            self.assertEqual(binding["subjects"], [
                {"kind": "ServiceAccount", "name": account, "namespace": "moeserve-system"}])
            role = find(self.default_docs, role_kind)
            self.assertEqual(binding["roleRef"]["name"], role["metadata"]["name"])

    def test_worker_pod_monitor_matches_the_worker_pods_the_operator_renders(self):
        monitor = find(self.all_docs, "PodMonitor", "-workers")
        # operator/deployment/names.{h,cpp}: worker pods are labelled with these.
        names = ds.read_text(os.path.join(ds.SOURCE_DIR, "operator", "deployment", "names.h"))
        self.assertIn('kWorkerAppName = "moeserve-worker"', names)
        self.assertIn('kComponentWorker = "worker"', names)
        self.assertEqual(monitor["spec"]["selector"]["matchLabels"], {
            "app.kubernetes.io/name": "moeserve-worker", "app.kubernetes.io/component": "worker"})
        self.assertEqual(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics")
        self.assertEqual(monitor["spec"]["namespaceSelector"], {"any": True})

    def test_engine_pod_monitor_scrapes_the_api_port_of_vllm_and_sglang_leaders(self):
        monitor = find(self.all_docs, "PodMonitor", "-engines")
        names = ds.read_text(os.path.join(ds.SOURCE_DIR, "operator", "deployment", "names.h"))
        self.assertIn('kLabelEngine = "moeserve.io/engine"', names)
        selector = monitor["spec"]["selector"]
        self.assertEqual(selector["matchLabels"]["apps.kubernetes.io/pod-index"], "0")
        self.assertEqual(selector["matchExpressions"], [
            {"key": "moeserve.io/engine", "operator": "In", "values": ["vllm", "sglang"]}])
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        self.assertEqual(endpoint["port"], "http")
        self.assertIn({"sourceLabels": ["__meta_kubernetes_pod_label_moeserve_io_deployment"],
                       "targetLabel": "deployment"}, endpoint["relabelings"])

    def test_prometheus_rule_embeds_the_plain_rules_file(self):
        rule = find(self.all_docs, "PrometheusRule")
        plain = yaml.safe_load(ds.read_text(ds.RULES_FILE))
        self.assertEqual(rule["spec"]["groups"], plain["groups"])

    def test_dashboard_config_map_embeds_the_plain_dashboard_with_the_sidecar_label(self):
        config_map = find(self.all_docs, "ConfigMap", "-dashboard")
        self.assertEqual(config_map["metadata"]["labels"]["grafana_dashboard"], "1")
        embedded = json.loads(config_map["data"]["moeserve-dashboard.json"])
        self.assertEqual(embedded, json.loads(ds.read_text(ds.DASHBOARD_FILE)))

    def test_crd_comes_from_deploy_crds_through_the_symlink(self):
        link = os.path.join(ds.CHART_DIR, "crds")
        self.assertTrue(os.path.islink(link), "charts/moeserve/crds must be a symlink")
        self.assertEqual(os.path.realpath(link), os.path.realpath(
            os.path.join(ds.SOURCE_DIR, "deploy", "crds")))
        monitoring = os.path.join(ds.CHART_DIR, "monitoring")
        self.assertTrue(os.path.islink(monitoring))
        self.assertEqual(os.path.realpath(monitoring), os.path.realpath(ds.MONITORING_DIR))
        docs = ds.render(include_crds=True)
        crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
        plain = yaml.safe_load(ds.read_text(os.path.join(
            ds.SOURCE_DIR, "deploy", "crds", "modeldeployments.moeserve.io.yaml")))
        self.assertEqual(crds, [plain])

    def test_packaged_chart_contains_the_crd_and_monitoring_files(self):
        with tempfile.TemporaryDirectory() as out:
            ds.run([ds.tool("helm"), "package", ds.CHART_DIR, "--destination", out])
            archive = os.path.join(out, "moeserve-0.1.0.tgz")
            with tarfile.open(archive) as tar:
                members = {m.name: m for m in tar.getmembers()}
                crd = "moeserve/crds/modeldeployments.moeserve.io.yaml"
                self.assertIn(crd, members)
                self.assertTrue(members[crd].isfile(), "the archive must hold the file, not a link")
                self.assertEqual(
                    tar.extractfile(crd).read(),
                    ds.read_text(os.path.join(ds.SOURCE_DIR, "deploy", "crds",
                                              "modeldeployments.moeserve.io.yaml")).encode())
                for name in ("moeserve-rules.yaml", "moeserve-dashboard.json"):
                    self.assertTrue(members[f"moeserve/monitoring/{name}"].isfile())
            # The packaged chart renders the same objects as the source folder.
            packaged = ds.render(ds.ALL_TOGGLES, chart=archive, include_crds=True)
            self.assertEqual(packaged, ds.render(ds.ALL_TOGGLES, include_crds=True))

    def render_notes(self, sets=()):
        """NOTES.txt as helm would print it. `helm install --dry-run` needs a cluster, so
        the test renders the same text through `tpl` in a copy of the chart."""
        with tempfile.TemporaryDirectory() as work:
            chart = os.path.join(work, "moeserve")
            shutil.copytree(ds.CHART_DIR, chart, symlinks=False)
            os.rename(os.path.join(chart, "templates", "NOTES.txt"), os.path.join(chart, "notes.txt"))
            with open(os.path.join(chart, "templates", "notes.yaml"), "w") as f:
                f.write('notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
            out = ds.helm_template(sets, chart=chart).stdout
            docs = [d for d in ds.parse_documents(out) if "notes" in d]
            return docs[0]["notes"]

    def test_notes_explain_how_to_apply_an_example_and_reach_the_endpoint(self):
        notes = self.render_notes()
        self.assertIn("kubectl apply", notes)
        self.assertIn("deploy/examples/tiny-cpu.yaml", notes)
        self.assertIn("port-forward service/tiny-cpu 8000:8000", notes)
        self.assertIn("/v1/chat/completions", notes)
        self.assertIn("rollout status deployment/moeserve-operator", notes)
        for example in os.listdir(os.path.join(ds.SOURCE_DIR, "deploy", "examples")):
            self.assertIn(example, notes)


class SchemaTest(unittest.TestCase):
    """Bad values fail at render time with the offending path in the message."""

    def assert_rejected(self, sets, expected_in_message):
        proc = ds.helm_template(sets, check=False)
        self.assertNotEqual(proc.returncode, 0, f"helm accepted {sets}")
        self.assertIn("values don't meet the specifications of the schema", proc.stderr)
        self.assertIn(expected_in_message, proc.stderr)

    def test_unknown_key_is_rejected(self):
        self.assert_rejected(["operator.replica=3"], "Additional property replica is not allowed")

    def test_wrong_type_is_rejected(self):
        self.assert_rejected(["operator.replicas=two"], "operator.replicas")

    def test_zero_replicas_is_rejected(self):
        self.assert_rejected(["operator.replicas=0"], "operator.replicas")

    def test_bad_pull_policy_is_rejected(self):
        self.assert_rejected(["operator.image.pullPolicy=Sometimes"], "operator.image.pullPolicy")

    def test_bad_log_level_is_rejected(self):
        self.assert_rejected(["operator.logLevel=verbose"], "operator.logLevel")

    def test_bad_port_is_rejected(self):
        self.assert_rejected(["operator.metrics.port=70000"], "operator.metrics.port")

    def test_bad_scrape_interval_is_rejected(self):
        self.assert_rejected(["monitoring.workers.podMonitor.interval=soon"],
                             "monitoring.workers.podMonitor.interval")

    def test_bad_memory_quantity_is_rejected(self):
        self.assert_rejected(["operator.resources.limits.memory=lots"],
                             "operator.resources.limits.memory")

    def test_weakened_security_context_is_rejected(self):
        self.assert_rejected(["operator.securityContext.readOnlyRootFilesystem=false"],
                             "operator.securityContext.readOnlyRootFilesystem")
        self.assert_rejected(["operator.securityContext.allowPrivilegeEscalation=true"],
                             "operator.securityContext.allowPrivilegeEscalation")
        self.assert_rejected(["operator.podSecurityContext.runAsNonRoot=false"],
                             "operator.podSecurityContext.runAsNonRoot")
        self.assert_rejected(["operator.securityContext.capabilities.add={NET_ADMIN}"],
                             "operator.securityContext.capabilities.add")

    def test_several_replicas_without_leader_election_are_rejected(self):
        self.assert_rejected(["operator.leaderElection.enabled=false"],
                             "operator.leaderElection.enabled")

    def test_one_replica_without_leader_election_is_accepted(self):
        docs = ds.render(["operator.replicas=1", "operator.leaderElection.enabled=false"])
        self.assertNotIn("Role", kinds(docs))
        self.assertNotIn("PodDisruptionBudget", kinds(docs))
        args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertNotIn("--leader-elect", args)


class GatewayChartTest(unittest.TestCase):
    """gateway.enabled: the gateway's Deployment, Service, PodDisruptionBudget and
    ServiceAccount, and the operator told where the gateway runs."""

    @classmethod
    def setUpClass(cls):
        cls.docs = ds.render(["gateway.enabled=true"])

    def deployment(self):
        return find(self.docs, "Deployment", "-gateway")

    def test_off_by_default(self):
        default = ds.render()
        self.assertFalse([d for d in default if d["metadata"]["name"].endswith("-gateway")])
        args = find(default, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertFalse([a for a in args if a.startswith("--gateway-namespace")])

    def test_renders_its_objects_with_the_standard_labels(self):
        gateway = sorted(d["kind"] for d in self.docs if d["metadata"]["name"].endswith("-gateway"))
        self.assertEqual(gateway, ["ClusterRole", "ClusterRoleBinding", "Deployment",
                                   "PodDisruptionBudget", "Service", "ServiceAccount"])
        for doc in self.docs:
            if doc["metadata"]["name"].endswith("-gateway"):
                for label in STANDARD_LABELS:
                    self.assertIn(label, doc["metadata"]["labels"], doc["kind"])
                self.assertEqual(doc["metadata"]["labels"]["app.kubernetes.io/component"], "gateway")

    def test_two_replicas_in_cluster_with_the_pod_name_as_identity(self):
        deployment = self.deployment()
        self.assertEqual(deployment["spec"]["replicas"], 2)
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["command"], ["/usr/local/bin/moeserve-gateway"])
        self.assertIn("--in-cluster", container["args"])
        self.assertIn("--port=8000", container["args"])
        self.assertIn("--host=0.0.0.0", container["args"])
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(pod["serviceAccountName"], find(self.docs, "ServiceAccount", "-gateway")["metadata"]["name"])
        self.assertEqual(container["image"], find(self.docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["image"])
        self.assertEqual(container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})

    def test_pod_is_hardened_like_the_operator(self):
        pod = self.deployment()["spec"]["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        sc = pod["containers"][0]["securityContext"]
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        for kind in ("requests", "limits"):
            self.assertIn("cpu", pod["containers"][0]["resources"][kind])

    def test_service_and_budget_select_the_gateway_pods(self):
        pod_labels = self.deployment()["spec"]["template"]["metadata"]["labels"]
        # The label the operator's worker NetworkPolicy admits (render.cpp).
        self.assertEqual(pod_labels["app.kubernetes.io/component"], "gateway")
        service = find(self.docs, "Service", "-gateway")
        pdb = find(self.docs, "PodDisruptionBudget", "-gateway")
        for selector in (service["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"]):
            for key, value in selector.items():
                self.assertEqual(pod_labels[key], value)
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(service["spec"]["type"], "ClusterIP")
        self.assertEqual(service["spec"]["ports"][0], {"name": "http", "port": 80,
                                                       "targetPort": "http", "protocol": "TCP"})

    def test_operator_admits_the_gateway_namespace_to_the_workers(self):
        args = find(self.docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--gateway-namespace=moeserve-system", args)

    def test_watch_namespace_is_passed_on(self):
        docs = ds.render(["gateway.enabled=true", "operator.watchNamespace=team-a"])
        args = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--namespace=team-a", args)

    def test_values_are_checked(self):
        for sets, path in ((["gateway.replicas=0"], "gateway.replicas"),
                           (["gateway.service.type=Ingress"], "gateway.service.type"),
                           (["gateway.port=0"], "gateway.port"),
                           (["gateway.resources.limits.memory=lots"], "gateway.resources.limits.memory"),
                           (["gateway.replica=2"], "Additional property replica is not allowed")):
            proc = ds.helm_template(sets, check=False)
            self.assertNotEqual(proc.returncode, 0, f"helm accepted {sets}")
            self.assertIn(path, proc.stderr)


if __name__ == "__main__":
    unittest.main()
