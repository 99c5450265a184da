// The ring: keys to slots and laps, the validated read of a window of rows (all or none), and the
// key resolver.
#include "replay_buffer/ring.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/region.hpp"
#include "replay_buffer/selectors/selector.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;

// A ring over a private region laid out for a two-field schema: id and a 16-value payload that
// derives from id, so a torn row is visible.
struct Fixture {
  explicit Fixture(std::size_t capacity)
      : schema({{"id", DType::kInt64, {}}, {"payload", DType::kInt64, {16}}}),
        layout(Layout::compute(schema, capacity)),
        region(Region::allocate_private(layout.total_bytes)),
        claim(std::nullopt),
        ring(region.data(), layout, schema, claim) {
    write_region_header(region.bytes(), schema, layout, capacity, Strategy::kUniform, 0, 0, 0);
    auto* seq = reinterpret_cast<sync::SeqWord*>(region.data() + layout.seq_offset);
    std::fill_n(seq, capacity, sync::kUnwritten);
  }

  std::uint64_t add(std::int64_t id) {
    const std::uint64_t key = ring.claim(1, RateLimit{});
    std::array<std::int64_t, 16> payload;
    std::iota(payload.begin(), payload.end(), id);
    const std::array<FieldBytes, 2> row{bytes_of(id), bytes_of(payload)};
    const SlotLap at = ring.locate(key);
    if (ring.begin_write(at, ring.writer_word())) {
      ring.write(row, 0, at.slot, 1);
      ring.end_write(at);
    }
    return key;
  }

  // Reads the window of `keys`; returns the ids when it succeeded.
  std::optional<std::vector<std::int64_t>> window(const std::vector<std::uint64_t>& keys) {
    std::vector<std::int64_t> ids(keys.size());
    std::vector<std::int64_t> payload(keys.size() * 16);
    const std::array<FieldCopy, 2> plan{
        FieldCopy{ring.column(0), reinterpret_cast<std::byte*>(ids.data()), 8},
        FieldCopy{ring.column(1), reinterpret_cast<std::byte*>(payload.data()), 128}};
    if (!ring.read_window(keys, ring.base_key(), plan, 0)) return std::nullopt;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      for (std::size_t j = 0; j < 16; ++j) {
        EXPECT_EQ(payload[i * 16 + j], ids[i] + static_cast<std::int64_t>(j)) << "torn row";
      }
    }
    return ids;
  }

  Schema schema;
  Layout layout;
  Region region;
  WriterClaim claim;
  Ring ring;
};

TEST(Ring, KeysMapToSlotsAndAbsoluteLaps) {
  Fixture f(5);
  EXPECT_EQ(f.ring.slot_of(12), 2u);
  EXPECT_EQ(f.ring.lap_of(12), 2u);
  for (int i = 0; i < 12; ++i) f.add(100 + i);
  const LiveKeys live = f.ring.live_keys();
  EXPECT_EQ(live.first, 7u);
  EXPECT_EQ(live.end, 12u);
  EXPECT_EQ(newest_key_of(1, live, 5), 11u);
  EXPECT_EQ(newest_key_of(2, live, 5), 7u);
  for (std::uint64_t key = 0; key < 40; ++key) {
    const SlotLap at = f.ring.locate(key, live);  // the division-free path and the plain one agree
    EXPECT_EQ(at.slot, key % 5);
    EXPECT_EQ(at.lap, key / 5);
  }
}

TEST(Ring, AWindowIsReadWholeOnlyWhenEveryKeyIsLive) {
  Fixture f(8);
  for (int i = 0; i < 10; ++i) f.add(100 + i);  // keys 0..9; 0 and 1 overwritten
  EXPECT_EQ(f.window({3, 4, 9}), (std::vector<std::int64_t>{103, 104, 109}));
  EXPECT_EQ(f.window({5, 1, 6}), std::nullopt);   // key 1 was overwritten by key 9
  EXPECT_EQ(f.window({9, 10}), std::nullopt);     // key 10 was never written
  f.ring.clear();
  EXPECT_EQ(f.window({8, 9}), std::nullopt);      // cleared
  const std::uint64_t key = f.add(500);
  EXPECT_EQ(f.window({key}), (std::vector<std::int64_t>{500}));
}

TEST(Ring, TheKeyResolverNamesOnlyLiveKeys) {
  Fixture f(4);
  for (int i = 0; i < 6; ++i) f.add(i);
  EXPECT_EQ(f.ring.live_slot(5), std::optional<std::size_t>(1));
  EXPECT_EQ(f.ring.live_slot(1), std::nullopt);  // overwritten by 5
  f.ring.clear();
  EXPECT_EQ(f.ring.live_slot(5), std::nullopt);
}

// A writer lapping a tiny ring while a reader reads windows of consecutive keys: every window the
// reader accepts holds exactly the rows of its keys, none torn, none of another lap.
TEST(Ring, WindowsNeverMixLapsUnderAConcurrentWriter) {
  Fixture f(16);
  for (int i = 0; i < 16; ++i) f.add(i);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (std::int64_t i = 16; !stop.load(); ++i) (void)f.add(i);
  });
  std::size_t accepted = 0;
  for (int round = 0; round < 200000 && accepted < 2000; ++round) {
    const LiveKeys live = f.ring.live_keys();
    if (live.size() < 4) continue;
    const std::vector<std::uint64_t> keys{live.first + 1, live.first + 2, live.first + 3};
    if (const auto ids = f.window(keys)) {
      ++accepted;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        ASSERT_EQ((*ids)[i], static_cast<std::int64_t>(keys[i])) << "a row of another key";
      }
    }
  }
  stop = true;
  writer.join();
  EXPECT_GT(accepted, 0u);
}

}  // namespace
}  // namespace replay_buffer
