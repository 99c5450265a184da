#include "replay_buffer/rank_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "replay_buffer/random.hpp"

namespace replay_buffer {
namespace {

// Upper 1e-6 quantile of chi-square with df degrees of freedom (Wilson-Hilferty).
double chi_square_critical(double df) {
  constexpr double kZ = 4.753424;  // standard normal quantile of 1 - 1e-6
  const double c = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - c + kZ * std::sqrt(c), 3.0);
}

// Rank counts of `batches` batches of k, and the statistic against k * batches * P(rank).
struct Fit {
  std::vector<double> counts;
  double statistic = 0.0;
  double df = 0.0;
};

Fit fit(const RankTable& table, std::size_t n, std::size_t k, std::size_t batches,
        std::uint64_t seed) {
  Fit result;
  result.counts.assign(n, 0.0);
  std::vector<std::size_t> ranks(k);
  Xoshiro256pp rng(seed);
  for (std::size_t b = 0; b < batches; ++b) {
    table.sample(n, k, rng, ranks);
    for (const std::size_t r : ranks) result.counts.at(r) += 1.0;
  }
  const double draws = static_cast<double>(k * batches);
  for (std::size_t r = 0; r < n; ++r) {
    const double expected = draws * table.probability(r, n);
    EXPECT_GE(expected, 5.0) << "too few draws for rank " << r;
    const double d = result.counts[r] - expected;
    result.statistic += d * d / expected;
  }
  result.df = static_cast<double>(n - 1);
  return result;
}

TEST(RankTableTest, RejectsBadArguments) {
  EXPECT_THROW(RankTable(0, 0.7), std::invalid_argument);
  EXPECT_THROW(RankTable(10, -0.1), std::invalid_argument);
  EXPECT_THROW(RankTable(10, std::nan("")), std::invalid_argument);
  EXPECT_THROW(RankTable(10, std::numeric_limits<double>::infinity()), std::invalid_argument);
  const RankTable table(10, 0.7);
  EXPECT_THROW((void)table.probability(0, 0), std::out_of_range);
  EXPECT_THROW((void)table.probability(0, 11), std::out_of_range);
  EXPECT_THROW((void)table.probability(5, 5), std::out_of_range);
  std::vector<std::size_t> out(4);
  Xoshiro256pp rng(1);
  EXPECT_THROW(table.sample(11, 4, rng, out), std::out_of_range);
  EXPECT_THROW(table.sample(10, 3, rng, out), std::invalid_argument);
}

TEST(RankTableTest, ProbabilitiesSumToOneAndDecrease) {
  const RankTable table(5000, 0.7);
  for (const std::size_t n : {1, 2, 1000, 5000}) {
    double sum = 0.0;
    for (std::size_t r = 0; r < n; ++r) {
      sum += table.probability(r, n);
      if (r > 0) {
        ASSERT_LT(table.probability(r, n), table.probability(r - 1, n));
      }
    }
    EXPECT_NEAR(sum, 1.0, 1e-12) << n;
  }
  EXPECT_DOUBLE_EQ(table.probability(1, 2), std::pow(2.0, -0.7) / (1.0 + std::pow(2.0, -0.7)));
}

TEST(RankTableTest, AlphaZeroIsUniform) {
  const RankTable table(1000, 0.0);
  for (const std::size_t r : {0, 1, 500, 999}) EXPECT_EQ(table.probability(r, 1000), 1.0 / 1000);
  const Fit result = fit(table, 1000, 32, 2000, 5);
  EXPECT_LT(result.statistic, chi_square_critical(result.df)) << result.statistic;
}

TEST(RankTableTest, FrequenciesMatchPowerLaw) {
  const RankTable table(1000, 0.7);
  const Fit result = fit(table, 1000, 32, 20000, 7);
  EXPECT_LT(result.statistic, chi_square_critical(result.df)) << result.statistic;
}

TEST(RankTableTest, ChiSquareRejectsThePaperApproximation) {
  // Guards the test's power: a uniform rank inside each equal-mass segment (the PER paper's
  // shortcut) is measurably off for N=1000, alpha=0.7, k=32.
  constexpr std::size_t kN = 1000;
  constexpr std::size_t kK = 32;
  const RankTable table(kN, 0.7);
  std::vector<double> cdf(kN);
  double sum = 0.0;
  for (std::size_t r = 0; r < kN; ++r) cdf[r] = sum += table.probability(r, kN);
  std::vector<std::size_t> bounds(kK + 1);
  for (std::size_t j = 0; j <= kK; ++j) {
    bounds[j] = std::min<std::size_t>(
        kN, std::upper_bound(cdf.begin(), cdf.end(), static_cast<double>(j) / kK) - cdf.begin());
  }
  bounds[kK] = kN;
  std::vector<double> counts(kN, 0.0);
  Xoshiro256pp rng(3);
  constexpr std::size_t kBatches = 20000;
  for (std::size_t b = 0; b < kBatches; ++b) {
    for (std::size_t j = 0; j < kK; ++j) {
      const std::size_t lo = bounds[j];
      const std::size_t hi = std::max(bounds[j + 1], lo + 1);
      counts[lo + rng.below(hi - lo)] += 1.0;
    }
  }
  double statistic = 0.0;
  for (std::size_t r = 0; r < kN; ++r) {
    const double expected = kBatches * kK * table.probability(r, kN);
    statistic += (counts[r] - expected) * (counts[r] - expected) / expected;
  }
  EXPECT_GT(statistic, chi_square_critical(kN - 1));
}

TEST(RankTableTest, OneTableServesEverySize) {
  const RankTable big(100'000, 0.7);
  const RankTable exact(1000, 0.7);
  for (const std::size_t r : {0, 10, 999}) {
    EXPECT_DOUBLE_EQ(big.probability(r, 1000), exact.probability(r, 1000));
  }
  const Fit result = fit(big, 1000, 32, 20000, 9);
  EXPECT_LT(result.statistic, chi_square_critical(result.df)) << result.statistic;
}

TEST(RankTableTest, SampleIsStratified) {
  constexpr std::size_t kN = 1000;
  constexpr std::size_t kK = 32;
  const RankTable table(kN, 0.7);
  std::vector<double> before(kN + 1, 0.0);  // before[r] = P(rank < r)
  for (std::size_t r = 0; r < kN; ++r) before[r + 1] = before[r] + table.probability(r, kN);
  std::vector<std::size_t> ranks(kK);
  Xoshiro256pp rng(4);
  for (int batch = 0; batch < 1000; ++batch) {
    table.sample(kN, kK, rng, ranks);
    ASSERT_TRUE(std::is_sorted(ranks.begin(), ranks.end()));
    for (std::size_t j = 0; j < kK; ++j) {
      // Rank r's mass [before[r], before[r + 1]) meets segment j's [j / k, (j + 1) / k).
      const std::size_t r = ranks[j];
      const double segment_begin = static_cast<double>(j) / kK;
      ASSERT_LT(r, kN);
      ASSERT_LE(before[r], segment_begin + 1.0 / kK + 1e-12) << j;
      ASSERT_GE(before[r + 1], segment_begin - 1e-12) << j;
    }
  }
}

TEST(RankTableTest, EdgeSizes) {
  const RankTable table(10, 0.7);
  std::vector<std::size_t> ranks(64);
  Xoshiro256pp rng(6);
  table.sample(1, 64, rng, ranks);
  for (const std::size_t r : ranks) EXPECT_EQ(r, 0u);
  table.sample(10, 64, rng, ranks);  // more draws than ranks
  for (const std::size_t r : ranks) EXPECT_LT(r, 10u);
  table.sample(10, 0, rng, std::span<std::size_t>());
}

TEST(RankTableTest, HugeAlphaNeverReturnsARankLostToRounding) {
  // 2^-60 vanishes next to rank 0's weight of 1: only rank 0 can come out.
  const RankTable table(1'000'000, 60.0);
  std::vector<std::size_t> ranks(32);
  Xoshiro256pp rng(8);
  for (int batch = 0; batch < 1000; ++batch) {
    table.sample(1'000'000, 32, rng, ranks);
    for (const std::size_t r : ranks) ASSERT_EQ(r, 0u);
  }
}

TEST(RankTableTest, SameSeedSameRanks) {
  const RankTable table(10'000, 0.5);
  std::vector<std::size_t> a(100), b(100);
  Xoshiro256pp rng_a(12), rng_b(12);
  table.sample(10'000, 100, rng_a, a);
  table.sample(10'000, 100, rng_b, b);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace replay_buffer
