#include "replay_buffer/sum_tree.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <numeric>
#include <ostream>
#include <stdexcept>
#include <vector>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/random.hpp"

namespace replay_buffer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Zeroed, 64-byte aligned storage for one tree, standing in for a part of a region.
class TreeStorage {
 public:
  explicit TreeStorage(std::size_t capacity)
      : size_(SumTree::bytes_for(capacity)),
        bytes_(static_cast<std::byte*>(::operator new[](size_, std::align_val_t{64}))) {
    std::memset(bytes_.get(), 0, size_);
  }
  [[nodiscard]] std::span<std::byte> bytes() const { return {bytes_.get(), size_}; }
  [[nodiscard]] std::vector<std::byte> snapshot() const {
    return {bytes_.get(), bytes_.get() + size_};
  }

 private:
  struct AlignedDelete {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::size_t size_;
  std::unique_ptr<std::byte[], AlignedDelete> bytes_;
};

struct Fixture {
  explicit Fixture(std::size_t capacity) : storage(capacity), tree(storage.bytes(), capacity) {}
  void fill(const std::vector<double>& priorities) {
    for (std::size_t i = 0; i < priorities.size(); ++i) tree.set(i, priorities[i]);
  }
  TreeStorage storage;
  SumTree tree;
};

// The leaf a plain left-to-right scan finds for u: exact when the priorities are small integers.
std::size_t linear_find(const std::vector<double>& priorities, double u) {
  double prefix = 0.0;
  for (std::size_t i = 0; i < priorities.size(); ++i) {
    prefix += priorities[i];
    if (u < prefix) return i;
  }
  return priorities.size();
}

// Upper 1e-6 quantile of chi-square with df degrees of freedom (Wilson-Hilferty).
double chi_square_critical(double df) {
  constexpr double kZ = 4.753424;  // standard normal quantile of 1 - 1e-6
  const double c = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - c + kZ * std::sqrt(c), 3.0);
}

struct ChiSquare {
  double statistic = 0.0;
  double df = 0.0;
  [[nodiscard]] bool passes() const { return statistic < chi_square_critical(df); }
};

// Pearson's statistic over cells with expectation >= 5; the rest are pooled into one cell. A cell
// expected to be empty must be empty (ASSERTed by the caller through `impossible_hits`).
ChiSquare chi_square(const std::vector<double>& observed, const std::vector<double>& expected,
                     std::size_t* impossible_hits = nullptr) {
  ChiSquare result;
  double pooled_observed = 0.0;
  double pooled_expected = 0.0;
  std::size_t cells = 0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    if (expected[i] == 0.0) {
      if (impossible_hits != nullptr && observed[i] != 0.0) ++*impossible_hits;
      continue;
    }
    if (expected[i] < 5.0) {
      pooled_observed += observed[i];
      pooled_expected += expected[i];
      continue;
    }
    const double d = observed[i] - expected[i];
    result.statistic += d * d / expected[i];
    ++cells;
  }
  if (pooled_expected > 0.0) {
    const double d = pooled_observed - pooled_expected;
    result.statistic += d * d / pooled_expected;
    ++cells;
  }
  result.df = static_cast<double>(cells - 1);
  return result;
}

// Leaf counts of `batches` stratified batches of `batch`.
std::vector<double> sample_counts(const SumTree& tree, std::size_t batches, std::size_t batch,
                                  std::uint64_t seed) {
  std::vector<double> counts(tree.capacity(), 0.0);
  std::vector<std::size_t> leaves(batch);
  Xoshiro256pp rng(seed);
  for (std::size_t b = 0; b < batches; ++b) {
    tree.sample_stratified(batch, rng, leaves);
    for (const std::size_t leaf : leaves) counts.at(leaf) += 1.0;
  }
  return counts;
}

std::vector<double> expected_counts(const std::vector<double>& priorities, double draws) {
  const double total = std::accumulate(priorities.begin(), priorities.end(), 0.0);
  std::vector<double> expected(priorities.size());
  for (std::size_t i = 0; i < priorities.size(); ++i) expected[i] = draws * priorities[i] / total;
  return expected;
}

enum class Shape { kUniform, kLinear, kPareto, kMostlyZero };

