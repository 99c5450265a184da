#include "replay_buffer/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"

namespace replay_buffer {
namespace {

TEST(RateLimit, DisabledByDefault) {
  const RateLimit limit;
  EXPECT_FALSE(limit.enabled());
  EXPECT_TRUE(limit.can_insert(1'000'000, 0, 1000));
  EXPECT_TRUE(limit.can_sample(1, 0, 1'000'000, 1000));
  EXPECT_FALSE(limit.can_sample(0, 0, 0, 1));
}

TEST(RateLimit, MinSizeHoldsSamplesOnly) {
  const RateLimit limit{.min_size_to_sample = 100};
  EXPECT_TRUE(limit.enabled());
  EXPECT_FALSE(limit.can_sample(99, 99, 0, 1));
  EXPECT_TRUE(limit.can_sample(100, 100, 0, 1));
  EXPECT_TRUE(limit.can_insert(5'000, 0, 1));
}

TEST(RateLimit, RatioKeepsSamplesWithinTheErrorBuffer) {
  // 2 samples per insert, sampling from 10 inserts on, 8 samples of slack either way.
  const RateLimit limit{.min_size_to_sample = 10, .samples_per_insert = 2.0, .error_buffer = 8.0};
  // offset = 20. Filling to the minimum is never held back.
  EXPECT_TRUE(limit.can_insert(0, 0, 10));
  // At 10 inserts and no samples: diff = 20; one more insert makes 22 <= 28.
  EXPECT_TRUE(limit.can_insert(10, 0, 4));   // diff 28: the edge
  EXPECT_FALSE(limit.can_insert(10, 0, 5));  // diff 30 > 28
  // Samples may go as far as diff >= 12.
  EXPECT_TRUE(limit.can_sample(10, 10, 0, 8));   // diff 12
  EXPECT_FALSE(limit.can_sample(10, 10, 0, 9));  // diff 11
  EXPECT_FALSE(limit.can_sample(9, 10, 0, 1));   // below min size
}

TEST(RateLimit, ValidatesItsSettings) {
  EXPECT_THROW((RateLimit{.samples_per_insert = -1.0}.validate()), std::invalid_argument);
  EXPECT_THROW((RateLimit{.samples_per_insert = 4.0, .error_buffer = 3.0}.validate()),
               std::invalid_argument);
  EXPECT_THROW((RateLimit{.samples_per_insert = 0.5, .error_buffer = 0.5}.validate()),
               std::invalid_argument);
  EXPECT_NO_THROW((RateLimit{.samples_per_insert = 4.0, .error_buffer = 4.0}.validate()));
  EXPECT_THROW((RateLimit{.timeout_seconds = std::nan("")}.validate()), std::invalid_argument);
}

TEST(RateLimit, RejectsBatchesThatCouldNeverPass) {
  const RateLimit limit{.min_size_to_sample = 100, .samples_per_insert = 4.0, .error_buffer = 16.0};
  EXPECT_NO_THROW(limit.check_sample_batch(32));
  EXPECT_THROW(limit.check_sample_batch(33), std::invalid_argument);
  EXPECT_NO_THROW(limit.check_insert_batch(0, 100));  // filling to the minimum
  EXPECT_NO_THROW(limit.check_insert_batch(50, 54));  // 4 past it: 16 <= 16
  EXPECT_THROW(limit.check_insert_batch(50, 55), std::invalid_argument);
  EXPECT_NO_THROW(limit.check_insert_batch(500, 8));  // 32 <= 2 * 16
  EXPECT_THROW(limit.check_insert_batch(500, 9), std::invalid_argument);
}

TEST(RetryUntil, SucceedsWhenTheConditionTurnsTrue) {
  std::atomic<bool> ready{false};
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ready = true;
  });
  EXPECT_TRUE(retry_until([&] { return ready.load(); }, 5.0));
  setter.join();
}

TEST(RetryUntil, GivesUpAtTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(retry_until([] { return false; }, 0.05));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}

Buffer limited_buffer(RateLimit limit) {
  return Buffer(Schema({{"id", DType::kInt64, {}}}), {.capacity = 1000, .rate_limit = limit});
}

void add_ids(Buffer& buffer, std::size_t count) {
  const std::vector<std::int64_t> ids(count, 7);
  const std::array<FieldBytes, 1> columns{std::as_bytes(std::span(ids))};
  (void)buffer.add_batch(columns, count);
}

void sample_ids(Buffer& buffer, std::size_t count) {
  std::vector<std::int64_t> ids(count);
  const std::array<FieldOut, 1> out{std::as_writable_bytes(std::span(ids))};
  buffer.sample(count, out, {});
}

TEST(RateLimitedBuffer, SamplesWaitForTheMinimumSizeThenTimeOut) {
  Buffer buffer = limited_buffer({.min_size_to_sample = 10, .timeout_seconds = 0.05});
  add_ids(buffer, 9);
  EXPECT_THROW(sample_ids(buffer, 1), RateLimitTimeout);
  EXPECT_EQ(buffer.sampled(), 0u);
  add_ids(buffer, 1);
  sample_ids(buffer, 4);
  EXPECT_EQ(buffer.sampled(), 4u);
}

TEST(RateLimitedBuffer, AddsWaitForSamplesThenTimeOut) {
  Buffer buffer = limited_buffer({.min_size_to_sample = 4,
                                  .samples_per_insert = 2.0,
                                  .error_buffer = 4.0,
                                  .timeout_seconds = 0.05});
  add_ids(buffer, 6);  // diff = 12 - 0 <= offset 8 + 4
  EXPECT_THROW(add_ids(buffer, 1), RateLimitTimeout);
  EXPECT_EQ(buffer.next_key(), 6u);  // nothing added
  sample_ids(buffer, 2);
  add_ids(buffer, 1);
  EXPECT_THROW(add_ids(buffer, 5), std::invalid_argument);  // 10 > 2 * error_buffer: never
  EXPECT_EQ(buffer.next_key(), 7u);
}

TEST(RateLimitedBuffer, ConcurrentAddersAndSamplersStayWithinTheTolerance) {
  const RateLimit limit{.min_size_to_sample = 100,
                        .samples_per_insert = 4.0,
                        .error_buffer = 64.0,
                        .timeout_seconds = 0.2};
  Buffer buffer = limited_buffer(limit);
  std::atomic<bool> adding{true};
  std::atomic<std::uint64_t> violations{0};
  std::thread monitor([&] {
    while (adding) {
      // Read samples first: inserts only grow, so the bound checked is never too tight.
      const double samples = static_cast<double>(buffer.sampled());
      const double inserts = static_cast<double>(buffer.next_key());
      if (inserts > 100 && samples > inserts * 4.0 - 400.0 + 64.0) violations.fetch_add(1);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int added = 0; added < 500;) {
        try {
          add_ids(buffer, 4);
          ++added;
        } catch (const RateLimitTimeout&) {
          // Samples fell behind for longer than the timeout: try again.
        }
      }
    });
  }
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      try {
        sample_ids(buffer, 16);
      } catch (const RateLimitTimeout&) {
        // Caught up with the adds: wait for more.
      }
    }
  });
  for (auto& t : threads) t.join();
  // All 4000 adds went through, so samples caught up to within the tolerance.
  EXPECT_TRUE(retry_until(
      [&] { return static_cast<double>(buffer.sampled()) >= 4000.0 * 4.0 - 400.0 - 64.0; }, 10.0));
  sampling = false;
  adding = false;
  sampler.join();
  monitor.join();
  EXPECT_EQ(violations.load(), 0u);
  EXPECT_LE(static_cast<double>(buffer.sampled()), 4000.0 * 4.0 - 400.0 + 64.0);
}

}  // namespace
}  // namespace replay_buffer
