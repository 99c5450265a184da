#include "replay_buffer/random.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "test_support.hpp"

namespace replay_buffer {
namespace {

TEST(Random, SameSeedAndStreamSameNumbers) {
  auto a = Xoshiro256pp::for_stream(5, 3);
  auto b = Xoshiro256pp::for_stream(5, 3);
  auto c = Xoshiro256pp::for_stream(5, 4);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const auto x = a();
    EXPECT_EQ(x, b());
    differs |= x != c();
  }
  EXPECT_TRUE(differs);
}

TEST(Random, BelowStaysInRangeAndIsUniform) {
  Xoshiro256pp rng(123);
  for (const std::uint64_t n : {1ull, 2ull, 3ull, 7ull, 1000ull, (1ull << 63) + 5}) {
    for (int i = 0; i < 10'000; ++i) ASSERT_LT(rng.below(n), n);
  }
  // A range that is not a power of two is where a plain modulo would be biased.
  std::vector<std::uint64_t> counts(6);
  for (int i = 0; i < 600'000; ++i) ++counts[rng.below(6)];
  EXPECT_TRUE(testing::fits_uniform(counts));
}

TEST(Random, UniformIsInUnitInterval) {
  Xoshiro256pp rng(9);
  for (int i = 0; i < 100'000; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace replay_buffer
