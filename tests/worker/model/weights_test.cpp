#include "worker/model/weights.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "kernels/cpu/convert.h"
#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve::model {
namespace {

using ::testing::HasSubstr;

const BindOptions kNoPrefault = {.load_mtp = true, .prefault = false};
const BindOptions kMapped = {.load_mtp = true, .prefault = false, .memory = WeightMemory::kMapped};

// Generated models shared by all tests of this file (written once, a few MB each).
struct Models {
  testing::TempDir v3_bf16, v3_fp8, v2_bf16;
};

Models& models() {
  static Models* m = [] {
    auto* out = new Models;
    fixtures::TinyModelOptions options;
    options.seed = 7;
    EXPECT_TRUE(fixtures::write_tiny_model(out->v3_bf16.path(), options).ok());
    options.precision = WeightPrecision::kFp8;
    EXPECT_TRUE(fixtures::write_tiny_model(out->v3_fp8.path(), options).ok());
    options.precision = WeightPrecision::kBf16;
    options.architecture = Architecture::kDeepseekV2;
    EXPECT_TRUE(fixtures::write_tiny_model(out->v2_bf16.path(), options).ok());
    return out;
  }();
  return *m;
}

float bf16_at(const Linear& w, int64_t row, int64_t col) {
  uint16_t bits;
  std::memcpy(&bits, w.data + (row * w.cols + col) * 2, 2);
  return kernels::bf16_to_f32(bits);
}

float fp8_dequantized_at(const Linear& w, int64_t row, int64_t col) {
  const float scale = w.scale_inv[(row / 128) * w.scale_cols() + col / 128];
  return kernels::fp8_e4m3_to_f32(w.data[row * w.cols + col]) * scale;
}

TEST(WeightsTest, BindsTinyV3Bf16WithEveryPart) {
  auto model = load_model(models().v3_bf16.path(), kNoPrefault);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const ModelConfig& c = model->config;
  const ModelWeights& w = model->weights;
  EXPECT_EQ(w.embed_tokens.rows, c.vocab_size);
  EXPECT_EQ(w.embed_tokens.dtype, DType::kBF16);
  EXPECT_EQ(w.lm_head.name, "lm_head.weight");
  ASSERT_EQ(w.layers.size(), 3u);
  EXPECT_FALSE(w.layers[0].is_moe);
  EXPECT_EQ(w.layers[0].mlp.gate_proj.rows, 320);
  EXPECT_EQ(w.layers[0].mlp.down_proj.cols, 320);
  const DecoderLayer& moe_layer = w.layers[1];
  ASSERT_TRUE(moe_layer.is_moe);
  EXPECT_EQ(moe_layer.moe.experts.size(), 16u);
  EXPECT_EQ(moe_layer.moe.experts[15].up_proj.name, "model.layers.1.mlp.experts.15.up_proj.weight");
  EXPECT_EQ(moe_layer.moe.gate.rows, 16);
  EXPECT_EQ(moe_layer.moe.e_score_correction_bias.size(), 16u);
  EXPECT_TRUE(moe_layer.moe.has_shared_experts());
  EXPECT_EQ(moe_layer.moe.shared_experts.gate_proj.rows, 96);
  const Attention& a = moe_layer.self_attn;
  EXPECT_EQ(a.q_a_proj.rows, 96);
  EXPECT_EQ(a.q_b_proj.rows, 4 * 48);
  EXPECT_TRUE(a.q_proj.empty());
  EXPECT_EQ(a.kv_a_proj_with_mqa.rows, 64 + 16);
  EXPECT_EQ(a.kv_b_proj.rows, 4 * (32 + 32));
  EXPECT_EQ(a.o_proj.cols, 4 * 32);
  EXPECT_EQ(a.q_a_layernorm.size(), 96u);
  EXPECT_EQ(a.kv_a_layernorm.size(), 64u);
  EXPECT_EQ(a.o_proj.scale_inv, nullptr);
  for (float v : moe_layer.input_layernorm) EXPECT_NEAR(v, 1.0f, 0.6f);

  ASSERT_EQ(w.mtp.size(), 1u);
  const MtpLayer& mtp = w.mtp[0];
  EXPECT_EQ(mtp.eh_proj.cols, 2 * c.hidden_size);
  EXPECT_EQ(mtp.embed_tokens.name, "model.layers.3.embed_tokens.weight");
  EXPECT_EQ(mtp.shared_head_head.name, "model.layers.3.shared_head.head.weight");
  EXPECT_EQ(mtp.block.index, 3);
  EXPECT_TRUE(mtp.block.is_moe);
  EXPECT_EQ(mtp.enorm.size(), 160u);
  // The MTP module shares the main embedding: the copies hold the same values.
  EXPECT_EQ(std::memcmp(mtp.embed_tokens.data, w.embed_tokens.data, w.embed_tokens.bytes()), 0);
  EXPECT_EQ(w.bound_tensors, static_cast<int64_t>(model->checkpoint.size()));
  EXPECT_EQ(w.bound_bytes, model->checkpoint.total_bytes());
}

TEST(WeightsTest, Fp8WeightsStayOneBytePerWeightWithBlockScales) {
  auto bf16 = load_model(models().v3_bf16.path(), kNoPrefault);
  auto fp8 = load_model(models().v3_fp8.path(), kNoPrefault);
  ASSERT_TRUE(bf16.ok() && fp8.ok()) << fp8.status().to_string();
  const Linear& q = fp8->weights.layers[1].self_attn.q_b_proj;  // 192 x 96: a partial row block
  EXPECT_EQ(q.dtype, DType::kF8E4M3);
  ASSERT_NE(q.scale_inv, nullptr);
  EXPECT_EQ(q.scale_rows(), 2);
  EXPECT_EQ(q.scale_cols(), 1);
  EXPECT_EQ(q.bytes(), 192u * 96u + 2u * 4u);
  // Not quantised, as in DeepSeek-V3: embeddings, head, router, eh_proj.
  EXPECT_EQ(fp8->weights.embed_tokens.dtype, DType::kBF16);
  EXPECT_EQ(fp8->weights.lm_head.dtype, DType::kBF16);
  EXPECT_EQ(fp8->weights.layers[1].moe.gate.dtype, DType::kBF16);
  EXPECT_EQ(fp8->weights.mtp[0].eh_proj.dtype, DType::kBF16);
  EXPECT_EQ(fp8->weights.layers[2].moe.experts[3].down_proj.dtype, DType::kF8E4M3);

  // Same seed: the FP8 model is the BF16 model's weights quantised per 128x128 block.
  // E4M3 keeps 3 mantissa bits: relative error <= 2^-4 for normal codes, plus at most
  // half a subnormal step (2^-10 x scale) near zero; BF16 adds 2^-8 relative.
  using Pair = std::pair<const Linear*, const Linear*>;
  for (const auto& [wq, wb] : {Pair{&q, &bf16->weights.layers[1].self_attn.q_b_proj},
                               Pair{&fp8->weights.layers[2].moe.experts[3].down_proj,
                                    &bf16->weights.layers[2].moe.experts[3].down_proj}}) {
    for (int64_t r = 0; r < wq->rows; r += 7) {
      for (int64_t col = 0; col < wq->cols; col += 5) {
        const float reference = bf16_at(*wb, r, col);
        const float scale = wq->scale_inv[(r / 128) * wq->scale_cols() + col / 128];
        const float tolerance =
            std::fabs(reference) * (1.0f / 16 + 1.0f / 128) + scale * std::ldexp(1.0f, -10);
        ASSERT_NEAR(fp8_dequantized_at(*wq, r, col), reference, tolerance) << wq->name;
      }
    }
  }
}

TEST(WeightsTest, BindsV2WithoutQueryCompressionOrMtp) {
  auto model = load_model(models().v2_bf16.path(), kNoPrefault);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const Attention& a = model->weights.layers[0].self_attn;
  EXPECT_TRUE(a.q_a_proj.empty());
  EXPECT_EQ(a.q_proj.rows, 4 * 48);
  EXPECT_EQ(a.q_proj.cols, 160);
  EXPECT_TRUE(a.q_a_layernorm.empty());
  const Moe& moe = model->weights.layers[2].moe;
  EXPECT_TRUE(moe.e_score_correction_bias.empty());
  EXPECT_EQ(moe.shared_experts.up_proj.rows, 2 * 96);
  EXPECT_TRUE(model->weights.mtp.empty());
}

TEST(WeightsTest, SkipsMtpLayersWhenNotLoaded) {
  auto model = load_model(models().v3_bf16.path(), {.load_mtp = false, .prefault = false});
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_TRUE(model->weights.mtp.empty());
  EXPECT_LT(model->weights.bound_tensors, static_cast<int64_t>(model->checkpoint.size()));
}

TEST(WeightsTest, PrefaultReportsProgressAndKeepsWeightsIntact) {
  std::ostringstream sink;
  moeserve::log::configure(moeserve::log::Level::kInfo, moeserve::log::Format::kJson, &sink);
  auto model = load_model(models().v3_fp8.path());
  moeserve::log::configure(moeserve::log::Level::kInfo, moeserve::log::Format::kJson, nullptr);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_THAT(sink.str(), HasSubstr("\"msg\":\"loading weights\""));
  EXPECT_THAT(sink.str(), HasSubstr("\"percent\":100"));
  EXPECT_THAT(sink.str(), HasSubstr("\"msg\":\"weights bound\""));
}

TEST(WeightsTest, LoadedModelKeepsPointersValidWhenMoved) {
  auto model = load_model(models().v3_bf16.path(), kMapped);
  ASSERT_TRUE(model.ok());
  const float first = bf16_at(model->weights.lm_head, 3, 4);
  auto holder = std::make_unique<LoadedModel>(std::move(*model));
  EXPECT_EQ(bf16_at(holder->weights.lm_head, 3, 4), first);
  EXPECT_EQ(holder->weights.lm_head.data, holder->checkpoint.find("lm_head.weight")->data);
}

TEST(WeightsTest, CopiedMatricesAreLineAlignedCopiesOfTheCheckpoint) {
  for (const std::string& dir : {models().v3_fp8.path(), models().v2_bf16.path()}) {
    auto model = load_model(dir, kNoPrefault);  // WeightMemory::kCopied is the default
    ASSERT_TRUE(model.ok()) << model.status().to_string();
    ASSERT_NE(model->weights.copied_storage, nullptr);
    EXPECT_GT(model->weights.copied_bytes, 0u);
    const uint8_t* begin = model->weights.copied_storage.get();
    const uint8_t* end = begin + model->weights.copied_bytes;
    int64_t checked = 0;
    for_each_linear(model->weights, [&](Linear& l) {
      if (l.empty()) return;
      SCOPED_TRACE(l.name);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(l.data) % 64, 0u);
      EXPECT_GE(l.data, begin);
      EXPECT_LE(l.data + l.rows * l.cols * dtype_size(l.dtype), end);
      const TensorView* source = model->checkpoint.find(l.name);
      ASSERT_NE(source, nullptr);
      // The mapped pages were dropped after the copy; reading them faults the file back in.
      EXPECT_EQ(std::memcmp(l.data, source->data, source->bytes), 0);
      ++checked;
    });
    EXPECT_GT(checked, 20);
  }
}

