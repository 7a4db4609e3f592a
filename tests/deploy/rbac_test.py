"""RBAC of the chart: no wildcards, and exactly the requests the operator's code makes
(rbac_scan.py scans operator/; its docstring states the convention)."""

import unittest

import deploy_support as ds
import rbac_scan


def grants(docs):
    """{(group, resource, verb): kind} over the ClusterRole and Role rules."""
    found = {}
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in doc["rules"]:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        found[(group, resource, verb)] = doc["kind"]
    return found


def source(text, path="operator/controller/x.cpp"):
    return rbac_scan.Source(text, path)


RESOURCES = {"Pods": ("", "pods"), "StatefulSets": ("apps", "statefulsets"),
             "Services": ("", "services"), "Leases": ("coordination.k8s.io", "leases"),
             "ModelDeployments": ("moeserve.io", "modeldeployments")}


def scan(*sources):
    requests, errors = rbac_scan.scan_sources(list(sources), RESOURCES)
    return sorted({(r.resource, r.verb) for r in requests}), errors


class ScanTest(unittest.TestCase):
    """The scanner itself, on small sources."""

    def test_direct_resource_argument(self):
        self.assertEqual(scan(source(
            "auto x = client_.create(kube::resources::kPods, ns, pod);\n"
            "client_->remove(kube::resources::kStatefulSets, ns, name);")),
            ([("pods", "create"), ("statefulsets", "delete")], []))

    def test_status_subresource(self):
        self.assertEqual(scan(source(
            "client.update_status(kube::resources::kModelDeployments, ns, o);\n"
            "client.patch(kube::resources::kPods, ns, n, kube::PatchType::kMerge, p, \"status\");")),
            ([("modeldeployments/status", "update"), ("pods/status", "patch")], []))

    def test_local_binding(self):
        self.assertEqual(scan(source(
            "const auto& ref = kube::resources::kLeases;\nclient_.get(ref, ns, name);")),
            ([("leases", "get")], []))

    def test_function_result_binding(self):
        self.assertEqual(scan(source(
            "StatusOr<ResourceRef> R::pick(const std::string& k) {\n"
            "  if (k == \"a\") return kube::resources::kServices;\n"
            "  return kube::resources::kStatefulSets;\n}\n"
            "void f() { MOESERVE_ASSIGN_OR_RETURN(kube::ResourceRef ref, pick(kind));\n"
            "  client_.update(ref, ns, obj); }")),
            ([("services", "update"), ("statefulsets", "update")], []))

    def test_annotation(self):
        self.assertEqual(scan(source(
            "void apply(const ResourceRef& ref) {\n  // rbac: services pods\n"
            "  client_.create(ref, ns, obj);\n}")),
            ([("pods", "create"), ("services", "create")], []))

    def test_unresolvable_call_is_an_error(self):
        requests, errors = scan(source("void f(const ResourceRef& ref) { client_.create(ref, ns, o); }"))
        self.assertEqual(requests, [])
        self.assertEqual(len(errors), 1)
        self.assertIn("operator/controller/x.cpp:1", errors[0])

    def test_unknown_resource_is_an_error(self):
        _, errors = scan(source("client_.get(kube::resources::kSecrets, ns, n);"))
        self.assertIn("unknown resource Secrets", errors[0])

    def test_comments_and_other_receivers_are_ignored(self):
        self.assertEqual(scan(source(
            "// client_.create(kube::resources::kPods, ns, o);\n"
            "/* client_.remove(kube::resources::kPods, ns, n); */\n"
            "cache.get(kube::resources::kPods, key);")), ([], []))

    def test_reflector_and_informer_reads_list_and_watch(self):
        self.assertEqual(scan(source(
            "auto r = std::make_unique<kube::Reflector>(client, kube::resources::kPods, ns, h);\n"
            "auto s = informers_.get(kube::resources::kServices.resource, key);")),
            ([("pods", "list"), ("pods", "watch"), ("services", "list"), ("services", "watch")], []))

    def test_generic_controller_is_counted_where_it_is_constructed(self):
        definition = source(
            "Controller::Controller(const kube::Client& client, kube::ResourceRef root,\n"
            "    std::vector<kube::ResourceRef> owned) {\n"
            "  r_ = std::make_unique<kube::Reflector>(client_, root_, ns, h);\n}",
            "operator/controller/controller.cpp")
        self.assertEqual(scan(definition), ([], []))
        wiring = source("controller::Controller c(client, kube::resources::kModelDeployments,\n"
                        "  {kube::resources::kStatefulSets}, options);", "operator/main.cpp")
        self.assertEqual(scan(definition, wiring), ([
            ("modeldeployments", "list"), ("modeldeployments", "watch"),
            ("statefulsets", "list"), ("statefulsets", "watch")], []))


class RbacTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = ds.render()
        cls.grants = grants(cls.docs)
        cls.requests, cls.errors = rbac_scan.scan_operator(ds.SOURCE_DIR)

    def test_rules_have_no_wildcards(self):
        for doc in self.docs:
            if doc["kind"] not in ("ClusterRole", "Role"):
                continue
            for rule in doc["rules"]:
                self.assertNotIn("nonResourceURLs", rule)
                for field in ("apiGroups", "resources", "verbs"):
                    self.assertTrue(rule.get(field), f"{doc['kind']} rule without {field}")
                    for value in rule[field]:
                        self.assertNotIn("*", value, f"wildcard in {doc['kind']} {field}: {rule}")

    def test_grants_name_only_resources_the_client_knows(self):
        known = set(rbac_scan.known_resources(ds.SOURCE_DIR).values())
        for group, resource, _ in self.grants:
            self.assertIn((group, resource.split("/")[0]), known)

    def test_the_scan_resolves_every_client_call(self):
        self.assertEqual(self.errors, [])
        self.assertTrue(self.requests, "the scan found no Kubernetes requests in operator/")

    def test_every_request_the_operator_makes_is_granted(self):
        missing = sorted({f"{r.group or 'core'} {r.resource} {r.verb} (at {r.where})"
                          for r in self.requests
                          if (r.group, r.resource, r.verb) not in self.grants})
        self.assertEqual(missing, [], "requests the RBAC does not grant")

    def test_leases_are_granted_in_the_release_namespace_only(self):
        for (group, resource, verb), kind in self.grants.items():
            if resource == "leases":
                self.assertEqual(kind, "Role")
        role = [d for d in self.docs if d["kind"] == "Role"][0]
        self.assertEqual(role["metadata"]["namespace"], "moeserve-system")

    def test_every_grant_is_requested_by_the_operator(self):
        # Which kinds the controller watches is decided where it is wired (the construction
        # of the generic controller, operator/controller/run_operator.cpp); without those
        # requests the informer grants would all look unused.
        self.assertTrue(any(r.origin == "watcher" for r in self.requests),
                        "no construction of the generic controller found in operator/")
        requested = {(r.group, r.resource, r.verb) for r in self.requests}
        unused = sorted(f"{g or 'core'} {res} {verb}" for g, res, verb in self.grants
                        if (g, res, verb) not in requested)
        self.assertEqual(unused, [], "grants no code requests (least privilege)")


