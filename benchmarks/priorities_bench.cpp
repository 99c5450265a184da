// Prioritized replay through Buffer: a sample of 32 followed by update_priorities of those 32
// (one learning step), at capacities 10^3 ... 10^7, for a CartPole-sized transition.
//   build/release/benchmarks/priorities_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/random.hpp"

namespace rb = replay_buffer;

namespace {

rb::Schema cartpole() {
  return rb::Schema({{"obs", rb::DType::kFloat32, {4}},
                     {"action", rb::DType::kInt64, {}},
                     {"reward", rb::DType::kFloat32, {}},
                     {"next_obs", rb::DType::kFloat32, {4}},
                     {"done", rb::DType::kBool, {}}});
}

struct Fixture {
  Fixture(rb::Strategy strategy, std::size_t capacity)
      : buffer(cartpole(), {.capacity = capacity, .seed = 1, .strategy = strategy}) {
    constexpr std::size_t kChunk = 4096;
    std::vector<std::vector<std::byte>> data;
    std::vector<rb::FieldBytes> views;
    for (const rb::Field& f : buffer.schema().fields()) data.emplace_back(kChunk * f.row_bytes());
    for (const auto& d : data) views.emplace_back(d);
    for (std::size_t added = 0; added < capacity; added += kChunk) {
      const std::size_t n = std::min(kChunk, capacity - added);
      std::vector<rb::FieldBytes> part;
      for (std::size_t f = 0; f < views.size(); ++f) {
        part.push_back(views[f].first(n * buffer.schema()[f].row_bytes()));
      }
      (void)buffer.add_batch(part, n);
    }
    // Spread the priorities, as after some training.
    std::vector<std::uint64_t> keys(capacity);
    std::vector<double> td(capacity);
    rb::Xoshiro256pp rng(3);
    for (std::size_t i = 0; i < capacity; ++i) {
      keys[i] = i;
      td[i] = rng.uniform() * 10.0;
    }
    (void)buffer.update_priorities(keys, td);
    // The first draw after that sorts a rank order from scratch: not what a training step pays.
    std::vector<std::uint64_t> drawn(1);
    buffer.sample(1, std::vector<rb::FieldOut>(buffer.schema().size()), drawn);
  }

  rb::Buffer buffer;
};

struct Outputs {
  explicit Outputs(const rb::Schema& schema, std::size_t rows) : keys(rows), weights(rows) {
    for (const rb::Field& f : schema.fields()) data.emplace_back(rows * f.row_bytes());
    for (auto& d : data) views.emplace_back(d);
  }
  std::vector<std::vector<std::byte>> data;
  std::vector<rb::FieldOut> views;
  std::vector<std::uint64_t> keys;
  std::vector<float> weights;
};

void sample_and_update(benchmark::State& state, rb::Strategy strategy) {
  Fixture fixture(strategy, static_cast<std::size_t>(state.range(0)));
  Outputs out(fixture.buffer.schema(), 32);
  std::vector<double> td(32);
  rb::Xoshiro256pp rng(5);
  for (auto _ : state) {
    fixture.buffer.sample(32, out.views, out.keys, out.weights);
    for (double& x : td) x = rng.uniform() * 10.0;
    benchmark::DoNotOptimize(fixture.buffer.update_priorities(out.keys, td));
  }
  state.SetItemsProcessed(state.iterations() * 32);
}

void sample_only(benchmark::State& state, rb::Strategy strategy) {
  Fixture fixture(strategy, static_cast<std::size_t>(state.range(0)));
  Outputs out(fixture.buffer.schema(), 32);
  for (auto _ : state) {
    fixture.buffer.sample(32, out.views, out.keys, out.weights);
    benchmark::DoNotOptimize(out.weights.data());
  }
  state.SetItemsProcessed(state.iterations() * 32);
}

void update_only(benchmark::State& state, rb::Strategy strategy) {
  Fixture fixture(strategy, static_cast<std::size_t>(state.range(0)));
  Outputs out(fixture.buffer.schema(), 32);
  std::vector<double> td(32);
  rb::Xoshiro256pp rng(5);
  for (auto _ : state) {
    state.PauseTiming();
    fixture.buffer.sample(32, out.views, out.keys, out.weights);
    for (double& x : td) x = rng.uniform() * 10.0;
    state.ResumeTiming();
    benchmark::DoNotOptimize(fixture.buffer.update_priorities(out.keys, td));
  }
  state.SetItemsProcessed(state.iterations() * 32);
}

void capacities(benchmark::internal::Benchmark* b) {
  for (const std::int64_t capacity : {1'000, 10'000, 100'000, 1'000'000, 10'000'000}) {
    b->Arg(capacity);
  }
}

BENCHMARK_CAPTURE(sample_and_update, proportional, rb::Strategy::kProportional)->Apply(capacities);
BENCHMARK_CAPTURE(sample_only, proportional, rb::Strategy::kProportional)->Apply(capacities);
BENCHMARK_CAPTURE(update_only, proportional, rb::Strategy::kProportional)->Apply(capacities);
BENCHMARK_CAPTURE(sample_and_update, rank, rb::Strategy::kRank)->Apply(capacities);

}  // namespace
