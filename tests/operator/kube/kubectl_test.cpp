// The test API server checked against the real kubectl (found on PATH; `make test`
// puts .tools/bin first): discovery, apply (create and merge-patch paths), CRD
// defaults, the scale subresource, protobuf creates, deletes with cascade.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve::kube {
namespace {

using moeserve::testing::Process;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using moeserve::testing::write_file;
using nlohmann::json;

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + program;
    if (end > start && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

struct Output {
  int code;
  std::string text;
};

class KubectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubectl_ = find_on_path("kubectl");
    if (kubectl_.empty()) GTEST_SKIP() << "kubectl not found on PATH";
    std::string binary = moeserve::testing::bin_dir() + "/moeserve-test-apiserver";
    ASSERT_EQ(access(binary.c_str(), X_OK), 0) << binary;
    uint16_t port = moeserve::testing::free_port();
    server_ =
        std::make_unique<Process>(std::vector<std::string>{binary, "--port", std::to_string(port),
                                                           "--bookmark-interval-ms", "200"},
                                  dir_.file("apiserver.log"));
    url_ = "http://127.0.0.1:" + std::to_string(port);
    write_file(dir_.file("kubeconfig"), moeserve::testing::test_kubeconfig(url_));
    ASSERT_TRUE(
        wait_until([&] { return kubectl("version").code == 0; }, std::chrono::milliseconds(10000)))
        << moeserve::testing::read_file(dir_.file("apiserver.log"));
  }

  void TearDown() override {
    if (server_) {
      server_->signal(SIGTERM);
      EXPECT_EQ(server_->wait(std::chrono::milliseconds(10000)), 0);
    }
  }

  Output kubectl(const std::string& args) {
    std::string command = "HOME=" + dir_.path() + " " + kubectl_ + " --kubeconfig " +
                          dir_.file("kubeconfig") + " --cache-dir " + dir_.file("cache") + " " +
                          args + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) return {-1, "popen failed"};
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
    int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
  }

  json kubectl_json(const std::string& args) {
    Output out = kubectl(args + " -o json");
    EXPECT_EQ(out.code, 0) << out.text;
    return json::parse(out.text, nullptr, false);
  }

  std::string repo(const std::string& relative) {
    return moeserve::testing::source_dir() + "/" + relative;
  }

  std::string kubectl_;
  std::string url_;
  TempDir dir_;
  std::unique_ptr<Process> server_;
};