std::vector<double> make_priorities(Shape shape, std::size_t n, std::uint64_t seed) {
  Xoshiro256pp rng(seed);
  std::vector<double> p(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (shape) {
      case Shape::kUniform:
        p[i] = 1.0;
        break;
      case Shape::kLinear:
        p[i] = static_cast<double>(i + 1);
        break;
      case Shape::kPareto:  // tail index 1.1: a few priorities dwarf the rest
        p[i] = std::pow(1.0 - rng.uniform(), -1.0 / 1.1);
        break;
      case Shape::kMostlyZero:
        p[i] = rng.below(10) == 0 ? 0.5 + rng.uniform() : 0.0;
        break;
    }
  }
  if (shape == Shape::kMostlyZero) p[n / 2] = 1.0;  // never all zero
  return p;
}

TEST(SumTreeTest, BytesForIsAlignedAndSmall) {
  for (const std::size_t capacity : {1, 7, 8, 9, 64, 65, 1000, 1'000'000}) {
    const std::size_t bytes = SumTree::bytes_for(capacity);
    EXPECT_EQ(bytes % 64, 0u) << capacity;
    EXPECT_GE(bytes, capacity * sizeof(double)) << capacity;
  }
  // About 1.43 doubles per leaf: far below 10 % of a 56 KB Atari transition.
  EXPECT_LT(SumTree::bytes_for(1'000'000), 12u * 1'000'000u);
  EXPECT_THROW((void)SumTree::bytes_for(0), CapacityError);
  EXPECT_THROW((void)SumTree::bytes_for(std::numeric_limits<std::size_t>::max()), CapacityError);
}

TEST(SumTreeTest, RejectsShortOrMisalignedStorage) {
  TreeStorage storage(100);
  EXPECT_THROW(SumTree(storage.bytes().first(SumTree::bytes_for(100) - 8), 100),
               std::invalid_argument);
  TreeStorage bigger(1000);
  EXPECT_THROW(SumTree(bigger.bytes().subspan(8), 100), std::invalid_argument);
}

TEST(SumTreeTest, FreshStorageIsAnEmptyTree) {
  Fixture f(100);
  EXPECT_EQ(f.tree.total(), 0.0);
  EXPECT_EQ(f.tree.min_positive(), kInf);
  EXPECT_EQ(f.tree.get(99), 0.0);
  EXPECT_THROW((void)f.tree.find_prefix(0.0), EmptyBufferError);
  std::vector<std::size_t> out(4);
  Xoshiro256pp rng(1);
  EXPECT_THROW(f.tree.sample_stratified(4, rng, out), EmptyBufferError);
}

TEST(SumTreeTest, SetAndGetValidate) {
  Fixture f(10);
  f.tree.set(3, 2.5);
  EXPECT_EQ(f.tree.get(3), 2.5);
  EXPECT_EQ(f.tree.total(), 2.5);
  const auto before = f.storage.snapshot();
  EXPECT_THROW(f.tree.set(10, 1.0), std::out_of_range);
  EXPECT_THROW(f.tree.set(0, -1.0), std::invalid_argument);
  EXPECT_THROW(f.tree.set(0, std::nan("")), std::invalid_argument);
  EXPECT_THROW(f.tree.set(0, kInf), std::invalid_argument);
  EXPECT_THROW((void)f.tree.get(10), std::out_of_range);
  EXPECT_EQ(f.storage.snapshot(), before);
}

TEST(SumTreeTest, FindPrefixMatchesLinearScan) {
  for (const std::size_t capacity : {1, 2, 7, 8, 9, 63, 64, 65, 512, 513, 1000, 4097}) {
    Fixture f(capacity);
    Xoshiro256pp rng(capacity);
    // Small integers (a third of them 0) keep every sum exact, so the two must agree even at
    // the boundaries.
    std::vector<double> p(capacity);
    for (auto& x : p) x = rng.below(3) == 0 ? 0.0 : static_cast<double>(rng.below(10));
    p[rng.below(capacity)] = 1.0;
    f.fill(p);
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    ASSERT_EQ(f.tree.total(), total);
    double prefix = 0.0;
    for (std::size_t i = 0; i < capacity; ++i) {
      if (prefix < total) {
        ASSERT_EQ(f.tree.find_prefix(prefix), linear_find(p, prefix)) << capacity << " " << i;
      }
      prefix += p[i];
    }
    for (int trial = 0; trial < 2000; ++trial) {
      const double u = rng.uniform() * total;
      const std::size_t leaf = f.tree.find_prefix(u);
      ASSERT_EQ(leaf, linear_find(p, u)) << capacity << " u=" << u;
      ASSERT_GT(p[leaf], 0.0);
    }
  }
}

