#include "worker/model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace moeserve::model {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> pattern_bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + 31 * i + (i >> 7));
  return out;
}

// A raw file: 8-byte little-endian length, the header text, then `data_bytes` bytes.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes,
               uint64_t declared_length) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(declared_length >> (8 * i)));
  out << header;
  const std::vector<uint8_t> data = pattern_bytes(data_bytes, 1);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  write_raw(path, header, data_bytes, header.size());
}

Status open_error(const std::string& path) {
  auto checkpoint = SafetensorsCheckpoint::open_file(path);
  return checkpoint.ok() ? ok_status() : checkpoint.status();
}

class SafetensorsTest : public ::testing::Test {
 protected:
  // Three tensors of different element sizes, named so that name order differs from
  // the writer's size order.
  void write_sample(const std::string& path) {
    f32_ = pattern_bytes(3 * 5 * 4, 7);
    bf16_ = pattern_bytes(7 * 2, 9);
    fp8_ = pattern_bytes(3 * 130, 11);
    ASSERT_TRUE(write_safetensors(path,
                                  {{"b.fp8", DType::kF8E4M3, {3, 130}, fp8_},
                                   {"a.bf16", DType::kBF16, {7}, bf16_},
                                   {"c.f32", DType::kF32, {3, 5}, f32_}},
                                  {{"format", "pt"}})
                    .ok());
  }

  testing::TempDir dir_;
  std::vector<uint8_t> f32_, bf16_, fp8_;
};

TEST_F(SafetensorsTest, RoundTripsTensorsThroughMmapWithoutCopying) {
  const std::string path = dir_.file("model.safetensors");
  write_sample(path);
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().to_string();
  EXPECT_EQ(checkpoint->names(), (std::vector<std::string>{"a.bf16", "b.fp8", "c.f32"}));
  EXPECT_EQ(checkpoint->total_bytes(), f32_.size() + bf16_.size() + fp8_.size());
  EXPECT_EQ(checkpoint->metadata().at("format"), "pt");
  EXPECT_EQ(checkpoint->files(), std::vector<std::string>{path});

  const TensorView* f32 = checkpoint->find("c.f32");
  ASSERT_NE(f32, nullptr);
  EXPECT_EQ(f32->dtype, DType::kF32);
  EXPECT_EQ(f32->shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(f32->numel(), 15);
  EXPECT_EQ(f32->shape_string(), "[3, 5]");
  EXPECT_EQ(f32->file, path);
  ASSERT_EQ(f32->bytes, f32_.size());
  EXPECT_EQ(std::memcmp(f32->data, f32_.data(), f32_.size()), 0);
  const TensorView* fp8 = checkpoint->find("b.fp8");
  ASSERT_NE(fp8, nullptr);
  EXPECT_EQ(fp8->dtype, DType::kF8E4M3);
  EXPECT_EQ(std::memcmp(fp8->data, fp8_.data(), fp8_.size()), 0);
  EXPECT_EQ(checkpoint->find("missing"), nullptr);

  // Moving the checkpoint keeps views and their data where they were.
  const uint8_t* before = f32->data;
  SafetensorsCheckpoint moved = std::move(*checkpoint);
  EXPECT_EQ(moved.find("c.f32")->data, before);
  EXPECT_EQ(std::memcmp(moved.find("a.bf16")->data, bf16_.data(), bf16_.size()), 0);
}

TEST_F(SafetensorsTest, WriterAlignsEveryTensorToItsElementSize) {
  const std::string path = dir_.file("model.safetensors");
  write_sample(path);
  auto checkpoint = SafetensorsCheckpoint::open_file(path);
  ASSERT_TRUE(checkpoint.ok());
  for (const std::string& name : checkpoint->names()) {
    const TensorView* view = checkpoint->find(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % dtype_size(view->dtype), 0u) << name;
  }
  // The header length is a multiple of 8, so the data section starts aligned.
  std::ifstream in(path, std::ios::binary);
  uint8_t length[8];
  in.read(reinterpret_cast<char*>(length), 8);
  EXPECT_EQ(length[0] % 8, 0);
}

TEST_F(SafetensorsTest, WriterRejectsSizeMismatchAndDuplicateNames) {
  const std::vector<uint8_t> bytes(10);
  Status short_data =
      write_safetensors(dir_.file("x.safetensors"), {{"t", DType::kF32, {3}, bytes}});
  EXPECT_THAT(short_data.message(), HasSubstr("tensor t: 10 bytes given, shape needs 12"));
  const std::vector<uint8_t> four(4);
  Status duplicate = write_safetensors(
      dir_.file("x.safetensors"), {{"t", DType::kF32, {1}, four}, {"t", DType::kF32, {1}, four}});
  EXPECT_THAT(duplicate.message(), HasSubstr("tensor t written twice"));
}

TEST_F(SafetensorsTest, RejectsFileTooSmallForTheLength) {
  const std::string path = dir_.file("tiny.safetensors");
  std::ofstream(path) << "abc";
  Status status = open_error(path);
  EXPECT_THAT(status.message(), HasSubstr(path + ": file of 3 bytes is too small"));
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondTheFile) {
  const std::string path = dir_.file("long.safetensors");
  write_raw(path, "{}", 0, 5000);
  Status status = open_error(path);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr(path + ": header length 5000 goes beyond the file size 10"));
}

