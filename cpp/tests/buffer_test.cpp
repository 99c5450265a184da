#include "replay_buffer/buffer.hpp"

#include <gtest/gtest.h>

#include <limits>

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "replay_buffer/errors.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::column_value;
using testing::out_bytes;

// Transitions whose every field derives from one id, so a row can be checked on its own.
Schema counter_schema() {
  return Schema(
      {{"id", DType::kInt64, {}}, {"obs", DType::kFloat32, {3}}, {"flag", DType::kBool, {}}});
}

struct CounterRow {
  std::int64_t id;
  std::array<float, 3> obs;
  bool flag;

  static CounterRow of(std::int64_t id) {
    const auto f = static_cast<float>(id);
    return {id, {f, f + 0.5f, -f}, id % 2 == 1};
  }
};

std::uint64_t add_counter(Buffer& buffer, std::int64_t id) {
  const CounterRow row = CounterRow::of(id);
  const std::array<FieldBytes, 3> fields{bytes_of(row.id), bytes_of(row.obs), bytes_of(row.flag)};
  return buffer.add(fields);
}

std::uint64_t add_counters(Buffer& buffer, std::int64_t first, std::size_t count) {
  std::vector<std::int64_t> ids(count);
  std::vector<float> obs(count * 3);
  std::vector<unsigned char> flags(count);
  for (std::size_t i = 0; i < count; ++i) {
    const CounterRow row = CounterRow::of(first + static_cast<std::int64_t>(i));
    ids[i] = row.id;
    std::copy(row.obs.begin(), row.obs.end(), obs.begin() + static_cast<std::ptrdiff_t>(i * 3));
    flags[i] = row.flag;
  }
  const std::array<FieldBytes, 3> columns{bytes_of(ids), bytes_of(obs), bytes_of(flags)};
  return buffer.add_batch(columns, count);
}

struct Batch {
  std::vector<std::int64_t> ids;
  std::vector<float> obs;
  std::vector<unsigned char> flags;
  std::vector<std::uint64_t> keys;

  explicit Batch(std::size_t n) : ids(n), obs(n * 3), flags(n), keys(n) {}

  void sample_from(Buffer& buffer) {
    const std::array<FieldOut, 3> out{out_bytes(ids), out_bytes(obs), out_bytes(flags)};
    buffer.sample(ids.size(), out, keys);
  }

  // Every row is whole: all fields come from the same id.
  void expect_consistent() const {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const CounterRow want = CounterRow::of(ids[i]);
      ASSERT_EQ(obs[i * 3], want.obs[0]) << "row " << i;
      ASSERT_EQ(obs[i * 3 + 1], want.obs[1]) << "row " << i;
      ASSERT_EQ(obs[i * 3 + 2], want.obs[2]) << "row " << i;
      ASSERT_EQ(flags[i] != 0, want.flag) << "row " << i;
    }
  }
};

TEST(Buffer, StartsEmpty) {
  Buffer buffer(counter_schema(), {.capacity = 10});
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_EQ(buffer.capacity(), 10u);
  EXPECT_FALSE(buffer.is_full());
  EXPECT_EQ(buffer.next_key(), 0u);
}

TEST(Buffer, AddReturnsConsecutiveKeysAndStoresInSlotOrder) {
  Buffer buffer(counter_schema(), {.capacity = 10});
  for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ(add_counter(buffer, 100 + i), std::uint64_t(i));
  EXPECT_EQ(buffer.size(), 4u);
  for (std::size_t slot = 0; slot < 4; ++slot) {
    EXPECT_EQ(column_value<std::int64_t>(buffer, 0, slot), 100 + std::int64_t(slot));
    EXPECT_EQ(column_value<float>(buffer, 1, slot, 1), 100.5f + float(slot));
  }
}

TEST(Buffer, ColumnsAreAlignedTo64Bytes) {
  Buffer buffer(counter_schema(), {.capacity = 7});
  for (std::size_t f = 0; f < 3; ++f) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.column(f).data()) % 64, 0u) << f;
    EXPECT_EQ(buffer.column(f).size(), 7 * buffer.schema()[f].row_bytes());
  }
}

// Around the capacity boundary: key k always lands in slot k mod capacity, the oldest rows go.
TEST(Buffer, WrapsAroundAtCapacity) {
  constexpr std::size_t kCapacity = 5;
  for (std::size_t adds : {4u, 5u, 6u, 9u, 10u, 11u, 23u}) {
    Buffer buffer(counter_schema(), {.capacity = kCapacity});
    for (std::size_t i = 0; i < adds; ++i) add_counter(buffer, std::int64_t(i));
    EXPECT_EQ(buffer.size(), std::min(adds, kCapacity)) << adds;
    EXPECT_EQ(buffer.is_full(), adds >= kCapacity) << adds;
    for (std::size_t key = adds > kCapacity ? adds - kCapacity : 0; key < adds; ++key) {
      EXPECT_EQ(column_value<std::int64_t>(buffer, 0, key % kCapacity), std::int64_t(key));
    }
    // Sampling sees exactly the live keys, each with its own row.
    Batch batch(400);
    batch.sample_from(buffer);
    batch.expect_consistent();
    for (std::size_t i = 0; i < 400; ++i) {
      EXPECT_EQ(batch.keys[i], std::uint64_t(batch.ids[i]));
      EXPECT_GE(batch.keys[i] + kCapacity, adds);
      EXPECT_LT(batch.keys[i], adds);
    }
  }
}