TEST(WeightsTest, CopiesOnlyTheRoutedExpertsItIsAskedTo) {
  // An expert-parallel rank copies its own slots' experts; the others stay in the mapping.
  const auto dir = models().v3_fp8.path();
  auto all = load_model(dir, kNoPrefault);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  BindOptions options = kNoPrefault;
  options.copy_routed_expert = [](int64_t, int64_t expert) { return expert % 2 == 0; };
  auto half = load_model(dir, options);
  ASSERT_TRUE(half.ok()) << half.status().to_string();
  const uint8_t* begin = half->weights.copied_storage.get();
  const uint8_t* end = begin + half->weights.copied_bytes;
  auto copied = [&](const Linear& l) { return l.data >= begin && l.data < end; };
  size_t left_out = 0;
  int64_t experts = 0;
  for (int64_t layer : half->weights.moe_layers()) {
    const auto& moe = half->weights.layer(layer).moe;
    for (int64_t e = 0; e < static_cast<int64_t>(moe.experts.size()); ++e, ++experts) {
      for (const Linear* l :
           {&moe.experts[e].gate_proj, &moe.experts[e].up_proj, &moe.experts[e].down_proj}) {
        SCOPED_TRACE(l->name);
        EXPECT_EQ(copied(*l), e % 2 == 0);
        if (e % 2 != 0) {
          EXPECT_EQ(l->data, half->checkpoint.find(l->name)->data);
          left_out += static_cast<size_t>(l->rows * l->cols) * dtype_size(l->dtype);
        }
      }
    }
    EXPECT_TRUE(copied(moe.shared_experts.gate_proj));
    EXPECT_TRUE(copied(moe.gate));
  }
  EXPECT_GT(experts, 2);
  EXPECT_GT(left_out, 0u);
  EXPECT_LE(half->weights.copied_bytes + left_out, all->weights.copied_bytes);
  EXPECT_TRUE(copied(half->weights.lm_head));
  // The same values either way.
  const auto& a = all->weights.layer(all->weights.moe_layers()[0]).moe.experts[1].up_proj;
  const auto& b = half->weights.layer(half->weights.moe_layers()[0]).moe.experts[1].up_proj;
  EXPECT_EQ(std::memcmp(a.data, b.data, static_cast<size_t>(a.rows * a.cols)), 0);
}