TEST_F(KubectlTest, ModelDeploymentLifecycleThroughCrdApplyScaleAndDelete) {
  Output crd = kubectl("apply --validate=false -f " + repo("deploy/crds/"));
  ASSERT_EQ(crd.code, 0) << crd.text;
  EXPECT_NE(crd.text.find("modeldeployments.moeserve.io created"), std::string::npos) << crd.text;

  std::string example = repo("deploy/examples/tiny-cpu.yaml");
  Output applied = kubectl("apply --validate=false -f " + example);
  ASSERT_EQ(applied.code, 0) << applied.text;
  EXPECT_NE(applied.text.find("modeldeployment.moeserve.io/tiny-cpu created"), std::string::npos);

  Output listed = kubectl("get mdep");
  ASSERT_EQ(listed.code, 0) << listed.text;
  EXPECT_NE(listed.text.find("tiny-cpu"), std::string::npos) << listed.text;
  EXPECT_NE(kubectl("get moeserve").text.find("tiny-cpu"), std::string::npos);  // category

  json object = kubectl_json("get mdep tiny-cpu");
  ASSERT_TRUE(object.is_object());
  EXPECT_EQ(object["metadata"]["generation"], 1);
  EXPECT_EQ(object["spec"]["parallelism"]["redundantExperts"], 0);         // schema default
  EXPECT_EQ(object["spec"]["worker"]["imagePullPolicy"], "IfNotPresent");  // schema default
  EXPECT_TRUE(object["metadata"]["annotations"].contains(
      "kubectl.kubernetes.io/last-applied-configuration"));

  // Printer columns come from the server's Table, evaluated on the status.
  Output status = kubectl(
      "patch mdep tiny-cpu --subresource=status --type=merge -p "
      "'{\"status\":{\"replicas\":1,\"tokensPerSecond\":12.5,\"conditions\":[{\"type\":"
      "\"Progressing\",\"status\":\"False\",\"reason\":\"Done\",\"message\":\"\","
      "\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"},{\"type\":\"Ready\",\"status\":"
      "\"True\",\"reason\":\"AllGroupsReady\",\"message\":\"\",\"lastTransitionTime\":"
      "\"2026-01-01T00:00:00Z\"}]}}'");
  ASSERT_EQ(status.code, 0) << status.text;
  Output table = kubectl("get mdep tiny-cpu");
  ASSERT_EQ(table.code, 0) << table.text;
  EXPECT_NE(table.text.find("TOKENS/S"), std::string::npos) << table.text;
  EXPECT_NE(table.text.find("True"), std::string::npos) << table.text;
  EXPECT_NE(table.text.find("12.5"), std::string::npos) << table.text;
  EXPECT_EQ(kubectl_json("get mdep tiny-cpu")["metadata"]["generation"], 1);  // status only

  Output scaled = kubectl("scale mdep/tiny-cpu --replicas=3");
  ASSERT_EQ(scaled.code, 0) << scaled.text;
  object = kubectl_json("get mdep tiny-cpu");
  EXPECT_EQ(object["spec"]["replicas"], 3);
  EXPECT_EQ(object["metadata"]["generation"], 2);

  std::string changed = moeserve::testing::read_file(example);
  size_t at = changed.find("targetTokensPerSecondPerGroup: 50");
  ASSERT_NE(at, std::string::npos);
  changed.replace(at, 33, "targetTokensPerSecondPerGroup: 75");
  write_file(dir_.file("changed.yaml"), changed);
  Output reapplied = kubectl("apply --validate=false -f " + dir_.file("changed.yaml"));
  ASSERT_EQ(reapplied.code, 0) << reapplied.text;
  EXPECT_NE(reapplied.text.find("configured"), std::string::npos) << reapplied.text;
  object = kubectl_json("get mdep tiny-cpu");
  EXPECT_EQ(object["spec"]["autoscaling"]["targetTokensPerSecondPerGroup"], 75);
  EXPECT_EQ(object["metadata"]["generation"], 3);

  Output unchanged = kubectl("apply --validate=false -f " + dir_.file("changed.yaml"));
  EXPECT_NE(unchanged.text.find("unchanged"), std::string::npos) << unchanged.text;

  Output deleted = kubectl("delete mdep tiny-cpu");
  ASSERT_EQ(deleted.code, 0) << deleted.text;
  Output gone = kubectl("get mdep tiny-cpu");
  EXPECT_NE(gone.code, 0);
  EXPECT_NE(gone.text.find("NotFound"), std::string::npos) << gone.text;
}

TEST_F(KubectlTest, ConfigMapsCreateListAndCascadingDelete) {
  Output created = kubectl("create configmap owner --from-literal=a=1 --from-literal=b=2");
  ASSERT_EQ(created.code, 0) << created.text;  // a protobuf request body
  json owner = kubectl_json("get configmap owner");
  EXPECT_EQ(owner["data"], (json{{"a", "1"}, {"b", "2"}}));
  std::string uid = owner["metadata"]["uid"];

  for (const char* name : {"child-a", "child-b"}) {
    write_file(dir_.file(std::string(name) + ".yaml"),
               "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + std::string(name) +
                   "\n  ownerReferences:\n  - {apiVersion: v1, kind: ConfigMap, name: owner, "
                   "uid: \"" +
                   uid + "\"}\ndata: {k: v}\n");
    Output applied = kubectl("apply --validate=false -f " + dir_.file(std::string(name) + ".yaml"));
    ASSERT_EQ(applied.code, 0) << applied.text;
  }
  Output listed = kubectl("get configmaps");
  ASSERT_EQ(listed.code, 0) << listed.text;
  for (const char* name : {"owner", "child-a", "child-b"}) {
    EXPECT_NE(listed.text.find(name), std::string::npos) << listed.text;
  }

  Output orphaned = kubectl("delete configmap child-b --cascade=orphan");
  ASSERT_EQ(orphaned.code, 0) << orphaned.text;
  Output deleted = kubectl("delete configmap owner");  // background cascade
  ASSERT_EQ(deleted.code, 0) << deleted.text;
  json remaining = kubectl_json("get configmaps");
  ASSERT_TRUE(remaining.is_object());
  EXPECT_TRUE(remaining["items"].empty()) << remaining.dump();

  Output ns = kubectl("create namespace team");
  ASSERT_EQ(ns.code, 0) << ns.text;
  ASSERT_EQ(kubectl("create configmap in-team -n team").code, 0);
  EXPECT_NE(kubectl("get cm -A").text.find("in-team"), std::string::npos);
  ASSERT_EQ(kubectl("delete namespace team").code, 0);
  EXPECT_NE(kubectl("get cm in-team -n team").code, 0);
}

}  // namespace
}  // namespace moeserve::kube
