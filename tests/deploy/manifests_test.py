"""deploy/operator is the chart rendered with default values (make manifests): the
checked-in file must equal a fresh render, and carry the standard labels."""

import difflib
import os
import unittest

import deploy_support as ds
from chart_test import STANDARD_LABELS

RENDERED = os.path.join(ds.SOURCE_DIR, "deploy", "operator", "moeserve-operator.yaml")


class ManifestsTest(unittest.TestCase):
    def test_checked_in_manifests_equal_a_fresh_render(self):
        fresh = ds.run([os.path.join(ds.SOURCE_DIR, "scripts", "render-manifests.sh"),
                        ds.tool("helm")]).stdout
        checked_in = ds.read_text(RENDERED)
        if fresh != checked_in:
            diff = "".join(difflib.unified_diff(
                checked_in.splitlines(True), fresh.splitlines(True),
                "deploy/operator/moeserve-operator.yaml (checked in)", "fresh render"))
            self.fail("deploy/operator is stale: run `make manifests` and commit.\n" + diff)

    def test_manifests_hold_the_namespace_and_the_operator(self):
        docs = ds.parse_documents(ds.read_text(RENDERED))
        kinds = [d["kind"] for d in docs]
        self.assertEqual(kinds[0], "Namespace")
        self.assertIn("Deployment", kinds)
        namespace = docs[0]["metadata"]["name"]
        for doc in docs[1:]:
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                self.assertEqual(doc["metadata"]["namespace"], namespace)
        for doc in docs:
            for key in STANDARD_LABELS:
                self.assertIn(key, doc["metadata"]["labels"], f"{doc['kind']} lacks {key}")


if __name__ == "__main__":
    unittest.main()
