// Prioritized sampling through Buffer: distributions, weights, stale keys, errors, threads.
#include "replay_buffer/selectors/registry.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <latch>
#include <numeric>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::out_bytes;

Schema id_schema() { return Schema({{"id", DType::kInt64, {}}}); }

Buffer make(Strategy strategy, std::size_t capacity, double alpha = 0.6, double eps = 1e-6,
            std::uint64_t seed = 1) {
  return Buffer(id_schema(), {.capacity = capacity,
                              .seed = seed,
                              .strategy = strategy,
                              .alpha = alpha,
                              .beta = 0.4,
                              .eps = eps});
}

// Adds ids first..first+count-1 (the id of key k is first + k - first key).
void fill(Buffer& buffer, std::int64_t first, std::size_t count) {
  std::vector<std::int64_t> ids(count);
  std::iota(ids.begin(), ids.end(), first);
  const std::array<FieldBytes, 1> columns{bytes_of(ids)};
  (void)buffer.add_batch(columns, count);
}

struct Sampled {
  std::vector<std::int64_t> ids;
  std::vector<std::uint64_t> keys;
  std::vector<float> weights;
};

Sampled sample(Buffer& buffer, std::size_t batch, std::optional<double> beta = std::nullopt) {
  Sampled s{std::vector<std::int64_t>(batch), std::vector<std::uint64_t>(batch),
            std::vector<float>(batch)};
  const std::array<FieldOut, 1> out{out_bytes(s.ids)};
  buffer.sample(batch, out, s.keys, s.weights, beta);
  return s;
}

std::size_t update(Buffer& buffer, const std::vector<std::uint64_t>& keys,
                   const std::vector<double>& values, PriorityKind kind = PriorityKind::kTdError) {
  return buffer.update_priorities(keys, values, kind);
}

// Draws `draws` transitions and counts them per key (keys 0..n-1).
std::vector<std::uint64_t> counts(Buffer& buffer, std::size_t n, std::size_t draws) {
  std::vector<std::uint64_t> seen(n);
  for (std::size_t done = 0; done < draws; done += 256) {
    for (const std::uint64_t key : sample(buffer, 256).keys) ++seen[key];
  }
  return seen;
}

std::vector<double> td_errors(const std::string& shape, std::size_t n) {
  std::vector<double> td(n);
  Xoshiro256pp rng(7);
  for (std::size_t i = 0; i < n; ++i) {
    if (shape == "uniform") td[i] = 1.0;
    if (shape == "linear") td[i] = static_cast<double>(i + 1);
    if (shape == "pareto") td[i] = std::pow(1.0 - rng.uniform(), -1.0 / 1.2);  // heavy tail
    if (shape == "many_zeros") td[i] = i % 5 == 0 ? static_cast<double>(i % 7 + 1) : 0.0;
  }
  return td;
}

class ProportionalDistribution : public ::testing::TestWithParam<std::string> {};

