// Buffer::stats: each figure's meaning on a known workload, in private and shared buffers.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "replay_buffer/stats.hpp"
#include "shm_test_support.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::out_bytes;

Schema schema() { return Schema({{"id", DType::kInt64, {}}}); }

void add_ids(Buffer& buffer, std::size_t count) {
  std::vector<std::int64_t> ids(count);
  std::iota(ids.begin(), ids.end(), 0);
  const std::array<FieldBytes, 1> columns{bytes_of(ids)};
  (void)buffer.add_batch(columns, count);
}

void sample(Buffer& buffer, std::size_t batch) {
  std::vector<std::int64_t> ids(batch);
  const std::array<FieldOut, 1> out{out_bytes(ids)};
  buffer.sample(batch, out, {});
}

std::uint64_t sum(std::span<const std::uint64_t> values) {
  return std::accumulate(values.begin(), values.end(), std::uint64_t{0});
}

TEST(StatsLayout, TracksAtMostOneKeyInSixteenAndAboutFourThousand) {
  EXPECT_EQ(StatsLayout::for_capacity(1).stride, 16u);
  EXPECT_EQ(StatsLayout::for_capacity(64).tracked_words, 5u);
  EXPECT_EQ(StatsLayout::for_capacity(1 << 20).stride, 256u);
  EXPECT_LE(StatsLayout::for_capacity(1'000'003).tracked_words, kTrackedItems + 1);
}

TEST(AgeQuantile, InterpolatesInsideABucket) {
  std::array<std::uint64_t, kAgeBuckets> age{};
  EXPECT_TRUE(std::isnan(age_quantile(age, 0.5)));
  age[0] = 1;
  EXPECT_EQ(age_quantile(age, 0.5), 0.0);
  age = {};
  age[5] = 10;  // ages 16..31
  EXPECT_DOUBLE_EQ(age_quantile(age, 0.5), 16.0 + 15.0 * 0.5);
  EXPECT_DOUBLE_EQ(age_quantile(age, 1.0), 31.0);
}

TEST(Stats, CountsCallsAndItems) {
  Buffer buffer(schema(), {.capacity = 100, .seed = 1});
  for (int i = 0; i < 3; ++i) {
    const std::int64_t id = i;
    const std::array<FieldBytes, 1> row{bytes_of(id)};
    (void)buffer.add(row);
  }
  add_ids(buffer, 10);
  for (int i = 0; i < 5; ++i) sample(buffer, 8);
  const BufferStats stats = buffer.stats();
  EXPECT_EQ(stats.capacity, 100u);
  EXPECT_EQ(stats.size, 13u);
  EXPECT_EQ(stats.inserted, 13u);
  EXPECT_EQ(stats.insert_calls, 4u);
  EXPECT_EQ(stats.sampled, 40u);
  EXPECT_EQ(stats.sample_calls, 5u);
  EXPECT_EQ(stats.insert_waits + stats.sample_waits, 0u);
  EXPECT_FALSE(stats.prioritized);
  EXPECT_EQ(stats.writers_live, 0u);  // private: no registry
}

TEST(Stats, AnEmptySampleCountsNothing) {
  Buffer buffer(schema(), {.capacity = 8});
  EXPECT_THROW(sample(buffer, 4), EmptyBufferError);
  const BufferStats stats = buffer.stats();
  EXPECT_EQ(stats.sampled, 0u);
  EXPECT_EQ(stats.sample_calls, 0u);
  EXPECT_TRUE(std::isnan(stats.age_p50));
}

