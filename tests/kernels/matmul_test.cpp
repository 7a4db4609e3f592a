#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/random_data.h"

namespace moeserve::kernels {
namespace {

using testing::random_floats;

// Owns the bytes and scales behind a WeightView with random, non-zero content. The data
// starts `misalign` bytes past a 64-byte boundary (kernels may take other paths for
// line-aligned rows).
struct RandomWeight {
  std::vector<uint8_t> storage;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> fp8;
  std::vector<float> scales;
  WeightView view;

  RandomWeight(WeightType type, int64_t rows, int64_t cols, uint32_t seed, int64_t misalign = 0) {
    view = {type, nullptr, nullptr, rows, cols};
    const auto values = random_floats(rows * cols, seed);
    switch (type) {
      case WeightType::kF32:
        f32 = values;
        view.data = f32.data();
        break;
      case WeightType::kBF16:
        for (float v : values) bf16.push_back(f32_to_bf16(v));
        view.data = bf16.data();
        break;
      case WeightType::kFP8E4M3: {
        // Every finite code (subnormals included), NaN codes excluded.
        std::mt19937 rng(seed);
        std::uniform_int_distribution<int> code(0, 253);
        for (int64_t i = 0; i < rows * cols; ++i) {
          const int c = code(rng);
          fp8.push_back(static_cast<uint8_t>(c < 127 ? c : c + 1));
        }
        const int64_t blocks = ((rows + 127) / 128) * ((cols + 127) / 128);
        scales = random_floats(blocks, seed + 1, 0.001f, 0.01f);
        view.data = fp8.data();
        view.scale_inv = scales.data();
        break;
      }
    }
    const int64_t bytes = weight_bytes(view);
    storage.resize(static_cast<size_t>(bytes + 64 + misalign));
    const auto address = reinterpret_cast<uintptr_t>(storage.data());
    uint8_t* placed = storage.data() + (64 - address % 64) % 64 + misalign;
    if (bytes > 0) std::memcpy(placed, view.data, static_cast<size_t>(bytes));
    view.data = placed;
  }
};

// sum_c |W[r][c] * x[t][c]|: the scale that float32 rounding errors are relative to.
std::vector<double> abs_products(const WeightView& w, const std::vector<float>& x, int64_t tokens) {
  std::vector<double> out(static_cast<size_t>(tokens * w.rows));
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t t = 0; t < tokens; ++t) {
      double sum = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum += std::fabs(row[c] * x[t * w.cols + c]);
      out[t * w.rows + r] = sum;
    }
  }
  return out;
}

const char* type_name(WeightType type) {
  return type == WeightType::kF32 ? "f32" : type == WeightType::kBF16 ? "bf16" : "fp8";
}

class MatmulTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (set_isa_for_testing(GetParam()) != GetParam()) GTEST_SKIP() << "CPU lacks this ISA";
  }
  void TearDown() override { set_isa_for_testing(detected_isa()); }

  // matmul against matmul_reference. Tolerance: 1e-5 of sum |w x| (float32 accumulation
  // over at most a few thousand terms in blocked order, eps = 6e-8, errors mostly cancel).
  static void check(WeightType type, int64_t rows, int64_t cols, int64_t tokens, ThreadPool* pool,
                    int64_t misalign = 0) {
    SCOPED_TRACE(std::string(type_name(type)) + " rows " + std::to_string(rows) + " cols " +
                 std::to_string(cols) + " tokens " + std::to_string(tokens) + " threads " +
                 std::to_string(pool ? pool->size() : 1) + " misalign " + std::to_string(misalign));
    const uint32_t seed = static_cast<uint32_t>(rows * 7919 + cols * 31 + tokens);
    RandomWeight weight(type, rows, cols, seed, misalign);
    const auto x = random_floats(tokens * cols, seed + 2);
    std::vector<float> got(static_cast<size_t>(tokens * rows), NAN);
    std::vector<float> want(got.size());
    matmul(weight.view, x.data(), tokens, got.data(), pool);
    matmul_reference(weight.view, x.data(), tokens, want.data());
    const auto scale = abs_products(weight.view, x, tokens);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5 * scale[i] + 1e-30) << "output " << i;
    }
  }
};

TEST_P(MatmulTest, MatchesReferenceOnOddShapesAndPartialFp8Blocks) {
  ThreadPool three(3);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1},      {3, 5},     {7, 13}, {37, 131}, {130, 257},
      {129, 1100}, {260, 136}, {5, 64}, {9, 96},   {131, 512}};
  for (WeightType type : {WeightType::kF32, WeightType::kBF16, WeightType::kFP8E4M3}) {
    for (auto [rows, cols] : shapes) {
      for (int64_t tokens : {1, 2, 3, 4, 5, 17}) {
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &three}) {
          check(type, rows, cols, tokens, pool);
        }
      }
    }
  }
}