TEST(Buffer, AddBatchEqualsAddingOneByOne) {
  for (std::size_t count : {1u, 3u, 7u, 8u, 9u, 20u}) {
    Buffer one_by_one(counter_schema(), {.capacity = 8});
    Buffer batched(counter_schema(), {.capacity = 8});
    add_counter(one_by_one, 0);
    add_counter(batched, 0);
    for (std::size_t i = 0; i < count; ++i) add_counter(one_by_one, std::int64_t(1 + i));
    EXPECT_EQ(add_counters(batched, 1, count), 1u);
    EXPECT_EQ(batched.next_key(), one_by_one.next_key());
    EXPECT_EQ(batched.size(), one_by_one.size());
    for (std::size_t f = 0; f < 3; ++f) {
      const auto a = one_by_one.column(f);
      const auto b = batched.column(f);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << count << " field " << f;
    }
  }
}

TEST(Buffer, CapacityOne) {
  Buffer buffer(counter_schema(), {.capacity = 1});
  add_counter(buffer, 1);
  add_counter(buffer, 2);
  add_counters(buffer, 3, 4);
  EXPECT_EQ(buffer.size(), 1u);
  Batch batch(5);
  batch.sample_from(buffer);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(batch.ids[i], 6);
    EXPECT_EQ(batch.keys[i], 5u);
  }
  batch.expect_consistent();
}

TEST(Buffer, BatchLargerThanSizeSamplesWithReplacement) {
  Buffer buffer(counter_schema(), {.capacity = 100});
  add_counters(buffer, 0, 3);
  Batch batch(64);
  batch.sample_from(buffer);
  batch.expect_consistent();
  std::map<std::int64_t, int> seen;
  for (const std::int64_t id : batch.ids) ++seen[id];
  EXPECT_EQ(seen.size(), 3u);
}

TEST(Buffer, SamplingAFieldSubsetSkipsTheOthers) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  add_counters(buffer, 10, 4);
  std::vector<std::int64_t> ids(8, -1);
  const std::array<FieldOut, 3> out{out_bytes(ids), FieldOut{}, FieldOut{}};
  buffer.sample(8, out, {});
  for (const std::int64_t id : ids) {
    EXPECT_GE(id, 10);
    EXPECT_LT(id, 14);
  }
}

TEST(Buffer, SameSeedSameBatches) {
  auto draw = [](std::uint64_t seed) {
    Buffer buffer(counter_schema(), {.capacity = 1000, .seed = seed});
    add_counters(buffer, 0, 1000);
    std::vector<std::int64_t> all;
    for (int call = 0; call < 3; ++call) {
      Batch batch(32);
      batch.sample_from(buffer);
      all.insert(all.end(), batch.ids.begin(), batch.ids.end());
    }
    return all;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Buffer, UniformSamplingIsUniform) {
  for (std::size_t capacity : {2u, 10u, 1000u}) {
    Buffer buffer(counter_schema(), {.capacity = capacity, .seed = 42});
    add_counters(buffer, 0, capacity + capacity / 2);  // wrapped, so slots and keys differ
    std::vector<std::uint64_t> counts(capacity);
    const std::size_t draws = capacity * 200;
    Batch batch(256);
    for (std::size_t done = 0; done < draws; done += 256) {
      batch.sample_from(buffer);
      for (const std::uint64_t key : batch.keys) ++counts[key % capacity];
    }
    EXPECT_TRUE(testing::fits_uniform(counts)) << "capacity " << capacity;
  }
}

TEST(Buffer, ClearForgetsEverythingButKeysKeepGrowing) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  add_counters(buffer, 0, 6);
  buffer.clear();
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_THROW(Batch(1).sample_from(buffer), EmptyBufferError);
  EXPECT_EQ(add_counter(buffer, 50), 6u);
  Batch batch(10);
  batch.sample_from(buffer);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(batch.ids[i], 50);
    EXPECT_EQ(batch.keys[i], 6u);
  }
  EXPECT_EQ(column_value<std::int64_t>(buffer, 0, 6 % 4), 50);  // slot = key mod capacity
}