TEST(SumTreeTest, SetBatchMatchesSetAndLastDuplicateWins) {
  Fixture batched(1000);
  Fixture single(1000);
  Xoshiro256pp rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> leaves(32);
    std::vector<double> priorities(32);
    for (std::size_t i = 0; i < 32; ++i) {
      leaves[i] = rng.below(round % 2 == 0 ? 1000 : 40);  // odd rounds: many duplicates
      priorities[i] = rng.below(4) == 0 ? 0.0 : rng.uniform();
    }
    batched.tree.set_batch(leaves, priorities);
    for (std::size_t i = 0; i < 32; ++i) single.tree.set(leaves[i], priorities[i]);
    ASSERT_EQ(batched.storage.snapshot(), single.storage.snapshot()) << round;
  }
  const std::vector<std::size_t> same = {5, 5, 5};
  const std::vector<double> values = {1.0, 2.0, 3.0};
  batched.tree.set_batch(same, values);
  EXPECT_EQ(batched.tree.get(5), 3.0);
}

TEST(SumTreeTest, SetBatchValidatesBeforeChangingAnything) {
  Fixture f(100);
  f.tree.set(1, 1.0);
  const auto before = f.storage.snapshot();
  const std::vector<std::size_t> leaves = {2, 3, 100};
  const std::vector<double> priorities = {1.0, 1.0, 1.0};
  EXPECT_THROW(f.tree.set_batch(leaves, priorities), std::out_of_range);
  const std::vector<std::size_t> good_leaves = {2, 3, 4};
  const std::vector<double> bad_priorities = {1.0, -2.0, 1.0};
  EXPECT_THROW(f.tree.set_batch(good_leaves, bad_priorities), std::invalid_argument);
  EXPECT_THROW(f.tree.set_batch(good_leaves, std::span(priorities).first(2)),
               std::invalid_argument);
  EXPECT_EQ(f.storage.snapshot(), before);
}

TEST(SumTreeTest, MinPositiveFollowsUpdates) {
  Fixture f(1000);
  f.tree.set(10, 3.0);
  f.tree.set(700, 2.0);
  f.tree.set(999, 5.0);
  EXPECT_EQ(f.tree.min_positive(), 2.0);
  f.tree.set(700, 0.0);  // the minimum leaves: the next smallest takes over
  EXPECT_EQ(f.tree.min_positive(), 3.0);
  f.tree.set(10, 9.0);  // the minimum grows past another leaf
  EXPECT_EQ(f.tree.min_positive(), 5.0);
  f.tree.set(0, 1e-300);
  EXPECT_EQ(f.tree.min_positive(), 1e-300);
  for (const std::size_t leaf : {0, 10, 999}) f.tree.set(leaf, 0.0);
  EXPECT_EQ(f.tree.min_positive(), kInf);

  std::vector<double> p(1000, 0.0);
  Xoshiro256pp rng(3);
  for (int step = 0; step < 20000; ++step) {
    const std::size_t leaf = rng.below(1000);
    p[leaf] = rng.below(3) == 0 ? 0.0 : rng.uniform() * 100.0;
    f.tree.set(leaf, p[leaf]);
    double expected = kInf;
    for (const double x : p) {
      if (x > 0.0) expected = std::min(expected, x);
    }
    ASSERT_EQ(f.tree.min_positive(), expected) << step;
  }
}

TEST(SumTreeTest, MaxFollowsUpdatesInBothDirections) {
  Fixture f(1000);
  EXPECT_EQ(f.tree.max(), 0.0);
  std::vector<double> p(1000, 0.0);
  Xoshiro256pp rng(4);
  for (int step = 0; step < 20000; ++step) {
    const std::size_t leaf = rng.below(1000);
    p[leaf] = rng.below(3) == 0 ? 0.0 : rng.uniform() * 100.0;
    if (step % 2 == 0) {
      f.tree.set(leaf, p[leaf]);
    } else {
      const std::vector<std::size_t> leaves = {leaf};
      const std::vector<double> priorities = {p[leaf]};
      f.tree.set_batch(leaves, priorities);
    }
    ASSERT_EQ(f.tree.max(), *std::max_element(p.begin(), p.end())) << step;
  }
}