TEST(Stats, AgesAndSampleCountsOfTrackedItems) {
  // Capacity 64, stride 16: keys 0, 16, 32 and 48 are tracked, with ages 63, 47, 31 and 15 after
  // 64 adds.
  Buffer buffer(schema(), {.capacity = 64, .seed = 3});
  add_ids(buffer, 64);
  for (int i = 0; i < 200; ++i) sample(buffer, 32);
  const BufferStats stats = buffer.stats();
  EXPECT_EQ(stats.tracking_stride, 16u);
  const std::uint64_t tracked = sum(stats.age_buckets);
  // 6400 draws, each tracked with probability 4/64: about 400.
  EXPECT_GT(tracked, 300u);
  EXPECT_LT(tracked, 500u);
  for (std::size_t b = 0; b < kAgeBuckets; ++b) {
    if (b < 4 || b > 6) {
      EXPECT_EQ(stats.age_buckets[b], 0u) << "bucket " << b;
    }
  }
  EXPECT_GT(stats.age_buckets[6], stats.age_buckets[5]);  // ages 47 and 63 against 31 alone
  // Each tracked sample was of age 15, 31, 47 or 63: the sum is 15 * n + 16 * (0, 1, 2 or 3).
  EXPECT_GE(stats.age_sum, 15 * tracked);
  EXPECT_LE(stats.age_sum, 63 * tracked);
  EXPECT_EQ((stats.age_sum - 15 * tracked) % 16, 0u);
  EXPECT_GE(stats.age_p50, 16.0);
  EXPECT_LE(stats.age_p99, 63.0);
  EXPECT_GE(stats.age_p99, 32.0);
  EXPECT_DOUBLE_EQ(stats.unique_sampled, 64.0);  // 4 tracked items, each standing for 16
  EXPECT_DOUBLE_EQ(stats.live_sampled_fraction, 1.0);
  EXPECT_DOUBLE_EQ(stats.live_sample_count_mean, static_cast<double>(tracked) / 4.0);
  EXPECT_GE(stats.live_sample_count_max, (tracked + 3) / 4);
}

TEST(Stats, OverwrittenItemsLeaveTheLiveFigures) {
  Buffer buffer(schema(), {.capacity = 32, .seed = 5});
  add_ids(buffer, 32);
  for (int i = 0; i < 50; ++i) sample(buffer, 32);
  const double unique_before = buffer.stats().unique_sampled;
  EXPECT_DOUBLE_EQ(unique_before, 32.0);  // keys 0 and 16
  add_ids(buffer, 32);  // keys 32..63: every sampled item is gone
  BufferStats stats = buffer.stats();
  EXPECT_EQ(stats.live_sampled_fraction, 0.0);
  EXPECT_EQ(stats.live_sample_count_mean, 0.0);
  EXPECT_EQ(stats.live_sample_count_max, 0u);
  EXPECT_DOUBLE_EQ(stats.unique_sampled, 32.0);
  for (int i = 0; i < 50; ++i) sample(buffer, 32);
  stats = buffer.stats();
  EXPECT_DOUBLE_EQ(stats.unique_sampled, 64.0);
  EXPECT_DOUBLE_EQ(stats.live_sampled_fraction, 1.0);
}

TEST(Stats, RateLimiterWaitsAreCountedPerSide) {
  RateLimit limit{.min_size_to_sample = 4, .timeout_seconds = 0.05};
  Buffer buffer(schema(), {.capacity = 16, .rate_limit = limit});
  EXPECT_THROW(sample(buffer, 2), RateLimitTimeout);
  BufferStats stats = buffer.stats();
  EXPECT_EQ(stats.sample_waits, 1u);
  EXPECT_GE(stats.sample_wait_seconds, 0.05);
  EXPECT_EQ(stats.sampled, 0u);
  add_ids(buffer, 4);
  sample(buffer, 2);  // admitted at once: no wait
  stats = buffer.stats();
  EXPECT_EQ(stats.sample_waits, 1u);
  EXPECT_EQ(stats.insert_waits, 0u);

  RateLimit ratio{.min_size_to_sample = 1,
                  .samples_per_insert = 1.0,
                  .error_buffer = 2.0,
                  .timeout_seconds = 0.02};
  Buffer limited(schema(), {.capacity = 16, .rate_limit = ratio});
  add_ids(limited, 1);
  add_ids(limited, 1);
  add_ids(limited, 1);  // three inserts and no samples: past the band
  EXPECT_THROW(add_ids(limited, 1), RateLimitTimeout);
  stats = limited.stats();
  EXPECT_EQ(stats.insert_waits, 1u);
  EXPECT_GE(stats.insert_wait_seconds, 0.02);
  EXPECT_EQ(stats.insert_calls, 3u);  // the one that timed out claimed nothing
  EXPECT_EQ(stats.inserted, 3u);
}

