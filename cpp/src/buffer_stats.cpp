// Buffer::stats: the region's counters folded, the priority trees read, the writers counted.
#include <algorithm>
#include <cmath>

#include "buffer_state.hpp"

namespace replay_buffer {
namespace {

std::size_t priority_bucket(double priority) noexcept {
  if (!(priority > 0.0)) return 0;
  const int exponent = std::ilogb(priority);  // priority in [2^e, 2^(e+1))
  constexpr int kBuckets = static_cast<int>(std::tuple_size_v<decltype(BufferStats::priority_buckets)>);
  return static_cast<std::size_t>(std::clamp(exponent - kPriorityBucketLow, 0, kBuckets - 1));
}

}  // namespace

BufferStats Buffer::stats() {
  State& state = *state_;
  BufferStats out;
  const LiveKeys live = state.ring.live_keys();
  out.capacity = capacity();
  out.size = live.size();
  out.inserted = live.end;
  out.sampled = sampled();
  out.sample_calls =
      sync::counter_ref(state.counters->sample_stream).load(std::memory_order_relaxed);
  const StatsTotals totals = state.stats.totals();
  out.insert_calls = totals.insert_calls;
  out.insert_waits = totals.insert_waits;
  out.insert_wait_seconds = static_cast<double>(totals.insert_wait_ns) * 1e-9;
  out.sample_waits = totals.sample_waits;
  out.sample_wait_seconds = static_cast<double>(totals.sample_wait_ns) * 1e-9;
  out.age_buckets = totals.age;
  out.age_sum = totals.age_sum;
  out.age_p50 = age_quantile(totals.age, 0.5);
  out.age_p99 = age_quantile(totals.age, 0.99);
  const auto stride = static_cast<double>(state.stats.stride());
  out.tracking_stride = state.stats.stride();
  out.unique_sampled = static_cast<double>(totals.tracked_first) * stride;
  const SampledItems items = state.stats.sampled_items(live.first, live.end);
  if (items.tracked_live != 0) {
    const auto tracked = static_cast<double>(items.tracked_live);
    out.live_sampled_fraction = std::min(1.0, static_cast<double>(items.tracked_sampled) / tracked);
    out.live_sample_count_mean = static_cast<double>(items.sample_count_sum) / tracked;
  }
  out.live_sample_count_max = items.sample_count_max;
  out.takeovers = state.ring.takeovers();
  out.created_unix_ns = state.header->created_unix_ns;
  if (WriterRegistry* registry = state.ring.registry()) {
    const WriterRegistry::Census census = registry->census();
    out.writers_live = census.live;
    out.writers_dead = census.dead;
  }
  out.prioritized = is_prioritized(strategy());
  if (!out.prioritized) return out;
  state.with_locked([&](auto& locked) {
    out.repairs = locked.repairs();
    if constexpr (requires { locked.tree(); }) {
      const SumTree& tree = locked.tree();
      out.priority_sum = tree.total();
      out.priority_min = tree.min_positive();
      out.priority_max = tree.max();
    }
    // Evenly spaced live keys, newest first (their slots hold them unless being rewritten).
    const LiveKeys now = state.ring.live_keys();
    const std::uint64_t held = now.size();
    const std::uint64_t step = std::max<std::uint64_t>(1, held / kPrioritySampleSlots);
    for (std::uint64_t key = now.first; key < now.end; key += step) {
      const double priority = locked.get(state.ring.slot_of(key));
      ++out.priority_buckets[priority_bucket(priority)];
      out.priority_sampled_sum += priority;
      ++out.priority_sampled_slots;
    }
  });
  return out;
}

}  // namespace replay_buffer
