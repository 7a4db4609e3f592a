#include "operator/kube/config.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/support/test_util.h"

namespace moeserve::kube {
namespace {

using moeserve::testing::TempDir;
using moeserve::testing::write_file;

// "-----BEGIN CERTIFICATE-----\nabc\n" in base64.
constexpr char kCaData[] = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmFiYwo=";
constexpr char kCaPem[] = "-----BEGIN CERTIFICATE-----\nabc\n";

std::string two_context_kubeconfig() {
  return std::string(R"(apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://10.1.2.3:6443/
    certificate-authority-data: )") +
         kCaData + R"(
- name: local
  cluster:
    server: http://127.0.0.1:8080
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: s3cr3t
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
- name: robot
  user:
    tokenFile: tokens/robot
contexts:
- name: prod
  context:
    cluster: prod-cluster
    user: admin
    namespace: serving
- name: dev
  context:
    cluster: local
    user: robot
- name: anonymous
  context:
    cluster: local
)";
}

TEST(Kubeconfig, CurrentContextGivesServerCaTokenCertAndNamespace) {
  auto config = parse_kubeconfig(two_context_kubeconfig(), "/etc/kube");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->server, "https://10.1.2.3:6443");
  EXPECT_EQ(config->ca_pem, kCaPem);
  EXPECT_EQ(config->token, "s3cr3t");
  EXPECT_EQ(config->client_cert_pem, "cert");
  EXPECT_EQ(config->client_key_pem, "key");
  EXPECT_EQ(config->namespace_name, "serving");
  EXPECT_FALSE(config->insecure_skip_tls_verify);
}

TEST(Kubeconfig, ExplicitContextWithRelativeTokenFileAndDefaultNamespace) {
  auto config = parse_kubeconfig(two_context_kubeconfig(), "/etc/kube", "dev");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->server, "http://127.0.0.1:8080");
  EXPECT_TRUE(config->insecure_skip_tls_verify);
  EXPECT_EQ(config->token_file, "/etc/kube/tokens/robot");
  EXPECT_EQ(config->namespace_name, "default");
}

TEST(Kubeconfig, ContextWithoutUserHasNoCredentials) {
  auto config = parse_kubeconfig(two_context_kubeconfig(), "", "anonymous");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_TRUE(config->token.empty());
  EXPECT_TRUE(config->token_file.empty());
  EXPECT_TRUE(config->client_cert_pem.empty());
}

TEST(Kubeconfig, MissingContextIsNotFoundAndNamesIt) {
  auto config = parse_kubeconfig(two_context_kubeconfig(), "", "staging");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);
  EXPECT_NE(config.status().message().find("staging"), std::string::npos);
}

TEST(Kubeconfig, MissingClusterAndBadInputAreErrors) {
  auto no_cluster = parse_kubeconfig(R"(current-context: a
contexts: [{name: a, context: {cluster: nowhere}}]
)",
                                     "");
  EXPECT_EQ(no_cluster.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_cluster.status().message().find("nowhere"), std::string::npos);
  EXPECT_EQ(parse_kubeconfig("clusters: [", "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_kubeconfig("kind: Config\n", "").status().code(), StatusCode::kInvalidArgument);
  auto bad_data = parse_kubeconfig(R"(current-context: a
clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "%%%"}}]
contexts: [{name: a, context: {cluster: c}}]
)",
                                   "");
  EXPECT_EQ(bad_data.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_data.status().message().find("certificate-authority-data"), std::string::npos);
}

TEST(Kubeconfig, LoadsFromFileResolvingPathsAgainstItsFolder) {
  TempDir dir;
  write_file(dir.file("config"), R"(current-context: a
clusters: [{name: c, cluster: {server: "https://k:443", certificate-authority: ca.pem}}]
users: [{name: u, user: {client-certificate: /abs/cert.pem, client-key: key.pem}}]
contexts: [{name: a, context: {cluster: c, user: u, namespace: ns1}}]
)");
  auto config = load_kubeconfig(dir.file("config"));
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->ca_file, dir.file("ca.pem"));
  EXPECT_EQ(config->client_cert_file, "/abs/cert.pem");
  EXPECT_EQ(config->client_key_file, dir.file("key.pem"));
  EXPECT_EQ(config->namespace_name, "ns1");
  EXPECT_EQ(load_kubeconfig(dir.file("absent")).status().code(), StatusCode::kNotFound);
}

TEST(Base64, DecodesWithAndWithoutPaddingAndRejectsGarbage) {
  EXPECT_EQ(*base64_decode("aGVsbG8="), "hello");
  EXPECT_EQ(*base64_decode("aGVsbG8"), "hello");
  EXPECT_EQ(*base64_decode("aGVs\nbG8h"), "hello!");
  EXPECT_FALSE(base64_decode("aGV*").ok());
  EXPECT_FALSE(base64_decode("a").ok());
}

class InCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    write_file(dir_.file("token"), "token-one\n");
    write_file(dir_.file("ca.crt"), kCaPem);
    write_file(dir_.file("namespace"), "moeserve-system");
  }
  void TearDown() override {
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
  }
  TempDir dir_;
};

TEST_F(InCluster, ReadsServiceEnvironmentAndServiceAccountFolder) {
  auto config = in_cluster_config(dir_.path());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->server, "https://10.96.0.1:443");
  EXPECT_EQ(config->ca_file, dir_.file("ca.crt"));
  EXPECT_EQ(config->token_file, dir_.file("token"));
  EXPECT_EQ(config->namespace_name, "moeserve-system");
}

TEST_F(InCluster, Ipv6HostIsBracketedAndMissingEnvironmentFails) {
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  EXPECT_EQ(in_cluster_config(dir_.path())->server, "https://[fd00::1]:443");
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(in_cluster_config(dir_.path()).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(InCluster, MissingTokenIsAnError) {
  TempDir empty;
  EXPECT_FALSE(in_cluster_config(empty.path()).ok());
}

TEST_F(InCluster, TokenIsReReadAfterTheRefreshIntervalOrInvalidate) {
  auto config = in_cluster_config(dir_.path());
  ASSERT_TRUE(config.ok());
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  TokenSource tokens(config->token, config->token_file, [&] { return now; });
  EXPECT_EQ(*tokens.token(), "token-one");

  write_file(dir_.file("token"), "token-two");  // the kubelet rotates the token
  now += std::chrono::seconds(30);
  EXPECT_EQ(*tokens.token(), "token-one");  // cached within the interval
  now += std::chrono::seconds(31);
  EXPECT_EQ(*tokens.token(), "token-two");

  write_file(dir_.file("token"), "token-three");
  tokens.invalidate();  // e.g. after a 401
  EXPECT_EQ(*tokens.token(), "token-three");

  std::remove(dir_.file("token").c_str());  // mid-rotation: keep the last good token
  tokens.invalidate();
  EXPECT_EQ(*tokens.token(), "token-three");
}

TEST(TokenSourceStatic, StaticTokenNeverTouchesFiles) {
  TokenSource tokens("abc", "");
  EXPECT_EQ(*tokens.token(), "abc");
  EXPECT_FALSE(tokens.from_file());
}

}  // namespace
}  // namespace moeserve::kube