TEST_P(MatmulTest, MatchesReferenceForEveryTokenCountUpTo17) {
  ThreadPool three(3);
  for (WeightType type : {WeightType::kF32, WeightType::kBF16, WeightType::kFP8E4M3}) {
    for (int64_t tokens = 1; tokens <= 17; ++tokens) check(type, 67, 300, tokens, &three);
  }
}

TEST_P(MatmulTest, LineAlignedAndMisalignedRowsAgree) {
  // Row lengths that are whole 64-byte lines for BF16 and FP8, with the data on a line and
  // off it: both layouts must match the reference. 1-9 tokens cover the direct kernels
  // (VBMI, BF16 dot products) and the generic kernel past them; 7 and 261 rows leave rows
  // outside a 4-row tile, 260 and 261 span three FP8 row blocks.
  ThreadPool three(3);
  for (WeightType type : {WeightType::kBF16, WeightType::kFP8E4M3}) {
    for (int64_t misalign : {0, 8, 16}) {
      for (int64_t tokens = 1; tokens <= 9; ++tokens) {
        check(type, 261, 128, tokens, nullptr, misalign);
        check(type, 260, 384, tokens, &three, misalign);
        check(type, 7, 64, tokens, nullptr, misalign);
      }
    }
  }
}

TEST_P(MatmulTest, ManyTokensOverSeveralPanelsMatchReference) {
  // Past two tokens the BF16 dot-product kernel works through panels of 64 tokens x 1024
  // columns x one 128-row block: 2112 columns are two whole panels and a partial one (half
  // an FP8 block), 70 tokens two token blocks, 133 rows two row blocks and a 1-row tile;
  // 3 and 5 tokens are single tiles of 3 and 3 + 2.
  ThreadPool three(3);
  for (WeightType type : {WeightType::kBF16, WeightType::kFP8E4M3}) {
    for (int64_t tokens : {3, 5, 64, 70}) {
      check(type, 133, 2112, tokens, nullptr);
      check(type, 133, 2112, tokens, &three);
    }
  }
}

// matmul of random activations times 2^exponent against the reference, within 1e-5 of
// sum |w x| and nothing absolute (so it holds at any magnitude); outputs must be finite.
void expect_relative_accuracy(const WeightView& w, int64_t tokens, uint32_t seed, int exponent) {
  auto x = random_floats(tokens * w.cols, seed);
  for (float& v : x) v = std::ldexp(v, exponent);
  std::vector<float> got(static_cast<size_t>(tokens * w.rows)), want(got.size());
  matmul(w, x.data(), tokens, got.data(), nullptr);
  matmul_reference(w, x.data(), tokens, want.data());
  const auto scale = abs_products(w, x, tokens);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "output " << i;
    ASSERT_NEAR(got[i], want[i], 1e-5 * scale[i]) << "output " << i;
  }
}

TEST_P(MatmulTest, ActivationsFrom2ToTheMinus90To2ToThe90KeepTheirAccuracy) {
  // The BF16 dot-product kernel splits each activation into two BF16 parts; the split and
  // the FP8 block scale folded into it must hold at every magnitude a model produces.
  for (WeightType type : {WeightType::kBF16, WeightType::kFP8E4M3}) {
    RandomWeight weight(type, 131, 384, 21);
    for (int exponent = -90; exponent <= 90; exponent += 30) {
      for (int64_t tokens : {1, 2, 3, 6}) {
        SCOPED_TRACE(std::string(type_name(type)) + " activations ~2^" + std::to_string(exponent) +
                     " tokens " + std::to_string(tokens));
        expect_relative_accuracy(weight.view, tokens, 22 + exponent, exponent);
      }
    }
  }
}

TEST_P(MatmulTest, Fp8BlockScalesFrom2ToTheMinus40To2ToThe20KeepTheirAccuracy) {
  // The generic FP8 kernel decodes weights as value * 2^-120 and moves the 2^120 into the
  // scaled activations, shifted by a power of two chosen per token: a fixed shift would
  // overflow for large |x * scale| or flush the products of small ones to zero.
  for (const auto& [scale_exponent, x_exponent] : {std::pair{20, 70}, std::pair{-40, -70}}) {
    RandomWeight weight(WeightType::kFP8E4M3, 131, 384, 23);
    for (float& s : weight.scales) s = std::ldexp(s * 256.0f, scale_exponent);
    weight.view.scale_inv = weight.scales.data();
    for (int64_t tokens : {1, 2, 3, 4, 6}) {
      SCOPED_TRACE("scales ~2^" + std::to_string(scale_exponent) + " activations ~2^" +
                   std::to_string(x_exponent) + " tokens " + std::to_string(tokens));
      expect_relative_accuracy(weight.view, tokens, 24 + static_cast<uint32_t>(tokens), x_exponent);
    }
  }
}

