#include "replay_buffer/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

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
  const RateLimit limit{.samples_per_insert = 4.0, .error_buffer = 16.0};
  EXPECT_NO_THROW(limit.check_batch(32, /*sampling=*/true));
  EXPECT_THROW(limit.check_batch(33, /*sampling=*/true), std::invalid_argument);
  EXPECT_NO_THROW(limit.check_batch(8, /*sampling=*/false));
  EXPECT_THROW(limit.check_batch(9, /*sampling=*/false), std::invalid_argument);
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

}  // namespace
}  // namespace replay_buffer
