#include "tools/fetch/fetcher.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "tests/support/test_util.h"
#include "tests/tools/fetch/fake_hub.h"
#include "tools/fetch/marker.h"

namespace moeserve::fetch {
namespace {

namespace fs = std::filesystem;
using moeserve::testing::free_port;
using moeserve::testing::read_file;
using moeserve::testing::TempDir;
using moeserve::testing::write_file;
using testing::FakeHub;
using testing::RepoFile;

const std::string kSha1 = std::string(40, 'a');
const std::string kSha2 = std::string(40, 'b');

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// A checkpoint-like commit: two small JSON files and a 300 KB LFS shard (several reads).
std::vector<RepoFile> checkpoint() {
  return {{"config.json", R"({"model_type": "deepseek_v3"})"},
          {"tokenizer/tokenizer.json", R"({"version": "1.0"})"},
          {"model-00001-of-00001.safetensors", random_bytes(300000, 1), /*lfs=*/true}};
}

int64_t json_bytes() {
  return static_cast<int64_t>(checkpoint()[0].content.size() + checkpoint()[1].content.size());
}

class FetcherTest : public ::testing::Test {
 protected:
  FetchOptions options(std::string revision = "") {
    FetchOptions o;
    o.source = {hub.repo, std::move(revision)};
    o.dest = dest.path() + "/model";
    o.endpoint = hub.endpoint();
    o.retries = 0;
    o.retry_delay_ms = 0;
    return o;
  }
  StatusOr<FetchResult> run(const FetchOptions& o) { return fetch(o, client); }
  std::string fetched(const std::string& name) { return read_file(dest.path() + "/model/" + name); }
  bool exists(const std::string& name) { return fs::exists(dest.path() + "/model/" + name); }

  FakeHub hub;
  TempDir dest;
  http::Client client;
};

TEST_F(FetcherTest, FetchesEveryFileVerifiedAndWritesTheMarker) {
  hub.set_commit("main", kSha1, checkpoint());
  StatusOr<FetchResult> r = run(options());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->sha, kSha1);
  EXPECT_EQ(r->files_downloaded, 3);
  EXPECT_EQ(r->bytes_downloaded, 300000 + json_bytes());
  for (const RepoFile& f : checkpoint()) EXPECT_EQ(fetched(f.name), f.content) << f.name;
  EXPECT_FALSE(exists(kPartsDirName));