class NamespacedRbacTest(unittest.TestCase):
    """operator.watchNamespace: the operator's rules become a Role in that namespace, and
    nothing is granted cluster-wide."""

    @classmethod
    def setUpClass(cls):
        cls.cluster_docs = ds.render()
        cls.docs = ds.render(["operator.watchNamespace=team-a"])
        cls.requests, _ = rbac_scan.scan_operator(ds.SOURCE_DIR)

    def named(self, docs, kind, suffix="-operator"):
        found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
        self.assertEqual(len(found), 1, f"one {kind} *{suffix}")
        return found[0]

    def test_nothing_is_granted_cluster_wide(self):
        kinds = {d["kind"] for d in self.docs}
        self.assertNotIn("ClusterRole", kinds)
        self.assertNotIn("ClusterRoleBinding", kinds)

    def test_the_role_in_the_watched_namespace_has_the_cluster_roles_rules(self):
        role = self.named(self.docs, "Role")
        self.assertEqual(role["metadata"]["namespace"], "team-a")
        self.assertEqual(role["rules"], self.named(self.cluster_docs, "ClusterRole")["rules"])
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        for owned in ("configmaps", "services", "statefulsets", "networkpolicies", "events"):
            self.assertIn(owned, resources)

    def test_the_binding_grants_the_role_to_the_operators_account(self):
        binding = self.named(self.docs, "RoleBinding")
        self.assertEqual(binding["metadata"]["namespace"], "team-a")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "Role",
                                              "name": binding["metadata"]["name"]})
        account = [d for d in self.docs if d["kind"] == "ServiceAccount"][0]
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount",
                                                "name": account["metadata"]["name"],
                                                "namespace": "moeserve-system"}])

    def test_the_operator_watches_only_that_namespace(self):
        deployment = [d for d in self.docs if d["kind"] == "Deployment"][0]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--namespace=team-a", args)

    def test_every_request_is_granted_by_the_roles(self):
        found = grants(self.docs)
        missing = sorted({f"{r.group or 'core'} {r.resource} {r.verb}" for r in self.requests
                          if (r.group, r.resource, r.verb) not in found})
        self.assertEqual(missing, [])


class GatewayRbacTest(unittest.TestCase):
    """gateway.enabled: the gateway's own roles grant exactly what operator/gateway
    requests, and the operator's roles do not change."""

    @classmethod
    def setUpClass(cls):
        cls.docs = ds.render(["gateway.enabled=true"])
        cls.namespaced = ds.render(["gateway.enabled=true", "operator.watchNamespace=team-a"])
        cls.requests, cls.errors = rbac_scan.scan_gateway(ds.SOURCE_DIR)

    @staticmethod
    def gateway_roles(docs):
        return [d for d in docs
                if d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"].endswith("-gateway")]

    def test_the_scan_finds_the_gateway_requests(self):
        self.assertEqual(self.errors, [])
        self.assertEqual(sorted({(r.resource, r.verb) for r in self.requests}),
                         [("modeldeployments", "list"), ("modeldeployments", "patch"),
                          ("modeldeployments", "watch"), ("pods", "list"), ("pods", "watch")])

    def test_gateway_grants_are_exactly_its_requests(self):
        roles = self.gateway_roles(self.docs)
        self.assertEqual([r["kind"] for r in roles], ["ClusterRole"])
        self.assertEqual(set(grants(roles)),
                         {(r.group, r.resource, r.verb) for r in self.requests})

    def test_operator_grants_do_not_change(self):
        operator = lambda docs: grants([d for d in docs if d not in self.gateway_roles(docs)])
        self.assertEqual(operator(self.docs), grants(ds.render()))

    def test_the_binding_names_the_gateways_own_account(self):
        binding = [d for d in self.docs if d["kind"] == "ClusterRoleBinding" and
                   d["metadata"]["name"].endswith("-gateway")][0]
        deployment = [d for d in self.docs if d["kind"] == "Deployment" and
                      d["metadata"]["name"].endswith("-gateway")][0]
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        self.assertTrue(account.endswith("-gateway"))
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": account,
                                                "namespace": "moeserve-system"}])

    def test_watch_namespace_makes_the_gateway_role_namespaced(self):
        roles = self.gateway_roles(self.namespaced)
        self.assertEqual([(r["kind"], r["metadata"]["namespace"]) for r in roles],
                         [("Role", "team-a")])
        self.assertNotIn("ClusterRole", {d["kind"] for d in self.namespaced})


if __name__ == "__main__":
    unittest.main()
