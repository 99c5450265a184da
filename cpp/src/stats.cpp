#include "replay_buffer/stats.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include <unistd.h>

namespace replay_buffer {
namespace {

// A tracked word: (key >> stride_bits) + 1 in the upper 48 bits (0: nothing yet), and how often
// that key was sampled in the lower 16 (saturating).
constexpr unsigned kCountBits = 16;
constexpr std::uint64_t kCountMask = (std::uint64_t{1} << kCountBits) - 1;

std::atomic_ref<std::uint64_t> word(std::uint64_t& w) noexcept { return sync::counter_ref(w); }

void add_relaxed(std::uint64_t& w, std::uint64_t n) noexcept {
  word(w).fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

StatsLayout StatsLayout::for_capacity(std::size_t capacity) noexcept {
  StatsLayout layout;
  while (capacity / layout.stride > kTrackedItems) layout.stride *= 2;
  layout.tracked_words = capacity / layout.stride + 1;
  return layout;
}

RegionStats::RegionStats(std::byte* part, std::size_t capacity) noexcept {
  const StatsLayout layout = StatsLayout::for_capacity(capacity);
  stripes_ = reinterpret_cast<StatsStripe*>(part);
  tracked_ = reinterpret_cast<std::uint64_t*>(part + sizeof(StatsStripe) * kStatsStripes);
  tracked_words_ = layout.tracked_words;
  mask_ = layout.stride - 1;
  stride_bits_ = static_cast<unsigned>(std::countr_zero(layout.stride));
}

std::size_t RegionStats::first_stripe_of_thread() noexcept {
  static std::atomic<std::size_t> next{0};
  return (next.fetch_add(1, std::memory_order_relaxed) + static_cast<std::size_t>(::getpid())) %
         kStatsStripes;
}

void RegionStats::count_wait(std::uint64_t& waits, std::uint64_t& ns,
                             const WaitTally& wait) noexcept {
  add_relaxed(waits, 1);
  add_relaxed(ns, wait.nanoseconds);
}

void RegionStats::count_sample_wait(const WaitTally& wait) const noexcept {
  if (!wait.waited) return;
  StatsStripe& s = stripe();
  count_wait(s.sample_waits, s.sample_wait_ns, wait);
}

void RegionStats::count_tracked(StatsStripe& s, std::uint64_t key,
                                std::uint64_t end) const noexcept {
  const std::uint64_t age = end > key ? end - 1 - key : 0;
  const auto bucket = std::min<std::size_t>(std::bit_width(age), kAgeBuckets - 1);
  add_relaxed(s.age[bucket], 1);
  add_relaxed(s.age_sum, age);
  add_relaxed(s.tracked_sampled, 1);
  const std::uint64_t id = (key >> stride_bits_) + 1;
  auto slot = word(tracked_[(key >> stride_bits_) % tracked_words_]);
  std::uint64_t held = slot.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t held_id = held >> kCountBits;
    std::uint64_t next = 0;
    if (held_id == id) {
      if ((held & kCountMask) == kCountMask) return;  // saturated
      next = held + 1;
    } else if (held_id < id) {
      next = (id << kCountBits) | 1;  // the slot's previous tracked key is gone
    } else {
      return;  // a newer key took the word while this sampler copied an older one
    }
    if (slot.compare_exchange_weak(held, next, std::memory_order_relaxed)) {
      if (held_id != id) add_relaxed(s.tracked_first, 1);
      return;
    }
  }
}

StatsTotals RegionStats::totals() const noexcept {
  StatsTotals t;
  for (std::size_t i = 0; i < kStatsStripes; ++i) {
    StatsStripe& s = stripes_[i];
    const auto load = [](std::uint64_t& w) { return word(w).load(std::memory_order_relaxed); };
    t.insert_calls += load(s.insert_calls);
    t.insert_waits += load(s.insert_waits);
    t.insert_wait_ns += load(s.insert_wait_ns);
    t.sample_waits += load(s.sample_waits);
    t.sample_wait_ns += load(s.sample_wait_ns);
    t.tracked_sampled += load(s.tracked_sampled);
    t.tracked_first += load(s.tracked_first);
    t.age_sum += load(s.age_sum);
    for (std::size_t b = 0; b < kAgeBuckets; ++b) t.age[b] += load(s.age[b]);
  }
  return t;
}

SampledItems RegionStats::sampled_items(std::uint64_t first, std::uint64_t end) const noexcept {
  SampledItems items;
  if (end <= first) return items;
  const std::uint64_t stride = mask_ + 1;
  // Multiples of the stride in [first, end).
  items.tracked_live = (end + stride - 1) / stride - (first + stride - 1) / stride;
  for (std::size_t i = 0; i < tracked_words_; ++i) {
    const std::uint64_t held = word(tracked_[i]).load(std::memory_order_relaxed);
    if (held == 0) continue;
    const std::uint64_t key = ((held >> kCountBits) - 1) << stride_bits_;
    if (key < first || key >= end) continue;
    const std::uint64_t count = held & kCountMask;
    ++items.tracked_sampled;
    items.sample_count_sum += count;
    items.sample_count_max = std::max(items.sample_count_max, count);
  }
  return items;
}

double age_quantile(std::span<const std::uint64_t, kAgeBuckets> age, double fraction) noexcept {
  std::uint64_t total = 0;
  for (const std::uint64_t n : age) total += n;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  const double target = fraction * static_cast<double>(total);
  double below = 0.0;
  for (std::size_t b = 0; b < kAgeBuckets; ++b) {
    const auto n = static_cast<double>(age[b]);
    if (n > 0.0 && below + n >= target) {
      if (b == 0) return 0.0;
      const double lo = std::ldexp(1.0, static_cast<int>(b) - 1);  // [2^(b-1), 2^b)
      const double hi = b == 1 ? 1.0 : 2.0 * lo - 1.0;
      return lo + (hi - lo) * std::clamp((target - below) / n, 0.0, 1.0);
    }
    below += n;
  }
  return std::ldexp(1.0, static_cast<int>(kAgeBuckets) - 2);
}

}  // namespace replay_buffer