TEST(WeightsTest, BoundMoeLayersAreKnownBeforeLoading) {
  for (const std::string& dir : {models().v3_fp8.path(), models().v2_bf16.path()}) {
    for (bool mtp : {true, false}) {
      BindOptions options = kNoPrefault;
      options.load_mtp = mtp;
      auto model = load_model(dir, options);
      ASSERT_TRUE(model.ok()) << model.status().to_string();
      EXPECT_EQ(bound_moe_layers(model->config, mtp), model->weights.moe_layers());
    }
  }
}

TEST(WeightsTest, MappedAndCopiedBindTheSameWeights) {
  auto copied = load_model(models().v3_bf16.path(), kNoPrefault);
  ASSERT_TRUE(copied.ok()) << copied.status().to_string();
  auto mapped = load_model(models().v3_bf16.path(), kMapped);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(mapped->weights.copied_storage, nullptr);
  // Same bytes bound either way.
  EXPECT_EQ(copied->weights.bound_bytes, mapped->weights.bound_bytes);
  EXPECT_EQ(bf16_at(copied->weights.lm_head, 5, 7), bf16_at(mapped->weights.lm_head, 5, 7));
}

TEST(WeightsTest, ParsesWeightMemory) {
  EXPECT_EQ(parse_weight_memory("copied"), WeightMemory::kCopied);
  EXPECT_EQ(parse_weight_memory("mapped"), WeightMemory::kMapped);
  EXPECT_EQ(parse_weight_memory("auto"), std::nullopt);  // the worker flag's, not the loader's
  EXPECT_EQ(parse_weight_memory("huge"), std::nullopt);
}

