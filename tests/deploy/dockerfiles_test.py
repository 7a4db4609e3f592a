"""docker/*.Dockerfile cannot be built here (no container engine); these checks hold
what can be checked statically: multi-stage builds with the project's CMake, a
non-root final stage whose UID matches the chart, entry points the operator and the
chart rely on, and a build context that excludes build outputs."""

import os
import re
import subprocess
import tempfile
import unittest

import yaml

import deploy_support as ds

DOCKER_DIR = os.path.join(ds.SOURCE_DIR, "docker")


def stages(path):
    """[(base image, [instructions])] of a Dockerfile, line continuations joined."""
    text = re.sub(r"\\\n", " ", ds.read_text(path))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            result.append((rest.split()[0], []))
        elif result:
            result[-1][1].append((word.upper(), rest.strip()))
    return result


class DockerfilesTest(unittest.TestCase):
    def test_every_image_is_multi_stage_and_built_with_the_projects_cmake(self):
        for name, target in (("operator.Dockerfile", "moeserve-operator"),
                             ("worker.Dockerfile", "moeserve-worker"),
                             ("worker-cpu.Dockerfile", "moeserve-worker")):
            with self.subTest(name=name):
                parts = stages(os.path.join(DOCKER_DIR, name))
                self.assertGreaterEqual(len(parts), 2)
                runs = " ".join(arg for _, ins in parts[:-1] for op, arg in ins if op == "RUN")
                self.assertIn("cmake -S . -B /build", runs)
                self.assertIn(f"--target {target}", runs)
                final = parts[-1][1]
                copies = [arg for op, arg in final if op == "COPY"]
                self.assertTrue(any(f"/build/bin/{target}" in c for c in copies))

    def test_operator_image_ships_the_gateway_the_chart_runs(self):
        parts = stages(os.path.join(DOCKER_DIR, "operator.Dockerfile"))
        runs = " ".join(arg for _, ins in parts[:-1] for op, arg in ins if op == "RUN")
        self.assertIn("moeserve-gateway", runs)
        copies = [arg for op, arg in parts[-1][1] if op == "COPY"]
        self.assertIn("--from=build /build/bin/moeserve-gateway /usr/local/bin/moeserve-gateway", copies)

    def test_final_stages_run_as_the_charts_non_root_user(self):
        values = yaml.safe_load(ds.read_text(os.path.join(ds.CHART_DIR, "values.yaml")))
        uid = values["operator"]["podSecurityContext"]["runAsUser"]
        for name in ("operator.Dockerfile", "worker.Dockerfile", "worker-cpu.Dockerfile"):
            with self.subTest(name=name):
                users = [arg for op, arg in stages(os.path.join(DOCKER_DIR, name))[-1][1]
                         if op == "USER"]
                self.assertEqual(users, [f"{uid}:{uid}"])

    def test_worker_images_put_moeserve_worker_on_the_path_and_have_a_shell(self):
        # The operator's pods run "moeserve-worker" from the PATH (and /bin/sh -c for
        # several ranks per pod): operator/deployment/worker_command.{h,cpp}.
        command_dir = os.path.join(ds.SOURCE_DIR, "operator", "deployment")
        self.assertIn('worker_binary = "moeserve-worker"',
                      ds.read_text(os.path.join(command_dir, "worker_command.h")))
        self.assertIn('"/bin/sh"', ds.read_text(os.path.join(command_dir, "worker_command.cpp")))
        for name in ("worker.Dockerfile", "worker-cpu.Dockerfile"):
            base = stages(os.path.join(DOCKER_DIR, name))[-1][0]
            self.assertNotIn("distroless", base)
            copies = [arg for op, arg in stages(os.path.join(DOCKER_DIR, name))[-1][1] if op == "COPY"]
            self.assertTrue(any(c.endswith("/usr/local/bin/moeserve-worker") for c in copies))

    def test_worker_images_ship_moeserve_fetch_for_the_init_container(self):
        # hf:// sources: the operator's init container runs "moeserve-fetch" from the
        # worker image (operator/deployment/pod_template.cpp); it talks TLS to the Hub.
        template = ds.read_text(os.path.join(ds.SOURCE_DIR, "operator", "deployment",
                                             "pod_template.cpp"))
        self.assertIn('"moeserve-fetch"', template)
        self.assertNotIn("pip install", template)
        for name in ("worker.Dockerfile", "worker-cpu.Dockerfile"):
            with self.subTest(name=name):
                parts = stages(os.path.join(DOCKER_DIR, name))
                runs = " ".join(arg for _, ins in parts[:-1] for op, arg in ins if op == "RUN")
                self.assertIn("moeserve-fetch", runs.split("--target", 1)[1].split("-j")[0])
                final = parts[-1][1]
                copies = [arg for op, arg in final if op == "COPY"]
                self.assertIn("--from=build /build/bin/moeserve-fetch /usr/local/bin/moeserve-fetch",
                              copies)
                final_runs = " ".join(arg for op, arg in final if op == "RUN")
                self.assertIn("ca-certificates", final_runs)

    def test_cpu_image_ships_the_tiny_model_the_cpu_example_uses(self):
        example = yaml.safe_load(ds.read_text(os.path.join(ds.SOURCE_DIR, "deploy", "examples",
                                                           "tiny-cpu.yaml")))
        copies = [arg for op, arg in stages(os.path.join(DOCKER_DIR, "worker-cpu.Dockerfile"))[-1][1]
                  if op == "COPY"]
        self.assertTrue(any(c.endswith(" " + example["spec"]["model"]["source"]) for c in copies))

    def test_operator_image_entrypoint_takes_the_charts_arguments(self):
        final = stages(os.path.join(DOCKER_DIR, "operator.Dockerfile"))[-1][1]
        self.assertIn(("ENTRYPOINT", '["/usr/local/bin/moeserve-operator"]'), final)
        deployment = [d for d in ds.render() if d["kind"] == "Deployment"][0]
        self.assertEqual(deployment["spec"]["template"]["spec"]["containers"][0]["args"][0], "run")
        self.assertNotIn("command", deployment["spec"]["template"]["spec"]["containers"][0])

    def test_collect_libs_copies_dependencies_but_not_the_c_runtime(self):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([os.path.join(DOCKER_DIR, "collect-libs.sh"), out, "/usr/bin/curl"],
                           check=True)
            copied = os.listdir(out)
            self.assertTrue(any(n.startswith("libcurl") for n in copied))
            self.assertFalse(any(n.startswith(("libc.so", "ld-linux")) for n in copied))

    def test_build_context_excludes_build_outputs_and_tools(self):
        ignored = ds.read_text(os.path.join(ds.SOURCE_DIR, ".dockerignore")).split()
        for entry in (".git", ".tools", "build", "build-*"):
            self.assertIn(entry, ignored)


if __name__ == "__main__":
    unittest.main()
