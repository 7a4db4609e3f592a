#!/usr/bin/env python3
"""moeserve-placement plan on good and bad inputs: the JSON it prints, the plan's
invariants, and exit 2 with a message on stderr for every kind of bad input.
Usage: placement_cli_test.py PATH_TO_moeserve-placement"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

BINARY = None


def write_loads(folder, doc, name="loads.json"):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def run(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=60)


class PlacementCliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        random.seed(3)
        # 3 layers x 32 experts, skewed: a few hot experts per layer.
        self.load = [[random.random() * (50 if e % 11 == l else 1) for e in range(32)]
                     for l in range(3)]
        self.good = write_loads(self.tmp.name, {"load": self.load})

    def tearDown(self):
        self.tmp.cleanup()

    def plan(self, *extra):
        return run("plan", "--input", self.good, "--slots", "40", "--ranks", "8",
                   "--groups", "4", "--nodes", "2", *extra)

    def test_json_plan_for_every_policy(self):
        results = {}
        for policy in ("eplb", "refined", "global", "auto"):
            out = self.plan("--policy", policy, "--json")
            self.assertEqual(out.returncode, 0, out.stderr)
            doc = json.loads(out.stdout)
            for key in ("phy2log", "logcnt", "balancedness", "time_s", "bound"):
                self.assertIn(key, doc)
            self.assertEqual(len(doc["phy2log"]), 3)
            for layer, row in enumerate(doc["phy2log"]):
                self.assertEqual(len(row), 40)
                self.assertEqual(set(row), set(range(32)), "every expert has a replica")
                counts = [row.count(e) for e in range(32)]
                self.assertEqual(doc["logcnt"][layer], counts)
            self.assertGreater(doc["balancedness"], 0)
            self.assertLessEqual(doc["balancedness"], 1)
            self.assertGreaterEqual(doc["time_s"], 0)
            results[policy] = doc
        self.assertGreaterEqual(results["refined"]["balancedness"],
                                results["eplb"]["balancedness"])
        self.assertGreaterEqual(results["global"]["balancedness"],
                                results["refined"]["balancedness"])
        self.assertLessEqual(results["refined"]["balancedness"], results["refined"]["bound"])
        # refined keeps groups (8 experts each) on nodes (20 slots each).
        for row in results["refined"]["phy2log"]:
            for node in range(2):
                groups = {e // 8 for e in row[node * 20:(node + 1) * 20]}
                self.assertEqual(len(groups), 2)

    def test_deterministic(self):
        first = self.plan("--policy", "refined", "--json")
        second = self.plan("--policy", "refined", "--json")
        self.assertEqual(json.loads(first.stdout)["phy2log"], json.loads(second.stdout)["phy2log"])

    def test_human_summary(self):
        out = self.plan("--policy", "refined")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("balancedness", out.stdout)
        self.assertIn("eplb", out.stdout)

    def expect_refused(self, args, needle):
        out = run(*args)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn(needle, out.stderr)

    def bad_input(self, doc, needle):
        path = write_loads(self.tmp.name, doc, "bad.json")
        self.expect_refused(["plan", "--input", path, "--slots", "40", "--ranks", "8"], needle)

    def test_bad_inputs(self):
        self.bad_input({"load": [[1, 2, 3], [1, 2]]}, "ragged")
        self.bad_input({"load": [[1, -2, 3]]}, "non-negative")
        # JSON has no infinity: an overflowing number is refused by the parser.
        self.bad_input('{"load": [[1, 1e999, 3]]}', "JSON")
        self.bad_input({"load": [[1, "x", 3]]}, "not a number")
        self.bad_input({"loads": [[1]]}, "load")
        self.bad_input("{not json", "not valid JSON")

    def test_bad_shapes_and_flags(self):
        base = ["plan", "--input", self.good]
        self.expect_refused(base + ["--slots", "41", "--ranks", "8"], "not divisible")
        self.expect_refused(base + ["--slots", "24", "--ranks", "8"], "slots")
        self.expect_refused(base + ["--slots", "40", "--ranks", "8", "--groups", "3"],
                            "groups")
        self.expect_refused(base + ["--slots", "40", "--ranks", "8", "--policy", "best"],
                            "unknown policy")
        self.expect_refused(base + ["--slots", "40", "--ranks", "8", "--bogus"], "--bogus")
        self.expect_refused(base + ["--slots", "40"], "--ranks")
        self.expect_refused(["plan", "--slots", "40", "--ranks", "8"], "--input")
        self.expect_refused(["plan", "--input", os.path.join(self.tmp.name, "missing.json"),
                             "--slots", "40", "--ranks", "8"], "missing.json")
        self.expect_refused(base + ["--slots", "40", "--ranks", "8", "--policy", "auto",
                                    "--inter-node-bytes-per-s", "0"], "inter_node")


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    unittest.main()
