// clear(): what it forgets, that it is crash-safe (a process killed at any instant of it leaves a
// buffer that adds and samples correctly), and that it may overlap adds.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "replay_buffer/selectors/priority_state.hpp"
#include "shm_test_support.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::out_bytes;
using testing::reap;
using testing::ShmName;
using testing::spawn_and_die;

Schema id_schema() { return Schema({{"id", DType::kInt64, {}}}); }

// Adds `count` rows whose id is `offset` + their key (one writer: keys are predictable).
void add_keyed(Buffer& buffer, std::int64_t offset, std::size_t count) {
  const auto first = static_cast<std::int64_t>(buffer.next_key());
  std::vector<std::int64_t> ids(count);
  std::iota(ids.begin(), ids.end(), first + offset);
  const std::array<FieldBytes, 1> columns{bytes_of(ids)};
  EXPECT_EQ(buffer.add_batch(columns, count), static_cast<std::uint64_t>(first));
}

// Samples `n` rows and checks that each holds `offset` + its key.
void expect_keyed(Buffer& buffer, std::int64_t offset, std::size_t n) {
  std::vector<std::int64_t> ids(n);
  std::vector<std::uint64_t> keys(n);
  const std::array<FieldOut, 1> out{out_bytes(ids)};
  buffer.sample(n, out, keys);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(ids[i], offset + static_cast<std::int64_t>(keys[i]))
        << "a row that is not the one its key names (key " << keys[i] << ")";
    ASSERT_GE(keys[i], buffer.next_key() - std::min<std::uint64_t>(buffer.size(), n + 1000));
  }
}

TEST(Clear, IsOneStoreAndOverlapsAddsSafely) {
  Buffer buffer(id_schema(), {.capacity = 64, .seed = 3});
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::vector<std::int64_t> ids(8, -1);
    const std::array<FieldBytes, 1> columns{bytes_of(ids)};
    while (!stop.load()) (void)buffer.add_batch(columns, 8);
  });
  for (int i = 0; i < 2000; ++i) buffer.clear();
  stop = true;
  writer.join();
  const ConsistencyReport report = buffer.check_consistency();
  EXPECT_EQ(report.being_written, 0u);
  buffer.clear();
  EXPECT_EQ(buffer.size(), 0u);
  add_keyed(buffer, 1'000'000, 64);
  expect_keyed(buffer, 1'000'000, 2000);
}

// What a process killed inside a clear used to leave (defect: clear() moved the base key, then
// reset the sequence words one by one): the base moved, the words untouched. Now that is exactly
// what a clear is, so the survivor's adds land and no earlier row comes back under a new key.
TEST(Clear, BaseMovedWithWordsUntouchedIsAWholeClear) {
  const ShmName name;
  Buffer buffer(id_schema(), {.capacity = 16, .seed = 4}, SharedMemory{name});
  std::vector<std::int64_t> old_ids(40, -1);
  const std::array<FieldBytes, 1> columns{bytes_of(old_ids)};
  (void)buffer.add_batch(columns, 40);
  Region raw = Region::attach_shared(name);
  const Layout layout = read_region_header(raw.bytes(), name).layout;
  auto& counters = *reinterpret_cast<Counters*>(raw.data() + layout.counters_offset);
  sync::counter_ref(counters.base_key).store(sync::counter_ref(counters.next_key).load());
  EXPECT_EQ(buffer.size(), 0u);
  add_keyed(buffer, 1'000'000, 16);
  EXPECT_EQ(buffer.size(), 16u);
  expect_keyed(buffer, 1'000'000, 500);
  EXPECT_NO_THROW((void)buffer.check_consistency());
}

// A process killed at random instants while it adds and clears: whatever it left, the survivor's
// adds land and samples return only rows under their own keys.
TEST(Clear, ProcessKilledWhileClearingLeavesAUsableBuffer) {
  for (const Strategy strategy : {Strategy::kUniform, Strategy::kProportional, Strategy::kRank}) {
    const ShmName name;
    Buffer buffer(id_schema(), {.capacity = 256, .seed = 5, .strategy = strategy},
                  SharedMemory{name});
    std::mt19937 random(11);
    for (int round = 0; round < 20; ++round) {
      const pid_t child = ::fork();
      if (child == 0) {
        Buffer attached = Buffer::attach(name);
        std::vector<std::int64_t> ids(32, -1);
        const std::array<FieldBytes, 1> columns{bytes_of(ids)};
        for (;;) {
          (void)attached.add_batch(columns, 32);
          attached.clear();
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200 + random() % 3000));
      ::kill(child, SIGKILL);
      int status = 0;
      ::waitpid(child, &status, 0);
      ASSERT_NO_THROW((void)buffer.check_consistency()) << "round " << round;
      // A whole ring of rows whose ids name their keys: every sample must be one of them.
      add_keyed(buffer, 1'000'000, 256);
      expect_keyed(buffer, 1'000'000, 512);
      ASSERT_NO_THROW((void)buffer.check_consistency()) << "round " << round;
    }
  }
}

// The one state a clear can leave only by dying inside it: the base key moved, the priorities
// not yet reset, the priority lock held. The next locker repairs it: no draw lands on a cleared
// slot (before, sampling spun for ever on them), and the buffer fills again.
TEST(Clear, DeathBetweenBaseAndPrioritiesIsRepaired) {
  ::alarm(60);
  const ShmName name;
  Buffer buffer(id_schema(), {.capacity = 100, .seed = 2, .strategy = Strategy::kProportional},
                SharedMemory{name});
  add_keyed(buffer, 0, 100);
  Region raw = Region::attach_shared(name);
  const Layout layout = read_region_header(raw.bytes(), name).layout;
  auto& control = *reinterpret_cast<PriorityControl*>(raw.data() + layout.selector_offset);
  auto& counters = *reinterpret_cast<Counters*>(raw.data() + layout.counters_offset);
  reap(spawn_and_die([&] {
    (void)control.lock.lock();
    sync::counter_ref(counters.base_key).store(100);  // clear's first step, then death
  }));
  EXPECT_EQ(buffer.size(), 0u);
  std::vector<std::int64_t> ids(4);
  const std::array<FieldOut, 1> out{out_bytes(ids)};
  EXPECT_THROW(buffer.sample(4, out, {}), EmptyBufferError);
  const ConsistencyReport report = buffer.check_consistency();
  EXPECT_EQ(report.repairs, 1u);
  add_keyed(buffer, 1'000'000, 10);
  expect_keyed(buffer, 1'000'000, 200);
  ::alarm(0);
}

}  // namespace
}  // namespace replay_buffer