TEST(Stats, PriorityDistribution) {
  Buffer buffer(schema(), {.capacity = 8, .strategy = Strategy::kProportional, .alpha = 1.0,
                           .eps = 0.0});
  add_ids(buffer, 8);
  const std::vector<std::uint64_t> keys{0, 1, 2, 3, 4, 5, 6, 7};
  const std::vector<double> priorities{0.5, 1, 1, 2, 2, 2, 4, 100};
  (void)buffer.update_priorities(keys, priorities, PriorityKind::kPriority);
  const BufferStats stats = buffer.stats();
  EXPECT_TRUE(stats.prioritized);
  EXPECT_DOUBLE_EQ(stats.priority_sum, 112.5);
  EXPECT_DOUBLE_EQ(stats.priority_min, 0.5);
  EXPECT_DOUBLE_EQ(stats.priority_max, 100.0);
  EXPECT_EQ(stats.priority_sampled_slots, 8u);
  const auto bucket = [&](int exponent) {
    return stats.priority_buckets[static_cast<std::size_t>(exponent - kPriorityBucketLow)];
  };
  EXPECT_EQ(bucket(-1), 1u);  // 0.5
  EXPECT_EQ(bucket(0), 2u);   // 1
  EXPECT_EQ(bucket(1), 3u);   // 2
  EXPECT_EQ(bucket(2), 1u);   // 4
  EXPECT_EQ(bucket(6), 1u);   // 100 in [64, 128)
}

TEST(Stats, ThreadsCountedInTheirStripesAddUp) {
  Buffer buffer(schema(), {.capacity = 256, .seed = 4});
  add_ids(buffer, 256);
  constexpr int kThreads = 20;  // more than the stripes: some threads share one
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&buffer] {
      for (int i = 0; i < 200; ++i) {
        const std::int64_t id = i;
        const std::array<FieldBytes, 1> row{bytes_of(id)};
        (void)buffer.add(row);
        sample(buffer, 8);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const BufferStats stats = buffer.stats();
  EXPECT_EQ(stats.insert_calls, 1u + kThreads * 200u);
  EXPECT_EQ(stats.inserted, 256u + kThreads * 200u);
  EXPECT_EQ(stats.sample_calls, kThreads * 200u);
  EXPECT_EQ(stats.sampled, kThreads * 200u * 8u);
  EXPECT_GT(sum(stats.age_buckets), 0u);
  EXPECT_LE(sum(stats.age_buckets), stats.sampled);
}

TEST(Stats, EveryAttachedProcessSeesTheSameFigures) {
  const testing::ShmName name;
  Buffer creator(schema(), {.capacity = 64, .seed = 2}, SharedMemory{name});
  add_ids(creator, 40);
  Buffer attached = Buffer::attach(name);
  sample(attached, 16);
  add_ids(attached, 2);
  const BufferStats a = creator.stats();
  const BufferStats b = attached.stats();
  EXPECT_EQ(a.inserted, 42u);
  EXPECT_EQ(b.inserted, 42u);
  EXPECT_EQ(a.insert_calls, 2u);
  EXPECT_EQ(b.insert_calls, 2u);
  EXPECT_EQ(a.sampled, 16u);
  EXPECT_EQ(a.sample_calls, b.sample_calls);
  EXPECT_EQ(a.age_buckets, b.age_buckets);
  EXPECT_EQ(a.writers_live, 2u);  // each Buffer that added holds a writer entry
  EXPECT_EQ(a.writers_dead, 0u);
}

}  // namespace
}  // namespace replay_buffer
