// The test API server's Kubernetes semantics, exercised through the real client.
#include <gtest/gtest.h>

#include <set>

#include "operator/kube/errors.h"
#include "tests/operator/kube/kube_fixture.h"

namespace moeserve::kube {
namespace {

using nlohmann::json;

std::string rv_of(const json& object) { return object["metadata"]["resourceVersion"]; }

TEST_F(KubeTest, CreateGetUpdateWithConflictAndAlreadyExists) {
  auto created = client_->create(resources::kConfigMaps, "", config_map("a"));
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  EXPECT_FALSE((*created)["metadata"]["uid"].get<std::string>().empty());
  EXPECT_FALSE((*created)["metadata"]["creationTimestamp"].get<std::string>().empty());
  EXPECT_EQ((*created)["metadata"]["namespace"], "default");

  EXPECT_EQ(client_->create(resources::kConfigMaps, "", config_map("a")).status().code(),
            StatusCode::kAlreadyExists);

  json first = *created;
  first["data"]["key"] = "v2";
  auto updated = client_->update(resources::kConfigMaps, "", first);
  ASSERT_TRUE(updated.ok()) << updated.status().to_string();
  EXPECT_GT(std::stoll(rv_of(*updated)), std::stoll(rv_of(*created)));

  json stale = *created;  // still carries the old resourceVersion
  stale["data"]["key"] = "v3";
  auto conflict = client_->update(resources::kConfigMaps, "", stale);
  EXPECT_EQ(conflict.status().code(), StatusCode::kConflict);
  EXPECT_EQ((*client_->get(resources::kConfigMaps, "default", "a"))["data"]["key"], "v2");

  EXPECT_EQ(client_->get(resources::kConfigMaps, "default", "zzz").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(client_->create(resources::kConfigMaps, "nowhere", config_map("b")).status().code(),
            StatusCode::kNotFound);
}

TEST_F(KubeTest, NoOpUpdateKeepsResourceVersionAndGenerateNameIsUnique) {
  auto created = client_->create(resources::kConfigMaps, "", config_map("same"));
  ASSERT_TRUE(created.ok());
  auto again = client_->update(resources::kConfigMaps, "", *created);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(rv_of(*again), rv_of(*created));

  std::set<std::string> names;
  for (int i = 0; i < 5; ++i) {
    json object = {{"metadata", {{"generateName", "gen-"}}}};
    auto made = client_->create(resources::kConfigMaps, "default", object);
    ASSERT_TRUE(made.ok()) << made.status().to_string();
    std::string name = (*made)["metadata"]["name"];
    EXPECT_EQ(name.rfind("gen-", 0), 0u);
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 5u);
  auto nameless =
      client_->create(resources::kConfigMaps, "default", json{{"data", json::object()}});
  EXPECT_EQ(nameless.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(nameless.status().message().find("metadata.name"), std::string::npos);
}

TEST_F(KubeTest, ListPaginatesAndFiltersByLabelAndFieldSelectors) {
  for (int i = 0; i < 7; ++i) {
    std::string app = i % 2 ? "a" : "b";
    ASSERT_TRUE(client_
                    ->create(resources::kConfigMaps, "",
                             config_map("cm" + std::to_string(i), {{"app", app}}))
                    .ok());
  }
  ListOptions options;
  options.limit = 3;
  auto page = client_->list(resources::kConfigMaps, "default", options);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 3u);
  EXPECT_FALSE(page->continue_token.empty());

  int64_t lists_before = server_->request_count("list");
  auto all = client_->list_all(resources::kConfigMaps, "default", options);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  EXPECT_EQ(all->items.size(), 7u);
  EXPECT_EQ(server_->request_count("list") - lists_before, 3);
  EXPECT_EQ(all->resource_version, std::to_string(server_->resource_version()));

  ListOptions labels;
  labels.label_selector = "app=a";
  EXPECT_EQ(client_->list_all(resources::kConfigMaps, "default", labels)->items.size(), 3u);
  labels.label_selector = "app notin (a),app";
  EXPECT_EQ(client_->list_all(resources::kConfigMaps, "default", labels)->items.size(), 4u);
  ListOptions fields;
  fields.field_selector = "metadata.name=cm4";
  auto one = client_->list_all(resources::kConfigMaps, "", fields);
  ASSERT_EQ(one->items.size(), 1u);
  EXPECT_EQ(one->items[0]["metadata"]["name"], "cm4");
  labels.label_selector = "app in (a";
  EXPECT_EQ(client_->list(resources::kConfigMaps, "default", labels).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(KubeTest, CustomResourceGetsSchemaDefaultsValidationAndDiscovery) {
  ASSERT_TRUE(client_->create(resources::kCustomResourceDefinitions, "", widget_crd()).ok());
  auto created = client_->create(widgets(), "",
                                 {{"apiVersion", "example.com/v1"},
                                  {"kind", "Widget"},
                                  {"metadata", {{"name", "w1"}}},
                                  {"spec", {{"size", "small"}}}});
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  EXPECT_EQ((*created)["spec"]["replicas"], 1);
  EXPECT_EQ((*created)["spec"]["tuning"]["level"], 3);  // defaults inside a defaulted object
  EXPECT_EQ((*created)["metadata"]["generation"], 1);

  auto invalid = client_->create(
      widgets(), "",
      {{"metadata", {{"name", "w2"}}}, {"spec", {{"size", "huge"}, {"replicas", -1}}}});
  EXPECT_EQ(invalid.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(invalid.status().message().find("spec.size"), std::string::npos);
  EXPECT_NE(invalid.status().message().find("spec.replicas"), std::string::npos);

  http::Client http;
  auto discovery = http.send({"GET", server_->url() + "/apis/example.com/v1"});
  ASSERT_TRUE(discovery.ok());
  json resources_list = json::parse(discovery->body)["resources"];
  std::set<std::string> names;
  for (const auto& r : resources_list) names.insert(r["name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"widgets", "widgets/status", "widgets/scale"}));
  EXPECT_EQ(resources_list[0]["shortNames"], json::array({"wd"}));
  EXPECT_EQ(resources_list[0]["categories"], json::array({"gadgets"}));

  ASSERT_TRUE(
      client_->remove(resources::kCustomResourceDefinitions, "", "widgets.example.com").ok());
  EXPECT_EQ(client_->get(widgets(), "default", "w1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(http.send({"GET", server_->url() + "/apis/example.com/v1"})->status, 404);
}

TEST_F(KubeTest, GenerationMovesOnSpecOnlyAndStatusSubresourceIsolatesStatus) {
  ASSERT_TRUE(client_->create(resources::kCustomResourceDefinitions, "", widget_crd()).ok());
  json w = {
      {"metadata", {{"name", "w"}}}, {"spec", {{"size", "small"}}}, {"status", {{"replicas", 9}}}};
  auto created = client_->create(widgets(), "", w);
  ASSERT_TRUE(created.ok());
  EXPECT_FALSE(created->contains("status"));  // status is dropped on create

  json with_status = *created;
  with_status["status"] = {{"replicas", 2}, {"selector", "app=w"}};
  auto status_written = client_->update_status(widgets(), "", with_status);
  ASSERT_TRUE(status_written.ok()) << status_written.status().to_string();
  EXPECT_EQ((*status_written)["status"]["replicas"], 2);
  EXPECT_EQ((*status_written)["metadata"]["generation"], 1);

  json main_put = *status_written;
  main_put["status"]["replicas"] = 7;  // ignored on the main resource
  main_put["metadata"]["labels"] = {{"x", "y"}};
  auto labelled = client_->update(widgets(), "", main_put);
  ASSERT_TRUE(labelled.ok());
  EXPECT_EQ((*labelled)["status"]["replicas"], 2);
  EXPECT_EQ((*labelled)["metadata"]["generation"], 1);  // metadata is not spec

  auto spec_patched =
      client_->patch(widgets(), "default", "w", PatchType::kMerge,
                     {{"spec", {{"size", "large"}}}, {"status", {{"replicas", 5}}}});
  ASSERT_TRUE(spec_patched.ok());
  EXPECT_EQ((*spec_patched)["metadata"]["generation"], 2);
  EXPECT_EQ((*spec_patched)["status"]["replicas"], 2);

  auto status_patched =
      client_->patch(widgets(), "default", "w", PatchType::kMerge,
                     {{"spec", {{"size", "small"}}}, {"status", {{"replicas", 4}}}}, "status");
  ASSERT_TRUE(status_patched.ok());
  EXPECT_EQ((*status_patched)["spec"]["size"], "large");
  EXPECT_EQ((*status_patched)["status"]["replicas"], 4);
  EXPECT_EQ((*status_patched)["metadata"]["generation"], 2);

  EXPECT_EQ(client_
                ->patch(widgets(), "default", "w", PatchType::kStrategicMerge,
                        {{"spec", {{"size", "small"}}}})
                .status()
                .code(),
            StatusCode::kInvalidArgument);  // 415 for custom resources
  auto failed_test =
      client_->patch(widgets(), "default", "w", PatchType::kJson,
                     json::array({{{"op", "test"}, {"path", "/spec/size"}, {"value", "small"}},
                                  {{"op", "replace"}, {"path", "/spec/replicas"}, {"value", 5}}}));
  EXPECT_EQ(failed_test.status().code(), StatusCode::kInvalidArgument);
  auto json_patched = client_->patch(
      widgets(), "default", "w", PatchType::kJson,
      json::array({{{"op", "test"}, {"path", "/spec/size"}, {"value", "large"}},
                   {{"op", "replace"}, {"path", "/spec/replicas"}, {"value", 5}},
                   {{"op", "add"}, {"path", "/metadata/annotations"}, {"value", {{"a", "b"}}}},
                   {{"op", "remove"}, {"path", "/metadata/labels"}}}));
  ASSERT_TRUE(json_patched.ok()) << json_patched.status().to_string();
  EXPECT_EQ((*json_patched)["spec"]["replicas"], 5);
  EXPECT_FALSE((*json_patched)["metadata"].contains("labels"));
  EXPECT_EQ((*json_patched)["metadata"]["generation"], 3);
}

TEST_F(KubeTest, ScaleSubresourceReadsAndWritesTheReplicaPaths) {
  ASSERT_TRUE(client_->create(resources::kCustomResourceDefinitions, "", widget_crd()).ok());
  auto created = client_->create(widgets(), "",
                                 {{"metadata", {{"name", "w"}}}, {"spec", {{"size", "small"}}}});
  ASSERT_TRUE(created.ok());
  json status = *created;
  status["status"] = {{"replicas", 1}, {"selector", "app=w"}};
  ASSERT_TRUE(client_->update_status(widgets(), "", status).ok());

  auto scale = client_->get(widgets(), "default", "w", "scale");
  ASSERT_TRUE(scale.ok());
  EXPECT_EQ((*scale)["kind"], "Scale");
  EXPECT_EQ((*scale)["apiVersion"], "autoscaling/v1");
  EXPECT_EQ((*scale)["spec"]["replicas"], 1);
  EXPECT_EQ((*scale)["status"]["selector"], "app=w");

  auto patched = client_->patch(widgets(), "default", "w", PatchType::kMerge,
                                {{"spec", {{"replicas", 3}}}}, "scale");
  ASSERT_TRUE(patched.ok()) << patched.status().to_string();
  EXPECT_EQ((*patched)["spec"]["replicas"], 3);
  auto after = client_->get(widgets(), "default", "w");
  EXPECT_EQ((*after)["spec"]["replicas"], 3);
  EXPECT_EQ((*after)["metadata"]["generation"], 2);

  json sts = {{"metadata", {{"name", "s"}}},
              {"spec", {{"replicas", 2}, {"selector", {{"matchLabels", {{"app", "s"}}}}}}}};
  ASSERT_TRUE(client_->create(resources::kStatefulSets, "default", sts).ok());
  auto sts_scale = client_->get(resources::kStatefulSets, "default", "s", "scale");
  ASSERT_TRUE(sts_scale.ok());
  EXPECT_EQ((*sts_scale)["status"]["selector"], "app=s");
  (*sts_scale)["spec"]["replicas"] = 4;
  http::Client http;
  auto put =
      http.send({"PUT",
                 server_->url() + Client::path(resources::kStatefulSets, "default", "s", "scale"),
                 {{"Content-Type", "application/json"}},
                 sts_scale->dump()});
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->status, 200) << put->body;
  EXPECT_EQ((*client_->get(resources::kStatefulSets, "default", "s"))["spec"]["replicas"], 4);
}

TEST_F(KubeTest, FinalizersHoldDeletionAndOwnersCascadeToDependents) {
  auto owner =
      client_->create(resources::kConfigMaps, "",
                      {{"metadata", {{"name", "owner"}, {"finalizers", {"example.com/x"}}}}});
  ASSERT_TRUE(owner.ok());
  json owner_ref = {{"apiVersion", "v1"},
                    {"kind", "ConfigMap"},
                    {"name", "owner"},
                    {"uid", (*owner)["metadata"]["uid"]},
                    {"controller", true}};
  for (const char* name : {"child1", "child2"}) {
    json child = config_map(name);
    child["metadata"]["ownerReferences"] = json::array({owner_ref});
    ASSERT_TRUE(client_->create(resources::kConfigMaps, "", child).ok());
  }
  json grandchild = config_map("grandchild");
  auto child1 = client_->get(resources::kConfigMaps, "default", "child1");
  grandchild["metadata"]["ownerReferences"] =
      json::array({{{"apiVersion", "v1"},
                    {"kind", "ConfigMap"},
                    {"name", "child1"},
                    {"uid", (*child1)["metadata"]["uid"]}}});
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", grandchild).ok());

  auto deleting = client_->remove(resources::kConfigMaps, "default", "owner");
  ASSERT_TRUE(deleting.ok());
  auto held = client_->get(resources::kConfigMaps, "default", "owner");
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE((*held)["metadata"].contains("deletionTimestamp"));
  EXPECT_TRUE(client_->get(resources::kConfigMaps, "default", "child1").ok());

  ASSERT_TRUE(client_
                  ->patch(resources::kConfigMaps, "default", "owner", PatchType::kMerge,
                          {{"metadata", {{"finalizers", nullptr}}}})
                  .ok());
  for (const char* name : {"owner", "child1", "child2", "grandchild"}) {
    EXPECT_EQ(client_->get(resources::kConfigMaps, "default", name).status().code(),
              StatusCode::kNotFound)
        << name;
  }
}

TEST_F(KubeTest, OrphanPropagationKeepsDependentsWithoutTheOwnerReference) {
  auto owner = client_->create(resources::kConfigMaps, "", config_map("owner"));
  json child = config_map("child");
  child["metadata"]["ownerReferences"] = json::array({{{"apiVersion", "v1"},
                                                       {"kind", "ConfigMap"},
                                                       {"name", "owner"},
                                                       {"uid", (*owner)["metadata"]["uid"]}}});
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", child).ok());
  ASSERT_TRUE(
      client_->remove(resources::kConfigMaps, "default", "owner", Propagation::kOrphan).ok());
  auto kept = client_->get(resources::kConfigMaps, "default", "child");
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE((*kept)["metadata"].contains("ownerReferences"));
}

TEST_F(KubeTest, WatchReplaysFromAResourceVersionWithSelectorTransitions) {
  auto list = client_->list(resources::kConfigMaps, "default");
  ASSERT_TRUE(list.ok());
  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("w1", {{"app", "x"}})).ok());
  ASSERT_TRUE(
      client_->create(resources::kConfigMaps, "", config_map("other", {{"app", "y"}})).ok());
  ASSERT_TRUE(client_
                  ->patch(resources::kConfigMaps, "default", "w1", PatchType::kMerge,
                          {{"data", {{"k", "2"}}}})
                  .ok());
  ASSERT_TRUE(client_
                  ->patch(resources::kConfigMaps, "default", "w1", PatchType::kMerge,
                          {{"metadata", {{"labels", {{"app", "gone"}}}}}})
                  .ok());
  ASSERT_TRUE(client_
                  ->patch(resources::kConfigMaps, "default", "other", PatchType::kMerge,
                          {{"metadata", {{"labels", {{"app", "x"}}}}}})
                  .ok());
  WatchOptions options;
  options.resource_version = list->resource_version;
  options.label_selector = "app=x";
  options.timeout_seconds = 1;
  std::vector<std::string> seen;
  Status status =
      client_->watch(resources::kConfigMaps, "default", options, [&](const WatchEvent& e) {
        if (e.type == WatchEventType::kBookmark) return true;
        seen.push_back(std::string(watch_event_type_name(e.type)) + " " +
                       e.object["metadata"]["name"].get<std::string>());
        return seen.size() < 4;
      });
  EXPECT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(seen,
            (std::vector<std::string>{"ADDED w1", "MODIFIED w1", "DELETED w1", "ADDED other"}));
}

TEST_F(KubeTest, WatchSendsBookmarksEndsOnTimeoutAndExpiresOldVersions) {
  auto list = client_->list(resources::kConfigMaps, "default");
  WatchOptions options;
  options.resource_version = list->resource_version;
  options.timeout_seconds = 1;
  int bookmarks = 0;
  Status ended =
      client_->watch(resources::kConfigMaps, "default", options, [&](const WatchEvent& e) {
        if (e.type == WatchEventType::kBookmark) ++bookmarks;
        return true;
      });
  EXPECT_TRUE(ended.ok()) << ended.to_string();  // the server's timeoutSeconds ended it
  EXPECT_GT(bookmarks, 0);

  ASSERT_TRUE(client_->create(resources::kConfigMaps, "", config_map("x")).ok());
  server_->compact_history();
  Status gone = client_->watch(resources::kConfigMaps, "default", options,
                               [](const WatchEvent&) { return true; });
  EXPECT_EQ(gone.code(), StatusCode::kGone);
}

TEST_F(KubeTest, InjectedFaultsMapToTypedErrorsAndRequestsAreCounted) {
  server_->fail_next(1, 429, "GET", "/configmaps", 2);
  auto throttled = client_->list(resources::kConfigMaps, "default");
  EXPECT_EQ(throttled.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(retry_after_seconds(throttled.status()), 2);

  server_->fail_next(2, 500, "POST");
  EXPECT_EQ(client_->create(resources::kConfigMaps, "", config_map("a")).status().code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(client_->create(resources::kConfigMaps, "", config_map("a")).status().code(),
            StatusCode::kUnavailable);
  EXPECT_TRUE(client_->create(resources::kConfigMaps, "", config_map("a")).ok());
  EXPECT_EQ(server_->request_count("create"), 3);
  EXPECT_EQ(server_->request_count("list"), 1);
}

}  // namespace
}  // namespace moeserve::kube