TEST_F(SafetensorsTest, RejectsTruncatedData) {
  const std::string path = dir_.file("model.safetensors");
  write_sample(path);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  Status status = open_error(path);
  EXPECT_THAT(status.message(), HasSubstr(path + ": tensor b.fp8: truncated file"));
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string path = dir_.file("overlap.safetensors");
  write_raw(path,
            R"({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "y": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
            24);
  Status status = open_error(path);
  EXPECT_THAT(status.message(), HasSubstr(path + ": tensors x and y overlap"));
}

TEST_F(SafetensorsTest, RejectsUnorderedOffsets) {
  const std::string path = dir_.file("unordered.safetensors");
  write_raw(path, R"({"x": {"dtype": "U8", "shape": [8], "data_offsets": [16, 8]}})", 16);
  Status status = open_error(path);
  EXPECT_THAT(status.message(),
              HasSubstr(path + ": tensor x: data_offsets [16, 8] are not ordered"));
}

TEST_F(SafetensorsTest, RejectsOffsetsThatDisagreeWithTheShape) {
  const std::string path = dir_.file("span.safetensors");
  write_raw(path, R"({"x": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", 8);
  Status status = open_error(path);
  EXPECT_THAT(status.message(),
              HasSubstr("tensor x: data_offsets span 8 bytes but shape [2, 3] of BF16 needs 12"));
}

TEST_F(SafetensorsTest, RejectsBadJsonHeader) {
  const std::string path = dir_.file("json.safetensors");
  write_raw(path, R"({"x": {"dtype": )", 0);
  Status status = open_error(path);
  EXPECT_THAT(status.message(), HasSubstr(path + ": header is not valid JSON"));
}

TEST_F(SafetensorsTest, RejectsUnknownDtypeNamingTheTensor) {
  const std::string path = dir_.file("dtype.safetensors");
  write_raw(path, R"({"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 2]}})", 2);
  Status status = open_error(path);
  EXPECT_THAT(status.message(), HasSubstr(path + ": tensor w: unknown dtype \"Q4_K\""));
}

TEST_F(SafetensorsTest, ParsesEveryKnownDtypeName) {
  for (const char* name : {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
                           "I32", "U32", "F32", "F64", "I64", "U64"}) {
    auto dtype = parse_dtype(name);
    ASSERT_TRUE(dtype.ok()) << name;
    EXPECT_EQ(dtype_name(*dtype), name);
  }
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
  EXPECT_EQ(dtype_size(DType::kF8E4M3), 1u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
}

class ShardedCheckpointTest : public SafetensorsTest {
 protected:
  void SetUp() override {
    a_ = pattern_bytes(16, 3);
    b_ = pattern_bytes(8, 5);
    ASSERT_TRUE(write_safetensors(dir_.file("model-00001-of-00002.safetensors"),
                                  {{"a", DType::kF32, {4}, a_}})
                    .ok());
    ASSERT_TRUE(write_safetensors(dir_.file("model-00002-of-00002.safetensors"),
                                  {{"b", DType::kBF16, {2, 2}, b_}})
                    .ok());
  }

  void write_index(const nlohmann::json& weight_map) {
    std::ofstream(dir_.file("model.safetensors.index.json"))
        << nlohmann::json{{"metadata", {{"total_size", 24}}}, {"weight_map", weight_map}}.dump();
  }

  std::vector<uint8_t> a_, b_;
};

TEST_F(ShardedCheckpointTest, OpensShardsThroughTheIndex) {
  write_index(
      {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}});
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().to_string();
  EXPECT_EQ(checkpoint->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(checkpoint->files().size(), 2u);
  EXPECT_EQ(checkpoint->find("b")->file, dir_.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(std::memcmp(checkpoint->find("b")->data, b_.data(), b_.size()), 0);
}

TEST_F(ShardedCheckpointTest, RejectsIndexNamingAMissingShard) {
  write_index(
      {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00009-of-00002.safetensors"}});
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(
      checkpoint.status().message(),
      HasSubstr("model.safetensors.index.json: shard model-00009-of-00002.safetensors is missing"));
}

TEST_F(ShardedCheckpointTest, RejectsTensorListedInIndexButAbsentFromItsShard) {
  write_index({{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00002-of-00002.safetensors"},
               {"c", "model-00002-of-00002.safetensors"}});
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(),
              HasSubstr("tensor c is listed in the index but absent from " +
                        dir_.file("model-00002-of-00002.safetensors")));
}

TEST_F(ShardedCheckpointTest, RejectsTensorStoredInTwoShards) {
  ASSERT_TRUE(write_safetensors(dir_.file("model-00002-of-00002.safetensors"),
                                {{"a", DType::kF32, {4}, a_}, {"b", DType::kBF16, {2, 2}, b_}})
                  .ok());
  write_index(
      {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}});
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("tensor a is also in"));
}

TEST_F(ShardedCheckpointTest, RejectsIndexWithoutWeightMap) {
  std::ofstream(dir_.file("model.safetensors.index.json")) << R"({"metadata": {}})";
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("weight_map: missing or not an object"));
}

TEST(SafetensorsOpenTest, FolderWithoutWeightsIsNotFound) {
  testing::TempDir dir;
  auto checkpoint = SafetensorsCheckpoint::open(dir.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("no model.safetensors"));
}

}  // namespace
}  // namespace moeserve::model