TEST_P(MatmulTest, LargeEnoughToSplitAcrossThreadsMatchesSingleThreaded) {
  ThreadPool three(3);
  RandomWeight weight(WeightType::kFP8E4M3, 515, 2100, 5);
  const auto x = random_floats(4 * 2100, 6);
  for (int64_t tokens : {1, 4}) {
    std::vector<float> single(static_cast<size_t>(tokens * 515));
    std::vector<float> multi(single.size());
    matmul(weight.view, x.data(), tokens, single.data(), nullptr);
    matmul(weight.view, x.data(), tokens, multi.data(), &three);
    EXPECT_EQ(single, multi);  // same rows, same arithmetic, whatever the thread
  }
}

// Tasks of every weight type, token count and size, some too small to split and one
// empty: each output equals what matmul writes for it alone, with or without a pool, and
// chunk boundaries fall inside tasks as well as between them.
TEST_P(MatmulTest, MatmulAllWritesWhatEachMatmulWouldWrite) {
  struct Case {
    WeightType type;
    int64_t rows, cols, tokens;
  };
  const std::vector<Case> cases = {
      {WeightType::kFP8E4M3, 515, 1024, 1}, {WeightType::kBF16, 64, 256, 3},
      {WeightType::kFP8E4M3, 3, 130, 1},    {WeightType::kF32, 37, 70, 2},
      {WeightType::kFP8E4M3, 0, 128, 1},    {WeightType::kFP8E4M3, 6, 0, 2},
      {WeightType::kFP8E4M3, 1024, 512, 9}};
  std::vector<RandomWeight> weights;
  std::vector<std::vector<float>> inputs, want;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    weights.emplace_back(c.type, c.rows, c.cols, static_cast<uint32_t>(40 + i));
    inputs.push_back(random_floats(std::max<int64_t>(1, c.tokens * c.cols), 60 + i));
    want.emplace_back(static_cast<size_t>(c.tokens * c.rows));
    matmul(weights[i].view, inputs[i].data(), c.tokens, want[i].data(), nullptr);
  }
  ThreadPool three(3);
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &three}) {
    std::vector<std::vector<float>> got;
    std::vector<MatmulTask> tasks;
    for (size_t i = 0; i < cases.size(); ++i) {
      got.emplace_back(want[i].size(), NAN);
      tasks.push_back({weights[i].view, inputs[i].data(), cases[i].tokens, got[i].data()});
    }
    matmul_all(tasks, pool);
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(got[i], want[i]) << "task " << i << (pool ? " with a pool" : " without");
    }
  }
}

TEST_P(MatmulTest, ZeroColumnsGiveZeros) {
  RandomWeight weight(WeightType::kFP8E4M3, 5, 0, 3);
  std::vector<float> y(10, NAN);
  matmul(weight.view, nullptr, 2, y.data(), nullptr);
  EXPECT_EQ(y, std::vector<float>(10, 0.0f));
}

INSTANTIATE_TEST_SUITE_P(Isas, MatmulTest,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vbmi,
                                           Isa::kAvx512Bf16),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(DequantizeRowTest, AppliesTheBlockScaleOfEachColumnBlock) {
  RandomWeight weight(WeightType::kFP8E4M3, 200, 300, 9);
  std::vector<float> row(300);
  for (int64_t r : {0, 127, 128, 199}) {
    dequantize_row(weight.view, r, row.data());
    for (int64_t c = 0; c < 300; ++c) {
      const float scale = weight.scales[(r / 128) * 3 + c / 128];
      ASSERT_EQ(row[c], fp8_e4m3_to_f32(weight.fp8[r * 300 + c]) * scale) << r << "," << c;
    }
  }
  RandomWeight bf16(WeightType::kBF16, 3, 9, 10);
  dequantize_row(bf16.view, 2, row.data());
  for (int64_t c = 0; c < 9; ++c) EXPECT_EQ(row[c], bf16_to_f32(bf16.bf16[18 + c]));
}

TEST(WeightBytesTest, CountsElementSizes) {
  EXPECT_EQ(weight_bytes({WeightType::kF32, nullptr, nullptr, 3, 5}), 60);
  EXPECT_EQ(weight_bytes({WeightType::kBF16, nullptr, nullptr, 3, 5}), 30);
  EXPECT_EQ(weight_bytes({WeightType::kFP8E4M3, nullptr, nullptr, 3, 5}), 15);
}

}  // namespace
}  // namespace moeserve::kernels