TEST(SumTreeTest, NegativeZeroIsZero) {
  Fixture f(20);
  f.tree.set(3, -0.0);
  const std::vector<std::size_t> leaves = {4};
  const std::vector<double> priorities = {-0.0};
  f.tree.set_batch(leaves, priorities);
  EXPECT_FALSE(std::signbit(f.tree.get(3)));
  EXPECT_FALSE(std::signbit(f.tree.get(4)));
  EXPECT_EQ(f.tree.min_positive(), kInf);
  f.tree.set(5, 2.0);
  EXPECT_EQ(f.tree.min_positive(), 2.0);
}

TEST(SumTreeTest, ResetZeroesEverything) {
  Fixture f(65);
  f.fill(make_priorities(Shape::kPareto, 65, 1));
  f.tree.reset();
  EXPECT_EQ(f.tree.total(), 0.0);
  EXPECT_EQ(f.tree.min_positive(), kInf);
  for (const std::byte b : f.storage.snapshot()) ASSERT_EQ(b, std::byte{0});
}

TEST(SumTreeTest, SecondViewOfTheSameStorageSeesTheTree) {
  Fixture f(300);
  f.fill(make_priorities(Shape::kLinear, 300, 1));
  const SumTree other(f.storage.bytes(), 300);
  EXPECT_EQ(other.total(), f.tree.total());
  EXPECT_EQ(other.min_positive(), 1.0);
  EXPECT_EQ(other.find_prefix(0.5), 0u);
}

TEST(SumTreeTest, ManyUpdatesDoNotDrift) {
  constexpr std::size_t kCapacity = 100'000;
  Fixture f(kCapacity);
  std::vector<double> p(kCapacity, 0.0);
  Xoshiro256pp rng(11);
  std::vector<std::size_t> leaves(32);
  std::vector<double> priorities(32);
  for (int step = 0; step < 500'000; ++step) {
    const std::size_t leaf = rng.below(kCapacity);
    p[leaf] = std::ldexp(rng.uniform(), static_cast<int>(rng.below(40)) - 20);
    f.tree.set(leaf, p[leaf]);
  }
  for (int step = 0; step < 500'000 / 32; ++step) {
    for (std::size_t i = 0; i < 32; ++i) {
      leaves[i] = rng.below(kCapacity);
      priorities[i] = p[leaves[i]] = rng.uniform();
    }
    f.tree.set_batch(leaves, priorities);
  }
  // Incremental updates leave every node exactly as a rebuild from the leaves makes it...
  const auto incremental = f.storage.snapshot();
  f.tree.rebuild();
  EXPECT_EQ(f.storage.snapshot(), incremental);
  // ...and the total agrees with an independent, more precise sum.
  long double exact = 0.0L;
  for (const double x : p) exact += x;
  EXPECT_NEAR(f.tree.total(), static_cast<double>(exact), 1e-12 * static_cast<double>(exact));
}

TEST(SumTreeTest, RebuildRepairsCorruptParents) {
  constexpr std::size_t kCapacity = 5001;  // padding on every level
  Fixture f(kCapacity);
  const auto p = make_priorities(Shape::kPareto, kCapacity, 5);
  f.fill(p);
  const auto good = f.storage.snapshot();
  // Scribble over everything but the priorities (found by their bytes), as a writer killed
  // mid-update might leave it.
  const auto bytes = f.storage.bytes();
  const std::size_t leaf_bytes = kCapacity * sizeof(double);
  std::size_t leaf_offset = 0;
  while (std::memcmp(bytes.data() + leaf_offset, p.data(), leaf_bytes) != 0) leaf_offset += 64;
  Xoshiro256pp rng(5);
  for (std::size_t i = 0; i < bytes.size(); i += sizeof(double)) {
    if (i >= leaf_offset && i < leaf_offset + leaf_bytes) continue;
    const double junk = rng.uniform() * 1e6;
    std::memcpy(bytes.data() + i, &junk, sizeof(double));
  }
  f.tree.rebuild();
  EXPECT_EQ(f.storage.snapshot(), good);
}

struct ChiSquareCase {
  Shape shape;
  std::size_t capacity;
  std::size_t batches;
};

void PrintTo(const ChiSquareCase& c, std::ostream* os) {
  static constexpr const char* kNames[] = {"uniform", "linear", "pareto", "mostly-zero"};
  *os << kNames[static_cast<int>(c.shape)] << " x" << c.capacity << ", " << c.batches << " batches";
}

