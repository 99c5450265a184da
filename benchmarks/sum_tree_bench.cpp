// Micro benchmarks of the prioritized-replay data structures: a stratified batch of 32 and a
// set_batch of 32 on a sum tree, and a stratified batch of 32 ranks, at 10^3 .. 10^7 items.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "replay_buffer/random.hpp"
#include "replay_buffer/rank_table.hpp"
#include "replay_buffer/sum_tree.hpp"

namespace replay_buffer {
namespace {

constexpr std::size_t kBatch = 32;
// Distinct batches of leaves cycled through by the update benchmark, so it does not keep hitting
// lines the previous iteration left in cache.
constexpr std::size_t kUpdateBatches = 4096;

struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
};

// A tree of `capacity` leaves with priorities uniform in (0, 1].
struct Tree {
  explicit Tree(std::size_t capacity)
      : bytes(static_cast<std::byte*>(
            ::operator new[](SumTree::bytes_for(capacity), std::align_val_t{64}))),
        tree({bytes.get(), SumTree::bytes_for(capacity)}, capacity) {
    tree.reset();
    Xoshiro256pp rng(capacity);
    for (std::size_t i = 0; i < capacity; ++i) tree.set(i, 1.0 - rng.uniform());
  }
  std::unique_ptr<std::byte[], AlignedDelete> bytes;
  SumTree tree;
};

void BM_SumTreeSampleStratified(benchmark::State& state) {
  const Tree t(static_cast<std::size_t>(state.range(0)));
  Xoshiro256pp rng(42);
  std::vector<std::size_t> leaves(kBatch);
  for (auto _ : state) {
    t.tree.sample_stratified(kBatch, rng, leaves);
    benchmark::DoNotOptimize(leaves.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
}

void BM_SumTreeSetBatch(benchmark::State& state) {
  const auto capacity = static_cast<std::size_t>(state.range(0));
  Tree t(capacity);
  Xoshiro256pp rng(7);
  std::vector<std::size_t> leaves(kUpdateBatches * kBatch);
  std::vector<double> priorities(leaves.size());
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    leaves[i] = rng.below(capacity);
    priorities[i] = 1.0 - rng.uniform();
  }
  std::size_t next = 0;
  for (auto _ : state) {
    t.tree.set_batch(std::span(leaves).subspan(next * kBatch, kBatch),
                     std::span(priorities).subspan(next * kBatch, kBatch));
    next = (next + 1) % kUpdateBatches;
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
}

void BM_RankTableSample(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const RankTable table(n, 0.7);
  Xoshiro256pp rng(42);
  std::vector<std::size_t> ranks(kBatch);
  for (auto _ : state) {
    table.sample(n, kBatch, rng, ranks);
    benchmark::DoNotOptimize(ranks.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
}

BENCHMARK(BM_SumTreeSampleStratified)->RangeMultiplier(10)->Range(1'000, 10'000'000);
BENCHMARK(BM_SumTreeSetBatch)->RangeMultiplier(10)->Range(1'000, 10'000'000);
BENCHMARK(BM_RankTableSample)->RangeMultiplier(10)->Range(1'000, 10'000'000);

}  // namespace
}  // namespace replay_buffer
