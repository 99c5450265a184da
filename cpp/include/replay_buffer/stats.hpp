// Buffer-wide statistics kept in the region, so every process attached to a shared buffer sees
// the same figures (docs/observability.md lists them and what each means).
//
// The region's stats part is [StatsStripe x kStatsStripes][tracked item words x tracked_words].
// Hot paths never write a cache line that every caller writes: per-call figures go to one of
// kStatsStripes stripes (each its own cache lines, chosen per thread) and are folded on read;
// per-row figures are kept only for a systematic subsample of keys (those divisible by the
// tracking stride), one branch per sampled row and an atomic update per tracked row.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "replay_buffer/rate_limiter.hpp"
#include "replay_buffer/sync.hpp"

namespace replay_buffer {

// Stripes per region: callers on different threads (or processes) mostly write different ones.
inline constexpr std::size_t kStatsStripes = 16;
// Age buckets: bucket b counts ages (inserts between an item's add and its sampling) in
// [2^(b-1), 2^b); bucket 0 counts age 0. The last bucket also takes every larger age.
inline constexpr std::size_t kAgeBuckets = 48;
// How many tracked item words a region keeps at most (about; the stride is a power of two).
inline constexpr std::size_t kTrackedItems = 4096;
// Tracked keys are at least this far apart: at most 1/16 of sampled rows touch a tracked word.
inline constexpr std::size_t kMinTrackingStride = 16;

// One stripe of per-call counters. Every word is accessed atomically (relaxed).
struct alignas(64) StatsStripe {
  std::uint64_t insert_calls;     // add and add_batch calls that claimed keys
  std::uint64_t insert_waits;     // of those (and timed-out ones), calls the rate limiter held
  std::uint64_t insert_wait_ns;   // time those calls spent held
  std::uint64_t sample_waits;     // sample calls the rate limiter held
  std::uint64_t sample_wait_ns;   // time those calls spent held
  std::uint64_t tracked_sampled;  // tracked rows sampled (each time)
  std::uint64_t tracked_first;    // tracked items sampled for the first time
  std::uint64_t age_sum;          // their ages, summed
  std::array<std::uint64_t, kAgeBuckets> age;  // ages of tracked sampled rows
};
static_assert(sizeof(StatsStripe) % 64 == 0);

// Where the stats part's pieces are, for a capacity. Pure arithmetic.
struct StatsLayout {
  std::size_t stride = kMinTrackingStride;  // a power of two
  std::size_t tracked_words = 0;            // > capacity / stride: no two live keys share one

  [[nodiscard]] static StatsLayout for_capacity(std::size_t capacity) noexcept;
  [[nodiscard]] std::size_t bytes() const noexcept {
    return sizeof(StatsStripe) * kStatsStripes + tracked_words * sizeof(std::uint64_t);
  }
};

// The folded figures (Buffer::stats adds size, keys, priorities, writers).
struct StatsTotals {
  std::uint64_t insert_calls = 0;
  std::uint64_t insert_waits = 0;
  std::uint64_t insert_wait_ns = 0;
  std::uint64_t sample_waits = 0;
  std::uint64_t sample_wait_ns = 0;
  std::uint64_t tracked_sampled = 0;
  std::uint64_t tracked_first = 0;
  std::uint64_t age_sum = 0;
  std::array<std::uint64_t, kAgeBuckets> age{};
};

// How often the items in the buffer now were sampled, estimated from the tracked ones.
struct SampledItems {
  std::uint64_t tracked_live = 0;      // tracked keys among the live ones
  std::uint64_t tracked_sampled = 0;   // of those, sampled at least once
  std::uint64_t sample_count_sum = 0;  // times those were sampled, summed
  std::uint64_t sample_count_max = 0;  // the most any of them was sampled
};

// A view of a region's stats part. Cheap to copy; every method is thread- and process-safe.
class RegionStats {
 public:
  RegionStats() = default;
  RegionStats(std::byte* part, std::size_t capacity) noexcept;

  // The stripe this thread writes (fixed per thread). O(1).
  [[nodiscard]] StatsStripe& stripe() const noexcept { return stripes_[this_thread_stripe()]; }

  // Counts one add or add_batch call and what the rate limiter did to it. O(1); inline, as it
  // runs on every add.
  void count_insert(const WaitTally& wait, bool claimed) const noexcept {
    StatsStripe& s = stripe();
    if (claimed) sync::counter_ref(s.insert_calls).fetch_add(1, std::memory_order_relaxed);
    if (wait.waited) count_wait(s.insert_waits, s.insert_wait_ns, wait);
  }
  // Counts what the rate limiter did to one sample call. O(1).
  void count_sample_wait(const WaitTally& wait) const noexcept;
  // Whether a sampled key is one of the tracked ones. O(1), no memory access but the mask.
  [[nodiscard]] bool tracked(std::uint64_t key) const noexcept { return (key & mask_) == 0; }
  // Counts a tracked key sampled when `end` keys had been handed out. O(1): one CAS loop.
  void count_tracked(StatsStripe& stripe, std::uint64_t key, std::uint64_t end) const noexcept;

  // Sums every stripe. O(kStatsStripes * kAgeBuckets).
  [[nodiscard]] StatsTotals totals() const noexcept;
  // Reads the tracked words for the live keys [first, end). O(tracked words).
  [[nodiscard]] SampledItems sampled_items(std::uint64_t first, std::uint64_t end) const noexcept;
  [[nodiscard]] std::size_t stride() const noexcept { return mask_ + 1; }

 private:
  // Gives each thread its own stripe, round robin, so threads of one process share one only
  // when there are more threads than stripes; processes start at different stripes.
  [[nodiscard]] static std::size_t this_thread_stripe() noexcept {
    thread_local const std::size_t stripe = first_stripe_of_thread();
    return stripe;
  }
  [[nodiscard]] static std::size_t first_stripe_of_thread() noexcept;
  static void count_wait(std::uint64_t& waits, std::uint64_t& ns, const WaitTally& wait) noexcept;

  StatsStripe* stripes_ = nullptr;
  std::uint64_t* tracked_ = nullptr;
  std::size_t tracked_words_ = 0;
  std::uint64_t mask_ = 0;
  unsigned stride_bits_ = 0;
};

// The ages (in inserts) below which `fraction` of the counted ages lie, interpolated linearly
// inside a bucket. NaN when nothing was counted.
[[nodiscard]] double age_quantile(std::span<const std::uint64_t, kAgeBuckets> age,
                                  double fraction) noexcept;

}  // namespace replay_buffer