class StratifiedSampleTest : public ::testing::TestWithParam<ChiSquareCase> {};

TEST_P(StratifiedSampleTest, FrequenciesMatchPriorities) {
  const auto [shape, capacity, batches] = GetParam();
  constexpr std::size_t kBatch = 32;
  Fixture f(capacity);
  const auto p = make_priorities(shape, capacity, capacity + 17);
  f.fill(p);
  const auto observed = sample_counts(f.tree, batches, kBatch, 99);
  const auto expected = expected_counts(p, static_cast<double>(batches * kBatch));
  std::size_t impossible = 0;
  const ChiSquare result = chi_square(observed, expected, &impossible);
  EXPECT_EQ(impossible, 0u) << "a zero-priority leaf was sampled";
  EXPECT_TRUE(result.passes()) << "chi2=" << result.statistic << " df=" << result.df
                               << " critical=" << chi_square_critical(result.df);
}

INSTANTIATE_TEST_SUITE_P(Shapes, StratifiedSampleTest,
                         ::testing::Values(ChiSquareCase{Shape::kUniform, 2, 100},
                                           ChiSquareCase{Shape::kLinear, 3, 500},
                                           ChiSquareCase{Shape::kUniform, 9, 2000},
                                           ChiSquareCase{Shape::kLinear, 65, 2000},
                                           ChiSquareCase{Shape::kUniform, 1000, 5000},
                                           ChiSquareCase{Shape::kLinear, 1000, 5000},
                                           ChiSquareCase{Shape::kPareto, 1000, 20000},
                                           ChiSquareCase{Shape::kMostlyZero, 1000, 5000},
                                           ChiSquareCase{Shape::kPareto, 4097, 20000},
                                           ChiSquareCase{Shape::kMostlyZero, 4097, 5000}));

TEST(SumTreeTest, ChiSquareRejectsTheWrongDistribution) {
  // Guards the test itself: linear priorities must not pass as uniform.
  Fixture f(1000);
  const auto p = make_priorities(Shape::kLinear, 1000, 1);
  f.fill(p);
  const auto observed = sample_counts(f.tree, 5000, 32, 99);
  const auto wrong = expected_counts(make_priorities(Shape::kUniform, 1000, 1), 5000.0 * 32);
  EXPECT_FALSE(chi_square(observed, wrong).passes());
}

TEST(SumTreeTest, MillionLeavesMatchPrioritiesAtEveryLevel) {
  constexpr std::size_t kCapacity = 1'000'000;
  constexpr std::size_t kBins = 1000;
  constexpr std::size_t kBatch = 32;
  constexpr std::size_t kBatches = 62'500;  // 2e6 draws, 2000 per bin
  for (const Shape shape : {Shape::kPareto, Shape::kMostlyZero}) {
    Fixture f(kCapacity);
    const auto p = make_priorities(shape, kCapacity, 23);
    std::vector<std::size_t> all(kCapacity);
    std::iota(all.begin(), all.end(), 0);
    f.tree.set_batch(all, p);
    const auto counts = sample_counts(f.tree, kBatches, kBatch, 4);
    const auto expected = expected_counts(p, static_cast<double>(kBatches * kBatch));
    // Contiguous bins test the upper levels, bins by residue the lowest ones.
    std::vector<double> by_block(kBins), by_residue(kBins), expected_block(kBins),
        expected_residue(kBins);
    std::size_t impossible = 0;
    for (std::size_t i = 0; i < kCapacity; ++i) {
      if (p[i] == 0.0 && counts[i] != 0.0) ++impossible;
      by_block[i / (kCapacity / kBins)] += counts[i];
      expected_block[i / (kCapacity / kBins)] += expected[i];
      by_residue[i % kBins] += counts[i];
      expected_residue[i % kBins] += expected[i];
    }
    EXPECT_EQ(impossible, 0u);
    const ChiSquare block = chi_square(by_block, expected_block);
    const ChiSquare residue = chi_square(by_residue, expected_residue);
    EXPECT_TRUE(block.passes()) << block.statistic << " df " << block.df;
    EXPECT_TRUE(residue.passes()) << residue.statistic << " df " << residue.df;
  }
}

