"""check_layering.py on fake trees: a clean tree passes, and a tree with one violation of
each kind gets exactly one finding per violation, in the file:line form."""

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_layering.py")

CMAKE = {
    "common/CMakeLists.txt": """
        moeserve_glob_library(moeserve_common DIR ${CMAKE_CURRENT_SOURCE_DIR}
          DEPS nlohmann_json::nlohmann_json)  # third-party DEPS are not checked
    """,
    "kernels/CMakeLists.txt": """
        moeserve_glob_library(moeserve_kernels_cpu DIR ${CMAKE_CURRENT_SOURCE_DIR}/cpu
          DEPS Threads::Threads)
    """,
    "worker/CMakeLists.txt": """
        moeserve_glob_library(moeserve_worker_model DIR ${CMAKE_CURRENT_SOURCE_DIR}/model
          DEPS moeserve_common)
        moeserve_glob_library(moeserve_worker_engine DIR ${CMAKE_CURRENT_SOURCE_DIR}/engine
          DEPS moeserve_worker_model moeserve_kernels_cpu)
        moeserve_executable(moeserve-worker SOURCES main.cpp DEPS moeserve_worker_engine)
    """,
    "operator/CMakeLists.txt": """
        moeserve_glob_library(moeserve_operator_deployment DIR ${CMAKE_CURRENT_SOURCE_DIR}/deployment
          DEPS moeserve_common)
        moeserve_glob_library(moeserve_operator_autoscaler DIR ${CMAKE_CURRENT_SOURCE_DIR}/autoscaler
          DEPS moeserve_common)
    """,
    "tests/worker/CMakeLists.txt": """
        moeserve_glob_tests(test_worker DEPS moeserve_worker_engine)
    """,
}

SOURCES = {
    "common/status.h": "#include <string>\n",
    "common/http_client.h": '#include "common/status.h"\n',
    "kernels/cpu/ops.h": "#include <cstdint>\n",
    "kernels/cpu/ops.cpp": '#include "ops.h"\n',  # relative to its folder
    "worker/model/config.h": '#include "common/status.h"\n',
    "worker/engine/engine.h": '#include "worker/model/config.h"\n#include "kernels/cpu/ops.h"\n',
    "worker/engine/engine.cpp": '#include "worker/engine/engine.h"\n',
    "worker/main.cpp": '#include "worker/engine/engine.h"\n',
    "operator/deployment/plan.h": '#include "common/status.h"\n',
    "operator/autoscaler/policy.h": '#include "common/status.h"\n',
    # A metric source talks HTTP by design (HTTP_SOURCES).
    "operator/autoscaler/scrape_source.cpp": '#include "common/http_client.h"\n',
    "tests/worker/engine_test.cpp": '#include "worker/engine/engine.h"\n',
}

# The clean tree plus one violation of each kind. The extra CMake lines declare the
# libraries the violating includes need, so that only the intended findings appear.
BROKEN = {
    "kernels/cpu/ops.cpp": '#include "ops.h"\n#include "common/status.h"\n',
    "common/http_client.h": '#include "common/status.h"\n#include "worker.pb.h"\n',
    "worker/engine/engine.h": ('#include "worker/model/config.h"\n#include "kernels/cpu/ops.h"\n'
                               '#include "tools/fixtures/tiny_model.h"\n'),
    "worker/engine/engine.cpp": '#include "worker/engine/engine.h"\n#include "worker/server/api.h"\n',
    "worker/model/config.h": '#include "common/status.h"\n#include "worker/parallel/group.h"\n',
    "worker/parallel/group.h": '#include "worker/server/api.h"\n',
    "worker/server/api.h": '#include "worker/cli/serve.h"\n',
    "worker/cli/serve.h": '#include "operator/deployment/plan.h"\n',
    "tools/fixtures/tiny_model.h": "#include <string>\n",
    "operator/deployment/plan.h": '#include "common/status.h"\n#include "common/http_client.h"\n',
    "operator/autoscaler/policy.h": ('#include "common/status.h"\n#include "operator/kube/client.h"\n'
                                     '#include "operator/placement/eplb.h"\n'),
    "operator/kube/client.h": '#include "worker/model/config.h"\n',
    "operator/placement/eplb.h": '#include "common/status.h"\n',
    "operator/local/run.cpp": "#include <vector>\n",
    "tests/one/a.h": '#include "tests/two/b.h"\n',
    "tests/two/b.h": '#include "tests/one/a.h"\n',
    "kernels/CMakeLists.txt": """
        moeserve_glob_library(moeserve_kernels_cpu DIR ${CMAKE_CURRENT_SOURCE_DIR}/cpu)
        target_link_libraries(moeserve_kernels_cpu PUBLIC moeserve_common)
    """,
    "worker/CMakeLists.txt": """
        moeserve_glob_library(moeserve_worker_model DIR ${CMAKE_CURRENT_SOURCE_DIR}/model
          DEPS moeserve_common moeserve_worker_parallel)
        moeserve_glob_library(moeserve_worker_engine DIR ${CMAKE_CURRENT_SOURCE_DIR}/engine
          DEPS moeserve_worker_model moeserve_kernels_cpu moeserve_worker_server moeserve_fixtures)
        moeserve_glob_library(moeserve_worker_parallel DIR ${CMAKE_CURRENT_SOURCE_DIR}/parallel
          DEPS moeserve_worker_server)
        moeserve_glob_library(moeserve_worker_server DIR ${CMAKE_CURRENT_SOURCE_DIR}/server
          DEPS moeserve_worker_cli)
        moeserve_glob_library(moeserve_worker_cli DIR ${CMAKE_CURRENT_SOURCE_DIR}/cli
          DEPS moeserve_operator_deployment)
        moeserve_executable(moeserve-worker SOURCES main.cpp DEPS moeserve_worker_engine)
    """,
    "tools/CMakeLists.txt": "moeserve_glob_library(moeserve_fixtures DIR fixtures)\n",
    "operator/CMakeLists.txt": """
        moeserve_glob_library(moeserve_operator_deployment DIR ${CMAKE_CURRENT_SOURCE_DIR}/deployment
          DEPS moeserve_common)
        moeserve_glob_library(moeserve_operator_autoscaler DIR ${CMAKE_CURRENT_SOURCE_DIR}/autoscaler
          DEPS moeserve_common moeserve_operator_kube)
        moeserve_glob_library(moeserve_operator_kube DIR ${CMAKE_CURRENT_SOURCE_DIR}/kube
          DEPS moeserve_worker_model)
        moeserve_glob_library(moeserve_operator_placement DIR ${CMAKE_CURRENT_SOURCE_DIR}/placement
          DEPS moeserve_common moeserve_kernels_cpu)
        moeserve_glob_library(moeserve_mystery DIR ${CMAKE_CURRENT_SOURCE_DIR}/mystery)
    """,
}