// Copies a generated model into a single-file checkpoint after `edit` changes its
// tensor list, then binds it.
class CorruptCheckpointTest : public ::testing::Test {
 protected:
  Status bind_edited(const std::string& source,
                     const std::function<void(std::vector<TensorWrite>&)>& edit,
                     const std::function<void(nlohmann::json&)>& edit_config = nullptr) {
    auto original = SafetensorsCheckpoint::open(source);
    EXPECT_TRUE(original.ok());
    std::vector<TensorWrite> tensors;
    for (const std::string& name : original->names()) {
      const TensorView* v = original->find(name);
      tensors.push_back({name, v->dtype, v->shape, {v->data, v->bytes}});
    }
    edit(tensors);
    EXPECT_TRUE(write_safetensors(dir_.file("model.safetensors"), tensors).ok());
    nlohmann::json config;
    std::ifstream(source + "/config.json") >> config;
    if (edit_config) edit_config(config);
    std::ofstream(dir_.file("config.json")) << config.dump();
    auto model = load_model(dir_.path(), kNoPrefault);
    return model.ok() ? ok_status() : model.status();
  }

  static void erase(std::vector<TensorWrite>& tensors, const std::string& name) {
    std::erase_if(tensors, [&](const TensorWrite& t) { return t.name == name; });
  }
  static TensorWrite& find(std::vector<TensorWrite>& tensors, const std::string& name) {
    for (TensorWrite& t : tensors) {
      if (t.name == name) return t;
    }
    ADD_FAILURE() << "no tensor " << name;
    return tensors.front();
  }

  testing::TempDir dir_;
};

TEST(WeightsTest, MissingTensorOfAShardedCheckpointNamesTheIndex) {
  testing::TempDir dir;
  fixtures::TinyModelOptions options;
  options.architecture = Architecture::kDeepseekV2;
  ASSERT_TRUE(fixtures::write_tiny_model(dir.path(), options).ok());
  auto config = load_config(dir.path());
  auto checkpoint = SafetensorsCheckpoint::open(dir.path());
  ASSERT_TRUE(config.ok() && checkpoint.ok());
  config->num_nextn_predict_layers = 1;  // the V2 checkpoint has no MTP layer
  auto weights = bind_weights(*config, *checkpoint, kNoPrefault);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(weights.status().message(),
              HasSubstr(dir.file("model.safetensors.index.json") +
                        ": missing tensor model.layers.3.enorm.weight"));
}