TEST(SumTreeTest, RoundingTrapNeverYieldsAZeroLeaf) {
  for (const std::size_t capacity : {4, 9, 1000, 100'000}) {
    Fixture f(capacity);
    f.tree.set(0, 1e-300);
    f.tree.set(1, 1e20);
    const double total = f.tree.total();
    for (const double u : {std::nextafter(total, 0.0), total, std::nextafter(total, kInf), 1e300,
                           kInf, -1.0, std::nan(""), 0.0, 1e-300, std::nextafter(1e-300, 0.0)}) {
      const std::size_t leaf = f.tree.find_prefix(u);
      ASSERT_LT(leaf, 2u) << capacity << " u=" << u;
    }
    EXPECT_EQ(f.tree.find_prefix(std::nextafter(total, 0.0)), 1u);
    EXPECT_EQ(f.tree.find_prefix(0.0), 0u);
    // The last leaf positive, everything after it zero up to the capacity's padding.
    f.tree.set(capacity - 1, 1e-300);
    EXPECT_EQ(f.tree.find_prefix(f.tree.total()), capacity - 1);
    EXPECT_EQ(f.tree.find_prefix(1e300), capacity - 1);
  }
}

TEST(SumTreeTest, WildDynamicRangeNeverYieldsAZeroLeaf) {
  constexpr std::size_t kCapacity = 4096;
  Fixture f(kCapacity);
  std::vector<double> p(kCapacity, 0.0);
  Xoshiro256pp rng(31);
  for (std::size_t i = 0; i < kCapacity; ++i) {
    if (rng.below(4) == 0) {
      // Exponents from -1000 (subnormal) to 300: neighbours differ by up to 10^400.
      p[i] = std::ldexp(0.5 + rng.uniform(), static_cast<int>(rng.below(1300)) - 1000);
      f.tree.set(i, p[i]);
    }
  }
  const double total = f.tree.total();
  std::vector<std::size_t> out(64);
  for (int batch = 0; batch < 20000; ++batch) {
    f.tree.sample_stratified(64, rng, out);
    for (const std::size_t leaf : out) {
      ASSERT_LT(leaf, kCapacity);
      ASSERT_GT(p[leaf], 0.0);
    }
  }
  // Points at and around every prefix boundary, where rounding bites hardest.
  double prefix = 0.0;
  for (std::size_t i = 0; i < kCapacity; ++i) {
    prefix += p[i];
    for (const double u : {std::nextafter(prefix, 0.0), prefix, std::nextafter(prefix, kInf)}) {
      const std::size_t leaf = f.tree.find_prefix(u);
      ASSERT_LT(leaf, kCapacity);
      ASSERT_GT(p[leaf], 0.0) << "u=" << u << " total=" << total;
    }
  }
}

TEST(SumTreeTest, BatchLargerThanPositiveLeaves) {
  Fixture f(100);
  f.tree.set(3, 1.0);
  f.tree.set(50, 1e-12);
  f.tree.set(99, 7.0);
  std::vector<std::size_t> out(64);
  Xoshiro256pp rng(2);
  for (int round = 0; round < 100; ++round) {
    f.tree.sample_stratified(64, rng, out);
    for (const std::size_t leaf : out) ASSERT_TRUE(leaf == 3 || leaf == 50 || leaf == 99) << leaf;
  }
  Fixture one(1);
  one.tree.set(0, 2.0);
  one.tree.sample_stratified(64, rng, out);
  for (const std::size_t leaf : out) EXPECT_EQ(leaf, 0u);
}

TEST(SumTreeTest, SampleIsStratifiedAndDeterministic) {
  Fixture f(1000);
  f.fill(make_priorities(Shape::kUniform, 1000, 1));
  std::vector<std::size_t> a(100), b(100);
  Xoshiro256pp rng_a(8), rng_b(8);
  f.tree.sample_stratified(100, rng_a, a);
  f.tree.sample_stratified(100, rng_b, b);
  EXPECT_EQ(a, b);
  // Equal priorities: segment j covers leaves [10 j, 10 j + 10).
  for (std::size_t j = 0; j < 100; ++j) EXPECT_EQ(a[j] / 10, j);
  EXPECT_THROW(f.tree.sample_stratified(99, rng_a, a), std::invalid_argument);
  f.tree.sample_stratified(0, rng_a, std::span<std::size_t>());
}

}  // namespace
}  // namespace replay_buffer