  StatusOr<std::optional<Marker>> marker = read_marker(dest.path() + "/model");
  ASSERT_TRUE(marker.ok() && marker->has_value());
  const Marker& m = **marker;
  EXPECT_EQ(m.repo, "org/model");
  EXPECT_EQ(m.revision, "main");
  EXPECT_EQ(m.sha, kSha1);
  EXPECT_TRUE(m.complete);
  ASSERT_EQ(m.files.size(), 3u);
  const MarkerFile* shard = m.find("model-00001-of-00001.safetensors");
  ASSERT_NE(shard, nullptr);
  EXPECT_EQ(shard->checksum, "sha256:" + testing::sha256_hex(checkpoint()[2].content));
  EXPECT_EQ(m.find("config.json")->checksum,
            "git-blob:" + testing::git_blob_hex(checkpoint()[0].content));
}

TEST_F(FetcherTest, DownloadsTheResolvedCommitNotTheBranch) {
  hub.set_commit("main", kSha1, checkpoint());
  hub.set_commit("refs/pr/1", kSha2, {{"config.json", "{}"}});
  StatusOr<FetchResult> r = run(options("refs/pr/1"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->sha, kSha2);
  EXPECT_EQ(fetched("config.json"), "{}");
  EXPECT_EQ(hub.count("/api/models/org/model/revision/refs%2Fpr%2F1"), 1);
  EXPECT_EQ(hub.count("/org/model/resolve/" + kSha2 + "/config.json"), 1);
}

TEST_F(FetcherTest, LfsFilesFollowTheCdnRedirectWithoutTheToken) {
  hub.set_commit("main", kSha1, checkpoint());
  hub.set_token("secret");
  FetchOptions o = options();
  o.token = "secret";
  ASSERT_TRUE(run(o).ok());
  int cross_origin = 0;
  for (const testing::SeenRequest& seen : hub.requests()) {
    if (seen.host.rfind("localhost:", 0) == 0) {
      ++cross_origin;
      EXPECT_EQ(seen.authorization, "") << seen.path;
    } else {
      EXPECT_EQ(seen.authorization, "Bearer secret") << seen.path;
    }
  }
  EXPECT_EQ(cross_origin, 1);  // the one LFS file, at the CDN's origin
  EXPECT_EQ(hub.count("/cdn/"), 3);
}

TEST_F(FetcherTest, SecondRunForTheSameCommitDownloadsNothing) {
  hub.set_commit("main", kSha1, checkpoint());
  ASSERT_TRUE(run(options()).ok());
  const int downloads = hub.count("/cdn/");
  StatusOr<FetchResult> again = run(options());
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(again->files_downloaded, 0);
  EXPECT_EQ(hub.count("/cdn/"), downloads);
  EXPECT_EQ(hub.count("/api/"), 2);  // a branch is resolved again: it may have moved
}

TEST_F(FetcherTest, AFileDeletedFromTheDirectoryIsFetchedAgain) {
  hub.set_commit("main", kSha1, checkpoint());
  ASSERT_TRUE(run(options()).ok());
  fs::remove(dest.path() + "/model/config.json");
  StatusOr<FetchResult> again = run(options());
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_FALSE(again->already_present);
  EXPECT_EQ(again->files_downloaded, 1);
  EXPECT_EQ(again->files_kept, 2);
  EXPECT_EQ(fetched("config.json"), checkpoint()[0].content);
}

TEST_F(FetcherTest, APinnedCommitOnAFilledDirectoryNeedsNoNetwork) {
  hub.set_commit("main", kSha1, checkpoint());
  ASSERT_TRUE(run(options()).ok());
  FetchOptions pinned = options(kSha1);
  pinned.endpoint = "http://127.0.0.1:" + std::to_string(free_port());  // nothing listens
  StatusOr<FetchResult> r = run(pinned);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->already_present);

  FetchOptions offline = options("main");
  offline.endpoint = pinned.endpoint;
  offline.offline = true;
  EXPECT_TRUE(run(offline).ok());
}

TEST_F(FetcherTest, OfflineWithoutTheRevisionInTheDirectoryFails) {
  hub.set_commit("main", kSha1, checkpoint());
  ASSERT_TRUE(run(options()).ok());
  FetchOptions o = options("v2");
  o.offline = true;
  StatusOr<FetchResult> r = run(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("offline"), std::string::npos);
  EXPECT_NE(r.status().message().find("org/model@v2"), std::string::npos);
  EXPECT_EQ(hub.count("/api/"), 1);
}

TEST_F(FetcherTest, WrongChecksumFailsNamingTheFileAndBothHashesAndKeepsNothing) {
  std::vector<RepoFile> files = checkpoint();
  files[2].corrupt = true;
  hub.set_commit("main", kSha1, files);
  StatusOr<FetchResult> r = run(options());
  ASSERT_FALSE(r.ok());
  std::string served = files[2].content;
  served[served.size() / 2] ^= 0x5a;
  const std::string message = r.status().message();
  EXPECT_NE(message.find("model-00001-of-00001.safetensors: sha256 mismatch"), std::string::npos)
      << message;
  EXPECT_NE(message.find("expected " + testing::sha256_hex(files[2].content)), std::string::npos);
  EXPECT_NE(message.find("got " + testing::sha256_hex(served)), std::string::npos);
  EXPECT_FALSE(exists("model-00001-of-00001.safetensors"));
  EXPECT_TRUE(fs::is_empty(dest.path() + "/model/" + kPartsDirName));
  StatusOr<std::optional<Marker>> marker = read_marker(dest.path() + "/model");
  ASSERT_TRUE(marker.ok() && marker->has_value());
  EXPECT_FALSE((*marker)->complete);
}

TEST_F(FetcherTest, ABodyLongerThanTheListedSizeIsRefused) {
  std::vector<RepoFile> files = checkpoint();
  files[0].listed_size = 5;
  hub.set_commit("main", kSha1, files);
  StatusOr<FetchResult> r = run(options());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("config.json: more bytes than the listing's size 5"),
            std::string::npos)
      << r.status().message();
  EXPECT_FALSE(exists("config.json"));
}

TEST_F(FetcherTest, AMissingFileIsNotFoundAndNotRetried) {
  std::vector<RepoFile> files = checkpoint();
  files[1].missing = true;
  hub.set_commit("main", kSha1, files);
  FetchOptions o = options();
  o.retries = 3;
  StatusOr<FetchResult> r = run(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("file tokenizer/tokenizer.json of org/model@" + kSha1),
            std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("EntryNotFound"), std::string::npos);
  EXPECT_EQ(hub.count("/org/model/resolve/" + kSha1 + "/tokenizer/tokenizer.json"), 1);
}

