// Many threads adding and sampling at once never see a torn transition. The rows are small and the
// ring is tiny so that writers lap it constantly and readers hit slots mid-write all the time.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::out_bytes;

constexpr std::size_t kObs = 24;  // several cache lines, so a torn copy is likely if unprotected

Schema schema() {
  return Schema(
      {{"id", DType::kInt64, {}}, {"obs", DType::kInt64, {kObs}}, {"tag", DType::kUInt8, {}}});
}

struct Rows {
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> obs;
  std::vector<std::uint8_t> tags;

  explicit Rows(std::size_t n) : ids(n), obs(n * kObs), tags(n) {}

  void fill(std::int64_t first_id) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::int64_t id = first_id + static_cast<std::int64_t>(i);
      ids[i] = id;
      for (std::size_t j = 0; j < kObs; ++j) obs[i * kObs + j] = id * 1000 + std::int64_t(j);
      tags[i] = static_cast<std::uint8_t>(id * 7);
    }
  }

  [[nodiscard]] bool row_is_whole(std::size_t i) const {
    for (std::size_t j = 0; j < kObs; ++j) {
      if (obs[i * kObs + j] != ids[i] * 1000 + std::int64_t(j)) return false;
    }
    return tags[i] == static_cast<std::uint8_t>(ids[i] * 7);
  }
};

struct Workload {
  std::size_t capacity;
  int writers;
  int readers;
  std::size_t batch_add;  // 1: add(), otherwise add_batch()
  std::size_t rounds;
};

// Writer w adds ids w * 1e9 + n; readers check every sampled row and that, with one writer, the
// key matches the id (both count the adds, after `capacity` prefilled rows with negative ids).
void run(const Workload& w) {
  Buffer buffer(schema(), {.capacity = w.capacity, .seed = 1});
  // Prefilled, and everyone starts together, so readers overlap writers from the first add.
  Rows prefill(w.capacity);
  prefill.fill(-std::int64_t(w.capacity));
  (void)buffer.add_batch(std::array<FieldBytes, 3>{bytes_of(prefill.ids), bytes_of(prefill.obs),
                                                   bytes_of(prefill.tags)},
                         w.capacity);
  std::latch start(w.writers + w.readers);
  std::atomic<int> writers_left{w.writers};
  std::atomic<std::uint64_t> torn{0};
  std::atomic<std::uint64_t> wrong_key{0};
  std::atomic<std::uint64_t> checked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < w.writers; ++t) {
    threads.emplace_back([&, t] {
      Rows rows(w.batch_add);
      start.arrive_and_wait();
      std::int64_t next = std::int64_t(t) * 1'000'000'000;
      for (std::size_t r = 0; r < w.rounds; ++r) {
        rows.fill(next);
        next += static_cast<std::int64_t>(w.batch_add);
        const std::array<FieldBytes, 3> columns{bytes_of(rows.ids), bytes_of(rows.obs),
                                                bytes_of(rows.tags)};
        if (w.batch_add == 1) {
          (void)buffer.add(columns);
        } else {
          (void)buffer.add_batch(columns, w.batch_add);
        }
      }
      writers_left.fetch_sub(1);
    });
  }
  for (int t = 0; t < w.readers; ++t) {
    threads.emplace_back([&] {
      Rows rows(16);
      std::vector<std::uint64_t> keys(16);
      const std::array<FieldOut, 3> out{out_bytes(rows.ids), out_bytes(rows.obs),
                                        out_bytes(rows.tags)};
      start.arrive_and_wait();
      // At least a few batches each, however the scheduler orders the threads.
      for (int batches = 0; writers_left.load() > 0 || batches < 100; ++batches) {
        buffer.sample(16, out, keys);
        for (std::size_t i = 0; i < 16; ++i) {
          if (!rows.row_is_whole(i)) torn.fetch_add(1);
          const auto id = static_cast<std::uint64_t>(rows.ids[i] + std::int64_t(w.capacity));
          if (w.writers == 1 && keys[i] != id) wrong_key.fetch_add(1);
        }
        checked.fetch_add(16);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(wrong_key.load(), 0u);
  EXPECT_GT(checked.load(), 0u);
  EXPECT_EQ(buffer.next_key(), w.capacity + std::uint64_t(w.writers) * w.rounds * w.batch_add);
  EXPECT_EQ(buffer.size(), w.capacity);
}

TEST(BufferConcurrency, OneWriterManyReaders) {
  run({.capacity = 8, .writers = 1, .readers = 3, .batch_add = 1, .rounds = 200'000});
}

TEST(BufferConcurrency, ManyWritersManyReaders) {
  run({.capacity = 8, .writers = 3, .readers = 2, .batch_add = 1, .rounds = 100'000});
}

TEST(BufferConcurrency, BatchWritersLappingEachOther) {
  // Batches of 5 into a ring of 7: runs wrap and writers overtake each other on the same slots.
  run({.capacity = 7, .writers = 3, .readers = 2, .batch_add = 5, .rounds = 30'000});
}

TEST(BufferConcurrency, BatchesLargerThanTheRing) {
  run({.capacity = 4, .writers = 2, .readers = 2, .batch_add = 9, .rounds = 20'000});
}

}  // namespace
}  // namespace replay_buffer