TEST_F(CorruptCheckpointTest, UnmodifiedCopyBinds) {
  EXPECT_TRUE(bind_edited(models().v3_fp8.path(), [](auto&) {}).ok());
}

// Replaces element `index` of tensor `name` by `value`'s bytes.
template <typename Word>
void poke(std::vector<TensorWrite>& tensors, std::vector<uint8_t>& storage, const std::string& name,
          size_t index, Word value) {
  for (TensorWrite& t : tensors) {
    if (t.name != name) continue;
    storage.assign(t.data.begin(), t.data.end());
    std::memcpy(storage.data() + index * sizeof(Word), &value, sizeof(Word));
    t.data = storage;
    return;
  }
  ADD_FAILURE() << "no tensor " << name;
}

TEST_F(CorruptCheckpointTest, NanInABf16TensorFailsTheLoadWithItsName) {
  const std::string name = "model.layers.1.self_attn.o_proj.weight";
  std::vector<uint8_t> storage;
  Status status = bind_edited(models().v3_bf16.path(),
                              [&](auto& t) { poke<uint16_t>(t, storage, name, 5, 0x7fc0); });
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tensor " + name + " [160, 128] holds NaN at element 5"));
}

TEST_F(CorruptCheckpointTest, NanInAnFp8WeightAndInfInItsScaleAreFound) {
  const std::string weight = "model.layers.1.mlp.experts.2.down_proj.weight";
  std::vector<uint8_t> storage;
  Status nan = bind_edited(models().v3_fp8.path(),
                           [&](auto& t) { poke<uint8_t>(t, storage, weight, 7, 0xff); });
  EXPECT_THAT(nan.message(), HasSubstr("tensor " + weight + " "));
  EXPECT_THAT(nan.message(), HasSubstr("holds NaN at element 7"));
  const std::string scale = weight + "_scale_inv";
  Status inf = bind_edited(models().v3_fp8.path(), [&](auto& t) {
    poke<float>(t, storage, scale, 0, std::numeric_limits<float>::infinity());
  });
  EXPECT_THAT(inf.message(), HasSubstr("tensor " + scale + " "));
  EXPECT_THAT(inf.message(), HasSubstr("holds Inf at element 0"));
}

TEST(CheckFiniteTest, SampledLooksAtWindowsAndAllAtEveryValue) {
  // 4 MiB of F32 zeros: sampled reads 256 windows of 4 KiB, one every 16 KiB.
  std::vector<float> values(1 << 20, 0.0f);
  TensorView t;
  t.name = "w";
  t.dtype = DType::kF32;
  t.shape = {static_cast<int64_t>(values.size())};
  t.bytes = values.size() * sizeof(float);
  t.data = reinterpret_cast<const uint8_t*>(values.data());
  EXPECT_TRUE(check_finite(t, WeightCheck::kSampled).ok());
  values[4096 + 10] = std::nanf("");  // byte 16424: inside the second window
  EXPECT_THAT(check_finite(t, WeightCheck::kSampled).message(), HasSubstr("NaN at element 4106"));
  values[4096 + 10] = 0;
  values[2048] = -std::numeric_limits<float>::infinity();  // byte 8192: between windows
  EXPECT_TRUE(check_finite(t, WeightCheck::kSampled).ok());
  EXPECT_THAT(check_finite(t, WeightCheck::kAll).message(), HasSubstr("Inf at element 2048"));
  EXPECT_TRUE(check_finite(t, WeightCheck::kNone).ok());
  EXPECT_EQ(parse_weight_check("all"), WeightCheck::kAll);
  EXPECT_EQ(parse_weight_check("everything"), std::nullopt);
}

TEST_F(CorruptCheckpointTest, MissingTensorIsNamed) {
  const std::string name = "model.layers.1.mlp.experts.3.up_proj.weight";
  Status status = bind_edited(models().v3_bf16.path(), [&](auto& t) { erase(t, name); });
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(dir_.file("model.safetensors") + ": missing tensor " +
                                          name + " (expected [96, 160] of BF16, F32, F8_E4M3)"));
}

TEST_F(CorruptCheckpointTest, WrongShapeIsNamedWithBothShapes) {
  const std::string name = "model.layers.0.self_attn.o_proj.weight";
  Status status = bind_edited(models().v3_bf16.path(), [&](auto& t) {
    find(t, name).shape = {128, 160};
  });
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(dir_.file("model.safetensors") + ": tensor " + name +
                                          ": shape [128, 160], expected [160, 128]"));
}

