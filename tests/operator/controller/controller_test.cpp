#include "operator/controller/controller.h"

#include <gtest/gtest.h>

namespace moeserve::controller {
namespace {

TEST(RootKeyFor, RootObjectsMapToThemselves) {
  nlohmann::json md = {{"metadata", {{"name", "x"}, {"namespace", "ns"}}}};
  EXPECT_EQ(root_key_for(md, "ModelDeployment", true), "ns/x");
}

TEST(RootKeyFor, OwnedObjectsMapToTheirControllerOwner) {
  nlohmann::json sts = {{"metadata",
                         {{"name", "x-g0"},
                          {"namespace", "ns"},
                          {"ownerReferences",
                           {{{"kind", "Other"}, {"name", "y"}, {"controller", false}},
                            {{"kind", "ModelDeployment"}, {"name", "x"}, {"controller", true}}}}}}};
  EXPECT_EQ(root_key_for(sts, "ModelDeployment", false), "ns/x");
}

TEST(RootKeyFor, ObjectsWithoutAControllerOwnerOfTheRootKindAreIgnored) {
  nlohmann::json unowned = {{"metadata", {{"name", "a"}, {"namespace", "ns"}}}};
  EXPECT_EQ(root_key_for(unowned, "ModelDeployment", false), std::nullopt);
  nlohmann::json not_controller = {
      {"metadata",
       {{"name", "a"},
        {"namespace", "ns"},
        {"ownerReferences",
         {{{"kind", "ModelDeployment"}, {"name", "x"}, {"controller", false}}}}}}};
  EXPECT_EQ(root_key_for(not_controller, "ModelDeployment", false), std::nullopt);
  nlohmann::json other_kind = {
      {"metadata",
       {{"name", "a"},
        {"namespace", "ns"},
        {"ownerReferences", {{{"kind", "ReplicaSet"}, {"name", "x"}, {"controller", true}}}}}}};
  EXPECT_EQ(root_key_for(other_kind, "ModelDeployment", false), std::nullopt);
}

}  // namespace
}  // namespace moeserve::controller
