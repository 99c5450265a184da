// The C++ API on the specification's workloads: a CartPole-sized transition (obs float32[4]) at
// capacity 1M and an Atari-sized one (obs uint8[84, 84, 4]) at capacity 50k.
//   build/release/benchmarks/buffer_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <vector>

#include "replay_buffer/buffer.hpp"

namespace rb = replay_buffer;

namespace {

struct Workload {
  std::vector<std::size_t> obs_shape;
  rb::DType obs_dtype;
  std::size_t capacity;
};

const Workload kCartPole{{4}, rb::DType::kFloat32, 1'000'000};
const Workload kAtari{{84, 84, 4}, rb::DType::kUInt8, 50'000};

rb::Schema schema_for(const Workload& w) {
  return rb::Schema({{"obs", w.obs_dtype, w.obs_shape},
                     {"action", rb::DType::kInt64, {}},
                     {"reward", rb::DType::kFloat32, {}},
                     {"next_obs", w.obs_dtype, w.obs_shape},
                     {"done", rb::DType::kBool, {}}});
}

// `rows` transitions' worth of input bytes, one vector per field.
struct Columns {
  Columns(const rb::Schema& schema, std::size_t rows) {
    for (const rb::Field& f : schema.fields())
      data.emplace_back(rows * f.row_bytes(), std::byte{1});
    for (const auto& d : data) views.emplace_back(d);
  }
  std::vector<std::vector<std::byte>> data;
  std::vector<rb::FieldBytes> views;
};

struct Outputs {
  Outputs(const rb::Schema& schema, std::size_t rows) : keys(rows) {
    for (const rb::Field& f : schema.fields()) data.emplace_back(rows * f.row_bytes());
    for (auto& d : data) views.emplace_back(d);
  }
  std::vector<std::vector<std::byte>> data;
  std::vector<rb::FieldOut> views;
  std::vector<std::uint64_t> keys;
};

rb::Buffer full_buffer(const Workload& w) {
  rb::Buffer buffer(schema_for(w), {.capacity = w.capacity, .seed = 1});
  Columns chunk(buffer.schema(), 1000);
  for (std::size_t added = 0; added < w.capacity; added += 1000)
    (void)buffer.add_batch(chunk.views, 1000);
  return buffer;
}

void add_one(benchmark::State& state, const Workload& w) {
  rb::Buffer buffer = full_buffer(w);
  Columns row(buffer.schema(), 1);
  for (auto _ : state) benchmark::DoNotOptimize(buffer.add(row.views));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * std::int64_t(buffer.schema().transition_bytes()));
}

void add_batch(benchmark::State& state, const Workload& w) {
  rb::Buffer buffer = full_buffer(w);
  const auto rows = static_cast<std::size_t>(state.range(0));
  Columns batch(buffer.schema(), rows);
  for (auto _ : state) benchmark::DoNotOptimize(buffer.add_batch(batch.views, rows));
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(state.iterations() * state.range(0) *
                          std::int64_t(buffer.schema().transition_bytes()));
}

void sample(benchmark::State& state, const Workload& w) {
  rb::Buffer buffer = full_buffer(w);
  const auto rows = static_cast<std::size_t>(state.range(0));
  Outputs out(buffer.schema(), rows);
  for (auto _ : state) {
    buffer.sample(rows, out.views, out.keys);
    benchmark::DoNotOptimize(out.keys.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

BENCHMARK_CAPTURE(add_one, cartpole, kCartPole);
BENCHMARK_CAPTURE(add_batch, cartpole, kCartPole)->Arg(256);
BENCHMARK_CAPTURE(sample, cartpole, kCartPole)->Arg(32)->Arg(256);
BENCHMARK_CAPTURE(add_one, atari, kAtari);
BENCHMARK_CAPTURE(add_batch, atari, kAtari)->Arg(32);
BENCHMARK_CAPTURE(sample, atari, kAtari)->Arg(32)->Arg(256);

}  // namespace