TEST_F(CorruptCheckpointTest, WrongDtypeIsNamed) {
  const std::string name = "model.layers.2.self_attn.kv_a_layernorm.weight";
  Status status =
      bind_edited(models().v3_bf16.path(), [&](auto& t) { find(t, name).dtype = DType::kF16; });
  EXPECT_THAT(status.message(),
              HasSubstr("tensor " + name + ": dtype F16 not allowed here (BF16, F32)"));
}

TEST_F(CorruptCheckpointTest, QuantisedRouterIsRejected) {
  const std::string name = "model.layers.1.mlp.gate.weight";
  Status status = bind_edited(models().v3_fp8.path(), [&](auto& t) {
    TensorWrite& gate = find(t, name);
    gate.dtype = DType::kF8E4M3;
    gate.data = gate.data.first(gate.data.size() / 2);
  });
  EXPECT_THAT(status.message(), HasSubstr("tensor " + name + ": dtype F8_E4M3 not allowed here"));
}

TEST_F(CorruptCheckpointTest, MissingScaleInvIsNamed) {
  const std::string name = "model.layers.2.mlp.shared_experts.down_proj.weight";
  Status status =
      bind_edited(models().v3_fp8.path(), [&](auto& t) { erase(t, name + "_scale_inv"); });
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("tensor " + name + " is F8_E4M3 but " + name +
                                          "_scale_inv is missing (expected [2, 1] of F32)"));
}

TEST_F(CorruptCheckpointTest, ScaleInvOfWrongShapeIsNamed) {
  const std::string name = "model.layers.0.mlp.up_proj.weight_scale_inv";  // [3, 2]
  Status status = bind_edited(models().v3_fp8.path(), [&](auto& t) {
    find(t, name).shape = {2, 3};
  });
  EXPECT_THAT(status.message(), HasSubstr("tensor " + name + ": shape [2, 3], expected [3, 2]"));
}

TEST_F(CorruptCheckpointTest, Fp8WithoutQuantizationConfigIsRejected) {
  Status status = bind_edited(
      models().v3_fp8.path(), [](auto&) {},
      [](nlohmann::json& c) { c.erase("quantization_config"); });
  EXPECT_THAT(status.message(), HasSubstr("is F8_E4M3 but config.json has no quantization_config"));
}

TEST_F(CorruptCheckpointTest, UnexpectedTensorsAreListed) {
  const std::vector<uint8_t> bytes(160 * 2);
  Status status = bind_edited(models().v3_bf16.path(), [&](auto& t) {
    t.push_back({"model.layers.0.self_attn.extra_norm.weight", DType::kBF16, {160}, bytes});
    t.push_back({"model.layers.9.input_layernorm.weight", DType::kBF16, {160}, bytes});
  });
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr(dir_.file("model.safetensors") +
                        ": unexpected tensor model.layers.0.self_attn.extra_norm.weight, "
                        "model.layers.9.input_layernorm.weight (not part of a "
                        "DeepseekV3ForCausalLM with this config.json)"));
}

TEST_F(CorruptCheckpointTest, RotaryInvFreqIsIgnored) {
  const std::vector<uint8_t> bytes(8 * 4);
  Status status = bind_edited(models().v3_bf16.path(), [&](auto& t) {
    t.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {8}, bytes});
  });
  EXPECT_TRUE(status.ok()) << status.to_string();
}

TEST_F(CorruptCheckpointTest, UnsupportedArchitectureIsAClearError) {
  Status status = bind_edited(
      models().v3_bf16.path(), [](auto&) {},
      [](nlohmann::json& c) { c["architectures"] = {"MixtralForCausalLM"}; });
  EXPECT_THAT(
      status.message(),
      HasSubstr("config.json: architectures: unsupported architecture \"MixtralForCausalLM\""));
}

TEST_F(CorruptCheckpointTest, ConfigDisagreeingWithTheCheckpointNamesTheTensor) {
  // A config with more experts than stored: the first absent expert is reported.
  Status status = bind_edited(
      models().v3_bf16.path(), [](auto&) {}, [](nlohmann::json& c) { c["n_routed_experts"] = 20; });
  EXPECT_THAT(status.message(),
              HasSubstr("model.layers.1.mlp.gate.weight: shape [16, 160], expected [20, 160]"));
}

}  // namespace
}  // namespace moeserve::model