TEST_P(ProportionalDistribution, SampledFrequenciesMatchPriorities) {
  constexpr std::size_t kN = 500;
  constexpr double kAlpha = 0.7;
  // eps = 0 so that zero TD errors are zero priorities, never drawn.
  Buffer buffer = make(Strategy::kProportional, kN, kAlpha, /*eps=*/0.0);
  fill(buffer, 0, kN);
  std::vector<std::uint64_t> keys(kN);
  std::iota(keys.begin(), keys.end(), 0);
  const std::vector<double> td = td_errors(GetParam(), kN);
  EXPECT_EQ(update(buffer, keys, td), kN);
  std::vector<double> p(kN);
  for (std::size_t i = 0; i < kN; ++i) p[i] = std::pow(std::fabs(td[i]), kAlpha);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= total;
  EXPECT_TRUE(testing::fits_distribution(counts(buffer, kN, 400'000), p));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ProportionalDistribution,
                         ::testing::Values("uniform", "linear", "pareto", "many_zeros"));

TEST(Proportional, MillionSlotsFollowPriorities) {
  constexpr std::size_t kN = 1'000'000;
  Buffer buffer = make(Strategy::kProportional, kN, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, kN);
  // Slot i has priority (i mod 10) + 1: ten classes with known mass, counted per class.
  std::vector<std::uint64_t> keys(kN);
  std::vector<double> td(kN);
  for (std::size_t i = 0; i < kN; ++i) {
    keys[i] = i;
    td[i] = static_cast<double>(i % 10 + 1);
  }
  EXPECT_EQ(update(buffer, keys, td), kN);
  std::vector<std::uint64_t> per_class(10);
  for (int call = 0; call < 400; ++call) {
    for (const std::uint64_t key : sample(buffer, 256).keys) ++per_class[key % 10];
  }
  std::vector<double> p(10);
  for (std::size_t c = 0; c < 10; ++c) p[c] = static_cast<double>(c + 1) / 55.0;
  EXPECT_TRUE(testing::fits_distribution(per_class, p));
}

TEST(Rank, SampledFrequenciesMatchRankProbabilities) {
  constexpr std::size_t kN = 300;
  constexpr double kAlpha = 0.7;
  Buffer buffer = make(Strategy::kRank, kN, kAlpha);
  fill(buffer, 0, kN);
  // Priorities in a shuffled order, so rank and slot differ.
  std::vector<std::uint64_t> keys(kN);
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<double> td(kN);
  for (std::size_t i = 0; i < kN; ++i) td[i] = static_cast<double>((i * 37) % kN) + 0.5;
  EXPECT_EQ(update(buffer, keys, td), kN);
  // Expected: P(key) = rank(key)^-alpha / sum, rank 1 = largest |td|.
  std::vector<double> p(kN);
  double total = 0.0;
  for (std::size_t i = 0; i < kN; ++i) {
    const auto larger = std::count_if(td.begin(), td.end(), [&](double x) { return x > td[i]; });
    p[i] = std::pow(static_cast<double>(larger + 1), -kAlpha);
    total += p[i];
  }
  for (double& x : p) x /= total;
  EXPECT_TRUE(testing::fits_distribution(counts(buffer, kN, 300'000), p));
}

// Expected rank-based probabilities for priorities `td`: ranks by |td| descending, ties by key.
std::vector<double> rank_probabilities(const std::vector<double>& td, double alpha) {
  std::vector<std::size_t> order(td.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::fabs(td[a]) > std::fabs(td[b]);
  });
  std::vector<double> p(td.size());
  double total = 0.0;
  for (std::size_t r = 0; r < order.size(); ++r) {
    p[order[r]] = std::pow(static_cast<double>(r + 1), -alpha);
    total += p[order[r]];
  }
  for (double& x : p) x /= total;
  return p;
}

class RankDistribution : public ::testing::TestWithParam<std::string> {};

TEST_P(RankDistribution, SampledFrequenciesMatchRanksWithTies) {
  constexpr std::size_t kN = 400;
  Buffer buffer = make(Strategy::kRank, kN, /*alpha=*/0.7, /*eps=*/0.0);
  fill(buffer, 0, kN);
  std::vector<std::uint64_t> keys(kN);
  std::iota(keys.begin(), keys.end(), 0);
  const std::vector<double> td = td_errors(GetParam(), kN);
  update(buffer, keys, td);
  EXPECT_TRUE(testing::fits_distribution(counts(buffer, kN, 300'000), rank_probabilities(td, 0.7)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RankDistribution,
                         ::testing::Values("uniform", "linear", "pareto", "many_zeros"));

TEST(Rank, MillionSlotsFollowRanks) {
  constexpr std::size_t kN = 1'000'000;
  constexpr double kAlpha = 0.5;
  Buffer buffer = make(Strategy::kRank, kN, kAlpha);
  fill(buffer, 0, kN);
  // Key i gets priority kN - i: its rank is i. Counted in ten classes of ranks [c*10^5, ...).
  std::vector<std::uint64_t> keys(kN);
  std::vector<double> td(kN);
  for (std::size_t i = 0; i < kN; ++i) {
    keys[i] = i;
    td[i] = static_cast<double>(kN - i);
  }
  update(buffer, keys, td);
  std::vector<std::uint64_t> per_class(10);
  for (int call = 0; call < 400; ++call) {
    for (const std::uint64_t key : sample(buffer, 256).keys) ++per_class[key / 100'000];
  }
  std::vector<double> p(10, 0.0);
  double total = 0.0;
  for (std::size_t i = 0; i < kN; ++i) {
    const double w = std::pow(static_cast<double>(i + 1), -kAlpha);
    p[i / 100'000] += w;
    total += w;
  }
  for (double& x : p) x /= total;
  EXPECT_TRUE(testing::fits_distribution(per_class, p));
}

TEST(Rank, NewTransitionsRankFirstUntilTheNextSort) {
  Buffer buffer = make(Strategy::kRank, 1000, /*alpha=*/2.0);
  fill(buffer, 0, 500);
  std::vector<std::uint64_t> keys(500);
  std::iota(keys.begin(), keys.end(), 0);
  update(buffer, keys, std::vector<double>(500, 1.0));
  (void)sample(buffer, 8);  // sorts
  fill(buffer, 500, 1);     // key 500 carries the max priority: rank 1 of 501
  const Sampled s = sample(buffer, 1000);
  const auto newest = std::count(s.keys.begin(), s.keys.end(), 500u);
  // P(rank 1) with alpha 2 among 501 = 1 / sum k^-2 ~ 0.61.
  EXPECT_GT(newest, 500);
}

TEST(Weights, MatchTheDirectFormula) {
  for (const Strategy strategy : {Strategy::kProportional, Strategy::kRank}) {
    constexpr std::size_t kN = 64;
    constexpr double kAlpha = 0.6;
    Buffer buffer = make(strategy, kN, kAlpha, /*eps=*/0.01);
    fill(buffer, 0, kN);
    std::vector<std::uint64_t> keys(kN);
    std::iota(keys.begin(), keys.end(), 0);
    std::vector<double> td(kN);
    for (std::size_t i = 0; i < kN; ++i) td[i] = (i % 2 == 0 ? -1.0 : 1.0) * (i * 0.25);
    update(buffer, keys, td);
    std::vector<double> probability(kN);
    if (strategy == Strategy::kProportional) {
      double total = 0.0;
      for (std::size_t i = 0; i < kN; ++i) total += std::pow(std::fabs(td[i]) + 0.01, kAlpha);
      for (std::size_t i = 0; i < kN; ++i) {
        probability[i] = std::pow(std::fabs(td[i]) + 0.01, kAlpha) / total;
      }
    } else {
      double total = 0.0;
      for (std::size_t i = 0; i < kN; ++i) total += std::pow(double(i + 1), -kAlpha);
      // |td| grows with i, so key i has rank kN - i.
      for (std::size_t i = 0; i < kN; ++i)
        probability[i] = std::pow(double(kN - i), -kAlpha) / total;
    }
    const double min_p = *std::min_element(probability.begin(), probability.end());
    for (const double beta : {0.0, 0.4, 1.0}) {
      const Sampled s = sample(buffer, 128, beta);
      for (std::size_t j = 0; j < 128; ++j) {
        const double n_p = kN * probability[s.keys[j]];
        const double want = std::pow(n_p, -beta) / std::pow(kN * min_p, -beta);
        EXPECT_NEAR(s.weights[j], want, 1e-5 * want) << "beta " << beta;
        EXPECT_LE(s.weights[j], 1.0f + 1e-6f);
      }
    }
  }
}

TEST(Weights, BetaIsSettableAndOverridable) {
  Buffer buffer = make(Strategy::kProportional, 8);
  EXPECT_EQ(buffer.beta(), 0.4);
  buffer.set_beta(0.7);
  EXPECT_EQ(buffer.beta(), 0.7);
  EXPECT_THROW(buffer.set_beta(-1.0), std::invalid_argument);
  EXPECT_THROW(buffer.set_beta(std::nan("")), std::invalid_argument);
  EXPECT_EQ(buffer.beta(), 0.7);
  fill(buffer, 0, 8);
  update(buffer, {0, 1}, {10.0, 0.0});
  for (const float w : sample(buffer, 16, 0.0).weights) EXPECT_EQ(w, 1.0f);  // beta 0: all 1
}

TEST(Updates, StaleKeysAreIgnored) {
  Buffer buffer = make(Strategy::kProportional, 4, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 4);  // keys 0-3
  fill(buffer, 4, 2);  // keys 4, 5 overwrite slots 0, 1
  // Key 0 is stale: its value must not reach slot 0's new occupant (key 4).
  EXPECT_EQ(update(buffer, {0, 1, 2, 3}, {1000.0, 1000.0, 1.0, 1.0}), 2u);
  const Sampled after = sample(buffer, 4000);
  const auto stale_slot_hits = std::count_if(after.keys.begin(), after.keys.end(),
                                             [](std::uint64_t k) { return k == 4 || k == 5; });
  // Keys 4 and 5 kept the max priority at insertion (1), like keys 2 and 3: a quarter each.
  EXPECT_NEAR(static_cast<double>(stale_slot_hits) / 4000.0, 0.5, 0.05);
}

TEST(Updates, ClearedKeysAreIgnored) {
  Buffer buffer = make(Strategy::kProportional, 4);
  fill(buffer, 0, 4);
  buffer.clear();
  fill(buffer, 10, 1);  // key 4, slot 0
  EXPECT_EQ(update(buffer, {0, 1}, {5.0, 5.0}), 0u);
  EXPECT_EQ(update(buffer, {4}, {5.0}), 1u);
}

TEST(Updates, NewTransitionsGetTheCurrentMaximum) {
  Buffer buffer = make(Strategy::kProportional, 10, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 3);  // all start at 1
  update(buffer, {0, 1, 2}, {2.0, 8.0, 4.0});
  fill(buffer, 3, 1);          // key 3 gets 8
  update(buffer, {1}, {1.0});  // key 1 drops to 1; key 3 still holds 8
  fill(buffer, 4, 1);          // key 4 gets 8
  update(buffer, {3, 4}, {0.5, 0.5});
  fill(buffer, 5, 1);  // now the max in the buffer is 4 (key 2): key 5 gets 4
  // Masses: 2, 1, 4, 0.5, 0.5, 4 -> key 5 has 4/12.
  const auto seen = counts(buffer, 6, 120'000);
  const std::vector<double> p{2 / 12.0, 1 / 12.0, 4 / 12.0, 0.5 / 12.0, 0.5 / 12.0, 4 / 12.0};
  EXPECT_TRUE(testing::fits_distribution(seen, p));
}

TEST(Updates, DuplicateKeysLastOneWins) {
  Buffer buffer = make(Strategy::kProportional, 2, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 2);
  update(buffer, {0, 0, 1}, {100.0, 1.0, 1.0});
  const auto seen = counts(buffer, 2, 20'000);
  EXPECT_TRUE(testing::fits_distribution(seen, std::vector<double>{0.5, 0.5}));
}

TEST(Updates, BadInputChangesNothing) {
  Buffer buffer = make(Strategy::kProportional, 4, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 4);
  update(buffer, {0, 1, 2, 3}, {1.0, 2.0, 3.0, 4.0});
  const auto check_unchanged = [&] {
    const auto seen = counts(buffer, 4, 40'000);
    EXPECT_TRUE(testing::fits_distribution(seen, std::vector<double>{0.1, 0.2, 0.3, 0.4}));
  };
  EXPECT_THROW(update(buffer, {0, 1}, {5.0, std::nan("")}), std::invalid_argument);
  EXPECT_THROW(update(buffer, {0, 1}, {5.0, INFINITY}), std::invalid_argument);
  EXPECT_THROW(update(buffer, {0, 1}, {5.0, -INFINITY}), std::invalid_argument);
  EXPECT_THROW(update(buffer, {0, 1}, {5.0, -1.0}, PriorityKind::kPriority), std::invalid_argument);
  EXPECT_THROW(update(buffer, {0, 1}, {5.0}), std::invalid_argument);
  EXPECT_THROW(update(buffer, {0, 4}, {5.0, 5.0}), std::out_of_range);
  check_unchanged();
  try {
    update(buffer, {0, 9}, {1.0, 1.0});
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "indices[1] is 9, a key never handed out (the next add gets 4)");
  }
  // A negative TD error is fine: its magnitude counts.
  EXPECT_EQ(update(buffer, {0}, {-1.0}), 1u);
}

TEST(Updates, UniformBuffersHaveNoPriorities) {
  Buffer buffer = make(Strategy::kUniform, 4);
  fill(buffer, 0, 4);
  EXPECT_THROW(update(buffer, {0}, {1.0}), std::logic_error);
  std::vector<std::int64_t> ids(2);
  std::vector<float> weights(2);
  const std::array<FieldOut, 1> out{out_bytes(ids)};
  EXPECT_THROW(buffer.sample(2, out, {}, weights), std::invalid_argument);
}

TEST(EdgeCases, AllZeroPrioritiesSampleUniformly) {
  Buffer buffer = make(Strategy::kProportional, 5, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 5);
  update(buffer, {0, 1, 2, 3, 4}, {0.0, 0.0, 0.0, 0.0, 0.0});
  const auto seen = counts(buffer, 5, 50'000);
  EXPECT_TRUE(testing::fits_uniform(seen));
  for (const float w : sample(buffer, 10).weights) EXPECT_EQ(w, 1.0f);
}

TEST(EdgeCases, CapacityOne) {
  for (const Strategy strategy : {Strategy::kProportional, Strategy::kRank}) {
    Buffer buffer = make(strategy, 1);
    fill(buffer, 0, 3);
    const Sampled s = sample(buffer, 5);
    for (std::size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(s.keys[i], 2u);
      EXPECT_EQ(s.weights[i], 1.0f);
    }
    EXPECT_EQ(update(buffer, {1, 2}, {3.0, 4.0}), 1u);
  }
}

TEST(EdgeCases, BatchLargerThanNonZeroItems) {
  Buffer buffer = make(Strategy::kProportional, 100, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 100);
  std::vector<std::uint64_t> keys(100);
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<double> td(100, 0.0);
  td[17] = 1.0;
  td[60] = 3.0;
  update(buffer, keys, td);
  const Sampled s = sample(buffer, 512);
  for (const std::uint64_t key : s.keys) EXPECT_TRUE(key == 17 || key == 60) << key;
}

TEST(EdgeCases, TinyPriorityBesideHugeOnesNeverYieldsAnEmptySlot) {
  // Capacity 1000 but only 3 written: the other 997 slots were never written.
  Buffer buffer = make(Strategy::kProportional, 1000, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 3);
  update(buffer, {0, 1, 2}, {1e-300, 1e20, 1e20});
  for (int call = 0; call < 200; ++call) {
    for (const std::uint64_t key : sample(buffer, 256).keys) ASSERT_LT(key, 3u);
  }
}

TEST(EdgeCases, WrapAroundKeepsPrioritiesWithTheirSlots) {
  Buffer buffer = make(Strategy::kProportional, 8, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 8);
  std::vector<std::uint64_t> keys(8);
  std::iota(keys.begin(), keys.end(), 0);
  update(buffer, keys, std::vector<double>(8, 0.0));  // nothing drawable but new rows
  fill(buffer, 8, 3);  // keys 8-10 at slots 0-2 take the max (0 in the buffer -> 1)
  for (const std::uint64_t key : sample(buffer, 300).keys) ASSERT_TRUE(key >= 8 && key <= 10);
}

TEST(Concurrency, AddSampleAndUpdateFromManyThreads) {
  for (const Strategy strategy : {Strategy::kProportional, Strategy::kRank}) {
    Buffer buffer = make(strategy, 64);
    fill(buffer, 0, 64);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0};
    std::latch start(4);
    std::vector<std::thread> threads;
    threads.emplace_back([&] {  // writer: id == key
      start.arrive_and_wait();
      for (std::int64_t id = 64; id < 20'000; id += 4) fill(buffer, id, 4);
      stop = true;
    });
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&] {  // samplers that also update what they drew
        start.arrive_and_wait();
        for (int rounds = 0; !stop || rounds < 50; ++rounds) {
          const Sampled s = sample(buffer, 16);
          std::vector<double> td(16);
          for (std::size_t i = 0; i < 16; ++i) {
            if (s.ids[i] != static_cast<std::int64_t>(s.keys[i])) bad.fetch_add(1);
            if (!(s.weights[i] > 0.0f && s.weights[i] <= 1.0f)) bad.fetch_add(1);
            td[i] = static_cast<double>(s.keys[i] % 13);
          }
          (void)buffer.update_priorities(s.keys, td);
        }
      });
    }
    threads.emplace_back([&] {
      start.arrive_and_wait();
      while (!stop) buffer.set_beta(buffer.beta() > 0.5 ? 0.4 : 0.6);
    });
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0u);
  }
}

// Four priorities of 1.7e308 with alpha 1 used to sum to infinity: every weight NaN, every draw
// the same slot. A priority whose sums could overflow is rejected, changing nothing.
TEST(Updates, PrioritiesWhoseSumWouldOverflowAreRejected) {
  Buffer buffer = make(Strategy::kProportional, 4, 1.0, 0.0);
  fill(buffer, 0, 4);
  const std::vector<std::uint64_t> keys{0, 1, 2, 3};
  const std::vector<double> huge(4, 1.7e308);
  std::vector<double> before(4);
  buffer.priorities(keys, before);
  EXPECT_THROW(buffer.update_priorities(keys, huge), std::invalid_argument);
  std::vector<double> after(4);
  buffer.priorities(keys, after);
  EXPECT_EQ(before, after);
  EXPECT_NO_THROW((void)buffer.check_consistency());
  // The largest accepted priority keeps every weight finite.
  const std::vector<double> largest(4, max_stored_priority(4));
  EXPECT_EQ(buffer.update_priorities(keys, largest), 4u);
  const Sampled s = sample(buffer, 64);
  for (const float w : s.weights) EXPECT_TRUE(std::isfinite(w));
  for (const std::string_view name : {"prioritized", "rank"}) {
    Buffer ranked = make(*strategy_from_name(name), 4, 1.0, 0.0);
    fill(ranked, 0, 4);
    EXPECT_THROW(ranked.update_priorities(keys, huge), std::invalid_argument) << name;
  }
}

// priority_mass reads the sum tree's total and smallest positive priority together; what
// sharded sampling (docs/distributed.md) builds the global distribution from.
TEST(PriorityMass, TotalAndMinimumOfStoredPriorities) {
  Buffer buffer = make(Strategy::kProportional, 8, /*alpha=*/1.0, /*eps=*/0.0);
  fill(buffer, 0, 4);
  (void)update(buffer, {0, 1, 2, 3}, {1.0, 2.0, 3.0, 0.0}, PriorityKind::kPriority);
  const PriorityMass mass = buffer.priority_mass();
  EXPECT_DOUBLE_EQ(mass.total, 6.0);
  EXPECT_DOUBLE_EQ(mass.min_positive, 1.0);
  fill(buffer, 4, 8);  // overwrites every slot: each new item gets the current maximum, 3
  EXPECT_DOUBLE_EQ(buffer.priority_mass().total, 24.0);
  EXPECT_DOUBLE_EQ(buffer.priority_mass().min_positive, 3.0);
}

TEST(PriorityMass, EmptyAndOtherStrategies) {
  Buffer empty = make(Strategy::kProportional, 4);
  EXPECT_EQ(empty.priority_mass().total, 0.0);
  EXPECT_TRUE(std::isinf(empty.priority_mass().min_positive));
  Buffer rank = make(Strategy::kRank, 4);
  EXPECT_THROW((void)rank.priority_mass(), std::logic_error);
  Buffer uniform = make(Strategy::kUniform, 4);
  EXPECT_THROW((void)uniform.priority_mass(), std::logic_error);
}

}  // namespace
}  // namespace replay_buffer