TEST_F(FetcherTest, AnUnknownRevisionIsNotFound) {
  hub.set_commit("main", kSha1, checkpoint());
  StatusOr<FetchResult> r = run(options("no-such-branch"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("revision no-such-branch of org/model: HTTP 404 "
                                      "RevisionNotFound"),
            std::string::npos)
      << r.status().message();
  EXPECT_FALSE(exists(kMarkerName));
}

TEST_F(FetcherTest, AGatedRepositoryNeedsItsToken) {
  hub.set_commit("main", kSha1, checkpoint());
  hub.set_token("secret");
  StatusOr<FetchResult> anonymous = run(options());
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(anonymous.status().message().find("HF_TOKEN"), std::string::npos);
  FetchOptions wrong = options();
  wrong.token = "other";
  EXPECT_EQ(run(wrong).status().code(), StatusCode::kUnauthenticated);
  FetchOptions right = options();
  right.token = "secret";
  EXPECT_TRUE(run(right).ok());
}

TEST_F(FetcherTest, IncludeGlobsSelectTheFiles) {
  hub.set_commit("main", kSha1, checkpoint());
  FetchOptions o = options();
  o.include = {"*.json"};
  StatusOr<FetchResult> r = run(o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->files_downloaded, 2);  // '*' crosses '/': tokenizer/tokenizer.json too
  EXPECT_TRUE(exists("tokenizer/tokenizer.json"));
  EXPECT_FALSE(exists("model-00001-of-00001.safetensors"));

  o.include = {"*.bin"};
  StatusOr<FetchResult> none = run(o);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("--include *.bin"), std::string::npos);
}

TEST_F(FetcherTest, ANewCommitKeepsUnchangedFilesAndRemovesOnlyStaleFetchedOnes) {
  hub.set_commit("main", kSha1, checkpoint());
  ASSERT_TRUE(run(options()).ok());
  write_file(dest.path() + "/model/notes.txt", "mine");
  std::vector<RepoFile> next = checkpoint();
  next[0].content = R"({"model_type": "deepseek_v3", "x": 1})";
  next.erase(next.begin() + 1);  // tokenizer/tokenizer.json is gone
  next.push_back({"generation_config.json", "{}"});
  hub.set_commit("main", kSha2, next);
  StatusOr<FetchResult> r = run(options());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->sha, kSha2);
  EXPECT_EQ(r->files_kept, 1);  // the shard: same sha256
  EXPECT_EQ(r->files_downloaded, 2);
  EXPECT_EQ(r->files_removed, 1);
  EXPECT_FALSE(exists("tokenizer/tokenizer.json"));
  EXPECT_EQ(fetched("config.json"), next[0].content);
  EXPECT_EQ(fetched("notes.txt"), "mine");
  EXPECT_EQ(hub.count("/cdn/" + kSha2 + "/model-00001"), 0);
}

TEST_F(FetcherTest, AnInterruptedDownloadIsResumedWithARange) {
  std::vector<RepoFile> files = checkpoint();
  hub.set_commit("main", kSha1, files);
  const std::string parts = dest.path() + "/model/" + kPartsDirName;
  fs::create_directories(parts);
  write_file(parts + "/" + testing::sha256_hex(files[2].content),
             files[2].content.substr(0, 123456));
  StatusOr<FetchResult> r = run(options());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(fetched(files[2].name), files[2].content);
  bool ranged = false;
  for (const testing::SeenRequest& seen : hub.requests()) {
    ranged = ranged || (seen.path.rfind("/cdn/", 0) == 0 && seen.range == "bytes=123456-");
  }
  EXPECT_TRUE(ranged);
  EXPECT_EQ(r->bytes_downloaded, 300000 - 123456 + json_bytes());
}

TEST_F(FetcherTest, ServerErrorsAreRetried) {
  hub.set_commit("main", kSha1, checkpoint());
  hub.fail_api_times(2);
  FetchOptions o = options();
  o.retries = 2;
  StatusOr<FetchResult> r = run(o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(hub.count("/api/"), 3);

  hub.fail_api_times(1);
  o.retries = 0;
  StatusOr<FetchResult> once = run(o);
  ASSERT_FALSE(once.ok());
  EXPECT_EQ(once.status().code(), StatusCode::kUnavailable);
}

TEST_F(FetcherTest, ConcurrentFetchersIntoOneDirectoryDownloadOnce) {
  hub.set_commit("main", kSha1, checkpoint());
  std::vector<StatusOr<FetchResult>> results(4, internal_error("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = run(options()); });
  }
  for (std::thread& t : threads) t.join();
  int downloaded = 0;
  for (const StatusOr<FetchResult>& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    downloaded += r->files_downloaded;
  }
  EXPECT_EQ(downloaded, 3);
  EXPECT_EQ(hub.count("/cdn/"), 3);
  for (const RepoFile& f : checkpoint()) EXPECT_EQ(fetched(f.name), f.content);
}

TEST(SelectFiles, KeepsListingOrderAndMatchesAnyGlob) {
  const std::vector<HubFile> files = {{"a.json", 1, "", std::string(40, '0')},
                                      {"w/b.safetensors", 2, std::string(64, '0'), ""},
                                      {"c.txt", 3, "", std::string(40, '1')}};
  StatusOr<std::vector<HubFile>> all = select_files(files, {});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, files);
  StatusOr<std::vector<HubFile>> some = select_files(files, {"*.txt", "*.safetensors"});
  ASSERT_TRUE(some.ok());
  ASSERT_EQ(some->size(), 2u);
  EXPECT_EQ((*some)[0].name, "w/b.safetensors");
  EXPECT_EQ((*some)[1].name, "c.txt");
}

}  // namespace
}  // namespace moeserve::fetch