TEST(Buffer, RejectsBadInputAndStaysUnchanged) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  add_counter(buffer, 1);
  const std::int64_t id = 2;
  const std::array<float, 2> short_obs{1, 2};
  const bool flag = false;
  const std::array<FieldBytes, 3> wrong_size{bytes_of(id), bytes_of(short_obs), bytes_of(flag)};
  EXPECT_THROW(buffer.add(wrong_size), std::invalid_argument);
  const std::array<FieldBytes, 2> missing{bytes_of(id), bytes_of(flag)};
  EXPECT_THROW(buffer.add(missing), std::invalid_argument);
  EXPECT_THROW(buffer.add_batch(wrong_size, 1), std::invalid_argument);
  EXPECT_THROW(buffer.add_batch(wrong_size, 0), std::invalid_argument);
  EXPECT_EQ(buffer.size(), 1u);
  EXPECT_EQ(buffer.next_key(), 1u);

  std::vector<std::int64_t> ids(2);
  const std::array<FieldOut, 3> too_small{out_bytes(ids), FieldOut{}, FieldOut{}};
  EXPECT_THROW(buffer.sample(3, too_small, {}), std::invalid_argument);
  EXPECT_THROW(buffer.sample(0, too_small, {}), std::invalid_argument);
  std::vector<std::uint64_t> keys(5);
  EXPECT_THROW(buffer.sample(2, too_small, keys), std::invalid_argument);
  try {
    buffer.add(wrong_size);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "field 'obs' (float32[3]): expected 12 bytes for 1 row(s), got 8");
  }
}

TEST(Buffer, EmptyBufferCannotBeSampled) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  EXPECT_THROW(Batch(1).sample_from(buffer), EmptyBufferError);
}

TEST(Buffer, RejectsImpossibleCapacities) {
  EXPECT_THROW(Buffer(counter_schema(), {.capacity = 0}), CapacityError);
  EXPECT_THROW(Buffer(counter_schema(), {.capacity = std::size_t{1} << 62}), CapacityError);
  EXPECT_THROW(Buffer(counter_schema(), {.capacity = std::size_t{1} << 40}), CapacityError);
}

TEST(Buffer, RegionOverheadIsSmall) {
  // CartPole-sized: obs float32[4] twice, int64 action, float32 reward, bool done.
  Schema schema({{"obs", DType::kFloat32, {4}},
                 {"action", DType::kInt64, {}},
                 {"reward", DType::kFloat32, {}},
                 {"next_obs", DType::kFloat32, {4}},
                 {"done", DType::kBool, {}}});
  const std::size_t capacity = 1'000'000;
  Buffer buffer(schema, {.capacity = capacity});
  const double raw = static_cast<double>(schema.transition_bytes() * capacity);
  EXPECT_LT(static_cast<double>(buffer.region_bytes()) / raw - 1.0, 0.10);
}

// A sample that fails changes nothing: the rate limiter's count of sampled items included.
TEST(Buffer, FailedSamplesAreNotCounted) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  EXPECT_THROW(Batch(8).sample_from(buffer), EmptyBufferError);
  EXPECT_EQ(buffer.sampled(), 0u);
  add_counter(buffer, 1);
  Batch(8).sample_from(buffer);
  EXPECT_EQ(buffer.sampled(), 8u);
  buffer.clear();
  EXPECT_THROW(Batch(8).sample_from(buffer), EmptyBufferError);
  EXPECT_EQ(buffer.sampled(), 8u);
}

// Sizes from callers never overflow into a small allocation or a short check.
TEST(Buffer, HugeBatchSizesAreRejected) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  add_counter(buffer, 1);
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
  std::vector<std::int64_t> ids(1);
  const std::array<FieldOut, 3> out{out_bytes(ids), FieldOut{}, FieldOut{}};
  EXPECT_THROW(buffer.sample(huge, out, {}), std::invalid_argument);
  const std::int64_t id = 0;
  const std::array<float, 3> obs{};
  const bool flag = false;
  const std::array<FieldBytes, 3> row{bytes_of(id), bytes_of(obs), bytes_of(flag)};
  EXPECT_THROW(buffer.add_batch(row, huge), std::invalid_argument);
  EXPECT_EQ(buffer.size(), 1u);
}

// A field of indices (a discrete action) rejects values outside [0, num_values), changing nothing.
TEST(Buffer, IndexFieldsRejectValuesOutOfRange) {
  Buffer buffer(Schema({{"action", DType::kInt64, {}, 6}}), {.capacity = 8});
  const std::vector<std::int64_t> good{0, 5, 3};
  const std::array<FieldBytes, 1> columns{bytes_of(good)};
  EXPECT_EQ(buffer.add_batch(columns, 3), 0u);
  for (const std::int64_t bad : {6, -1, 1000}) {
    const std::vector<std::int64_t> batch{1, bad};
    const std::array<FieldBytes, 1> bad_columns{bytes_of(batch)};
    EXPECT_THROW(buffer.add_batch(bad_columns, 2), std::invalid_argument) << bad;
  }
  EXPECT_EQ(buffer.size(), 3u);
  EXPECT_THROW(Schema({{"x", DType::kFloat32, {}, 6}}), std::invalid_argument);
  EXPECT_THROW(Schema({{"x", DType::kUInt8, {}, 300}}), std::invalid_argument);
}

// beta belongs to prioritized buffers: setting it on a uniform one is an error, not a no-op.
TEST(Buffer, BetaCannotBeSetOnAUniformBuffer) {
  Buffer buffer(counter_schema(), {.capacity = 4});
  EXPECT_THROW(buffer.set_beta(0.5), std::invalid_argument);
}

}  // namespace
}  // namespace replay_buffer
