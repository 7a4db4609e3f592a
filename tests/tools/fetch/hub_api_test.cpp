#include "tools/fetch/hub_api.h"

#include <gtest/gtest.h>

#include "tools/fetch/digest.h"
#include "tools/fetch/marker.h"

namespace moeserve::fetch {
namespace {

const std::string kSha = "0123456789abcdef0123456789abcdef01234567";

TEST(HubApi, UrlsEncodeTheRevisionWholeAndTheFileBySegment) {
  EXPECT_EQ(revision_info_url("https://huggingface.co", "deepseek-ai/DeepSeek-V3", "main"),
            "https://huggingface.co/api/models/deepseek-ai/DeepSeek-V3/revision/main?blobs=true");
  EXPECT_EQ(revision_info_url("http://mirror:8080", "o/n", "refs/pr/1"),
            "http://mirror:8080/api/models/o/n/revision/refs%2Fpr%2F1?blobs=true");
  EXPECT_EQ(resolve_url("https://hf.co", "o/n", kSha, "dir/a b+c.json"),
            "https://hf.co/o/n/resolve/" + kSha + "/dir/a%20b%2Bc.json");
  EXPECT_EQ(percent_encode("a-._~/%", false), "a-._~%2F%25");
}

TEST(HubApi, ParsesTheRevisionListingWithBlobs) {
  const std::string sha256(64, 'e');
  const std::string blob(40, 'c');
  StatusOr<HubRevision> r = parse_revision_info(R"({"id": "o/n", "sha": ")" + kSha +
                                                R"(", "siblings": [
      {"rfilename": "config.json", "size": 12, "blobId": ")" +
                                                blob + R"("},
      {"rfilename": "w/model.safetensors", "size": 99, "blobId": ")" +
                                                blob +
                                                R"(",
       "lfs": {"sha256": ")" + sha256 + R"(", "size": 99, "pointerSize": 134}}]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->sha, kSha);
  ASSERT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->files[0], (HubFile{"config.json", 12, "", blob}));
  EXPECT_EQ(r->files[0].checksum(), "git-blob:" + blob);
  EXPECT_EQ(r->files[1], (HubFile{"w/model.safetensors", 99, sha256, ""}));
  EXPECT_EQ(r->files[1].checksum(), "sha256:" + sha256);
}

TEST(HubApi, RefusesListingsThatCannotBeVerifiedOrEscapeTheDirectory) {
  auto listing = [](const std::string& sibling) {
    return R"({"sha": ")" + kSha + R"(", "siblings": [)" + sibling + "]}";
  };
  const std::string blob = R"(, "size": 1, "blobId": ")" + std::string(40, 'c') + "\"";
  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {"[]", "not a JSON object"},
      {R"({"sha": "main", "siblings": []})", "\"sha\" is not a 40-hex commit id"},
      {R"({"sha": ")" + kSha + "\"}", "no \"siblings\" list"},
      {listing(R"({"rfilename": "a.json"})"), "has no \"size\" (ask with ?blobs=true)"},
      {listing(R"({"rfilename": "a.json", "size": 1})"), "neither lfs.sha256 nor a blobId"},
      {listing(R"({"rfilename": "a", "size": 2, "lfs": {"sha256": "xyz", "size": 2}})"),
       "no lfs.sha256 of 64 hex digits"},
      {listing(R"({"rfilename": "a", "size": 2, "lfs": {"sha256": ")" + std::string(64, 'a') +
               R"(", "size": 3}})"),
       "has size 2 but lfs.size 3"},
      {listing(R"({"rfilename": "../etc/passwd")" + blob + "}"), "\"..\" segment"},
      {listing(R"({"rfilename": "/abs")" + blob + "}"), "is not a relative path"},
      {listing(R"({"rfilename": "a//b")" + blob + "}"), "empty"},
      {listing(R"({"rfilename": ".moeserve-fetch.json")" + blob + "}"),
       "collides with moeserve-fetch's own files"},
  };
  for (const auto& c : cases) {
    StatusOr<HubRevision> r = parse_revision_info(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << r.status().message() << " / " << c.error;
  }
}

TEST(HubApi, ErrorsSayHowToReact) {
  const http::Headers headers = {{"x-error-code", "GatedRepo"},
                                 {"x-error-message", "Access is restricted"}};
  Status gated = hub_error("revision main of o/n", 401, headers);
  EXPECT_EQ(gated.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(gated.message().find("revision main of o/n: HTTP 401 GatedRepo: Access is restricted"),
            std::string::npos);
  EXPECT_NE(gated.message().find("--token-file or HF_TOKEN"), std::string::npos);
  EXPECT_EQ(hub_error("x", 403, {}).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(hub_error("x", 404, {}).code(), StatusCode::kNotFound);
  EXPECT_EQ(hub_error("x", 429, {}).code(), StatusCode::kUnavailable);
  EXPECT_EQ(hub_error("x", 502, {}).code(), StatusCode::kUnavailable);
  EXPECT_EQ(hub_error("x", 400, {}).code(), StatusCode::kFailedPrecondition);
}

TEST(Digest, MatchesKnownVectorsInPieces) {
  Digest sha = Digest::sha256();
  sha.update("a");
  sha.update("bc");
  EXPECT_EQ(sha.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // `printf 'hello\n' | git hash-object --stdin`
  Digest blob = Digest::git_blob(6);
  blob.update("hel");
  EXPECT_NE(blob.hex(), "ce013625030ba8dba906f756967f9e9ca394464a");
  blob.update("lo\n");
  EXPECT_EQ(blob.hex(), "ce013625030ba8dba906f756967f9e9ca394464a");
}

TEST(Marker, RoundTripsAndRefusesMalformedText) {
  Marker m{"o/n", "main", kSha, {"*.json"}, true, {{"config.json", 12, "git-blob:abc"}}};
  StatusOr<Marker> back = marker_from_json(marker_to_json(m));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, m);
  m.put({"config.json", 13, "git-blob:def"});
  ASSERT_EQ(m.files.size(), 1u);
  EXPECT_EQ(m.find("config.json")->size, 13);
  m.erase("config.json");
  EXPECT_EQ(m.find("config.json"), nullptr);
  for (const char* text : {"", "[]", R"({"repo": "o/n"})",
                           R"({"repo": "o/n", "revision": "main", "sha": "x", "complete": true,
                               "files": [{"name": "a"}]})"}) {
    EXPECT_FALSE(marker_from_json(text).ok()) << text;
  }
}

}  // namespace
}  // namespace moeserve::fetch