EXPECTED = [
    "kernels/cpu/ops.cpp:2: includes common/status.h (kernels is a leaf)",
    "common/http_client.h:2: includes proto/worker.pb.h (common is the bottom layer)",
    "worker/engine/engine.cpp:2: includes worker/server/api.h (the engine includes no server "
    "or CLI)",
    "worker/model/config.h:2: includes worker/parallel/group.h (the model includes no engine, "
    "parallel, server or CLI)",
    "worker/parallel/group.h:1: includes worker/server/api.h (parallel includes no engine, "
    "server or CLI)",
    "worker/server/api.h:1: includes worker/cli/serve.h (the server includes no CLI)",
    "operator/deployment/plan.h:2: includes common/http_client.h (deployment, autoscaler and "
    "placement include no client code)",
    "operator/autoscaler/policy.h:2: includes operator/kube/client.h (deployment, autoscaler "
    "and placement include no client code)",
    "operator/kube/client.h:1: includes worker/model/config.h (operator and worker meet only "
    "in proto/ and common/)",
    "worker/cli/serve.h:1: includes operator/deployment/plan.h (operator and worker meet only "
    "in proto/ and common/)",
    "worker/engine/engine.h:3: includes tools/fixtures/tiny_model.h (product code includes no "
    "tests, tools or benchmarks)",
    "tests/one/a.h:1: includes tests/two/b.h (folders form a DAG: tests/one -> tests/two -> "
    "tests/one)",
    "tests/two/b.h:1: includes tests/one/a.h (folders form a DAG: tests/one -> tests/two -> "
    "tests/one)",
    # CMake: an include whose library is not linked, a linked library never included, a
    # library the map does not know, and a mapped folder without its library.
    "operator/autoscaler/policy.h:3: includes operator/placement/eplb.h "
    "(moeserve_operator_autoscaler does not link moeserve_operator_placement: add it to DEPS "
    "in operator/CMakeLists.txt; CMake mirrors the includes)",
    "operator/CMakeLists.txt:7: moeserve_operator_placement links moeserve_kernels_cpu, but no "
    "file in operator/placement/ includes kernels/cpu/ (unused DEP; CMake mirrors the "
    "includes)",
    "operator/CMakeLists.txt:9: declares moeserve_mystery, which LIBRARIES in "
    "tests/layering/check_layering.py does not map to a folder (the library map is explicit)",
    "operator/local: has sources but no CMake library moeserve_operator_local (CMake mirrors "
    "the includes)",
]


def write_tree(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)


def run_checker(root):
    result = subprocess.run([sys.executable, CHECKER, "--root", root], capture_output=True,
                            text=True)
    return result.returncode, result.stdout.splitlines()


def tree(*parts):
    files = {}
    for part in parts:
        files.update({path: textwrap.dedent(text).lstrip() for path, text in part.items()})
    return files


class CheckLayeringTest(unittest.TestCase):
    def test_a_tree_that_keeps_every_rule_passes(self):
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, tree(CMAKE, SOURCES))
            code, lines = run_checker(root)
            self.assertEqual(lines, ["layering: ok"])
            self.assertEqual(code, 0)

    def test_each_violation_is_reported_once_with_its_rule(self):
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, tree(CMAKE, SOURCES, BROKEN))
            code, lines = run_checker(root)
            self.assertEqual(sorted(lines[:-1]), sorted(EXPECTED))
            self.assertEqual(lines[-1], f"layering: {len(EXPECTED)} violation(s)")
            self.assertEqual(code, 1)


if __name__ == "__main__":
    unittest.main()
