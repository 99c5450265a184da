#include "replay_buffer/ring.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <string>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {

// How long a writer has waited on one holder of a slot.
struct Ring::HolderWatch {
  sync::SeqWord held = 0;
  unsigned polls = 0;
  std::chrono::steady_clock::time_point next_probe{};
};

namespace {

std::atomic<InterruptCheck> g_interrupt_check{nullptr};

}  // namespace

void set_interrupt_check(InterruptCheck check) noexcept {
  g_interrupt_check.store(check, std::memory_order_release);
}

InterruptCheck interrupt_check() noexcept {
  return g_interrupt_check.load(std::memory_order_acquire);
}

Ring::Ring(std::byte* region, const Layout& layout, const Schema& schema, WriterClaim& writer)
    : capacity_(layout.capacity),
      counters_(reinterpret_cast<Counters*>(region + layout.counters_offset)),
      seq_(reinterpret_cast<sync::SeqWord*>(region + layout.seq_offset)),
      writer_(writer) {
  for (std::size_t i = 0; i < schema.size(); ++i) {
    columns_.push_back(region + layout.column_offsets[i]);
    row_bytes_.push_back(schema[i].row_bytes());
  }
}

std::uint64_t Ring::next_key() const noexcept {
  return sync::counter_ref(counters_->next_key).load(std::memory_order_acquire);
}

std::uint64_t Ring::base_key() const noexcept {
  return sync::counter_ref(counters_->base_key).load(std::memory_order_acquire);
}

LiveKeys Ring::live_keys() const noexcept {
  // Base first: a clear between the two loads then gives base <= end, never a base past the keys.
  const std::uint64_t base = base_key();
  const std::uint64_t end = next_key();
  const std::uint64_t oldest = end > capacity_ ? end - capacity_ : 0;
  LiveKeys live{base, std::min(std::max(base, oldest), end), end};
  live.first_slot = slot_of(live.first);
  live.first_lap = lap_of(live.first);
  if (end > 0) {
    live.last_slot = slot_of(end - 1);
    live.last_lap_start = end - 1 - live.last_slot;
  }
  return live;
}

std::uint64_t Ring::sampled_since_clear() const noexcept {
  const std::uint64_t at_clear =
      sync::counter_ref(counters_->sampled_at_clear).load(std::memory_order_acquire);
  const std::uint64_t sampled = sync::counter_ref(counters_->sampled).load(std::memory_order_acquire);
  return sampled >= at_clear ? sampled - at_clear : 0;
}

std::uint64_t Ring::claim(std::size_t count, const RateLimit& limit,
                          const std::atomic<std::uint64_t>* cancels) {
  auto next = sync::counter_ref(counters_->next_key);
  if (!limit.limits_ratio()) return next.fetch_add(count, std::memory_order_acq_rel);
  const auto since_clear = [&](std::uint64_t key) {
    const std::uint64_t base = base_key();
    return key >= base ? key - base : 0;
  };
  limit.check_insert_batch(since_clear(next.load(std::memory_order_acquire)), count);
  std::uint64_t first = 0;
  // Check and claim in one compare-exchange, so concurrent adders cannot overshoot together.
  const bool admitted = retry_until(
      [&] {
        first = next.load(std::memory_order_acquire);
        return limit.can_insert(since_clear(first), sampled_since_clear(), count) &&
               next.compare_exchange_strong(first, first + count, std::memory_order_acq_rel);
      },
      limit.timeout_seconds, cancels);
  if (!admitted) {
    throw RateLimitTimeout("an add of " + std::to_string(count) + " waited " +
                           std::to_string(limit.timeout_seconds) +
                           " s for samples to catch up (samples_per_insert " +
                           std::to_string(limit.samples_per_insert) + ", " +
                           std::to_string(next_key()) + " added, " +
                           std::to_string(sampled_since_clear()) + " sampled since the last clear)");
  }
  return first;
}

bool Ring::holder_died(sync::SeqWord held, HolderWatch& watch) noexcept {
  WriterRegistry* registry = writer_.registry();
  if (registry == nullptr) return false;  // private: every writer is a thread of this process
  if (held == sync::kAbandoned) return true;
  if (held != watch.held) watch = HolderWatch{held, 0, {}};
  // A live writer releases a slot within a few spins: only then is the registry consulted, and
  // the OS only after a millisecond (and every millisecond after that).
  if (++watch.polls < sync::Backoff::kSpins) return false;
  const sync::WriterId holder = sync::writer_of(held);
  if (registry->known_dead(holder)) return true;
  const auto now = std::chrono::steady_clock::now();
  if (watch.polls == sync::Backoff::kSpins) {
    watch.next_probe = now + std::chrono::milliseconds(1);
    return false;
  }
  if (now < watch.next_probe) return false;
  watch.next_probe = now + std::chrono::milliseconds(1);
  return registry->liveness(holder) == process::Liveness::kDead;
}

bool Ring::begin_write(SlotLap at, sync::SeqWord mine) noexcept {
  const std::uint64_t lap = at.lap;
  auto word = sync::seq_ref(seq_[at.slot]);
  sync::SeqWord current = word.load(std::memory_order_relaxed);
  sync::Backoff backoff;
  HolderWatch watch;
  for (;;) {
    if (sync::is_writing(current)) {
      // Another writer holds this slot: one that claimed its key a whole lap before or after us
      // (wait for it), or, in a shared buffer, one whose process died mid-copy. Then its row was
      // never published and never will be: take the slot over, whatever lap it was writing.
      if (holder_died(current, watch)) {
        if (sync::claim_word(word, current, mine)) {
          sync::counter_ref(counters_->takeovers).fetch_add(1, std::memory_order_relaxed);
          return true;
        }
        continue;  // someone else took it over first; `current` is what they wrote
      }
      backoff.wait();
      current = word.load(std::memory_order_relaxed);
      continue;
    }
    if (sync::laps_behind(current, lap) <= 0) return false;
    if (sync::claim_word(word, current, mine)) return true;
  }
}

void Ring::write(std::span<const FieldBytes> columns, std::size_t first_row,
                 std::size_t first_slot, std::size_t rows) noexcept {
  for (std::size_t f = 0; f < columns.size(); ++f) {
    const std::size_t rb = row_bytes_[f];
    sync::seqlock_copy(columns_[f] + first_slot * rb, columns[f].data() + first_row * rb,
                       rows * rb);
  }
}

void Ring::end_write(SlotLap at) noexcept {
  sync::seq_ref(seq_[at.slot]).store(sync::published(at.lap), std::memory_order_release);
}

bool Ring::try_read(std::uint64_t key, const LiveKeys& live, CopyPlan plan, std::size_t row,
                    std::uint64_t& actual) const noexcept {
  const SlotLap at = locate(key, live);
  const std::size_t slot = at.slot;
  auto word = sync::seq_ref(seq_[slot]);
  const sync::SeqWord before = word.load(std::memory_order_acquire);
  if (sync::is_writing(before)) return false;
  const std::int64_t held = key_in(before, at);
  if (held < 0 || static_cast<std::uint64_t>(held) < live.base) return false;  // unwritten/cleared
  for (const FieldCopy& field : plan) {
    sync::seqlock_copy(field.out + row * field.row_bytes, field.column + slot * field.row_bytes,
                       field.row_bytes);
  }
  if (!sync::unchanged_after_copy(word, before)) return false;
  actual = static_cast<std::uint64_t>(held);
  return true;
}

bool Ring::read_window(std::span<const std::uint64_t> keys, std::uint64_t base, CopyPlan plan,
                       std::size_t first_row) const noexcept {
  constexpr std::size_t kMaxWindow = 256;
  if (keys.size() > kMaxWindow) return false;
  std::array<sync::SeqWord, kMaxWindow> seen;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::uint64_t key = keys[i];
    if (key < base) return false;
    const std::size_t slot = slot_of(key);
    seen[i] = sync::seq_ref(seq_[slot]).load(std::memory_order_acquire);
    if (seen[i] != sync::published(lap_of(key))) return false;
    for (const FieldCopy& field : plan) {
      sync::seqlock_copy(field.out + (first_row + i) * field.row_bytes,
                         field.column + slot * field.row_bytes, field.row_bytes);
    }
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!sync::unchanged_after_copy(sync::seq_ref(seq_[slot_of(keys[i])]), seen[i])) return false;
  }
  return true;
}

std::optional<std::size_t> Ring::live_slot(std::uint64_t key) const noexcept {
  if (key < base_key()) return std::nullopt;
  const std::size_t slot = slot_of(key);
  const sync::SeqWord word = sync::seq_ref(seq_[slot]).load(std::memory_order_acquire);
  if (word != sync::published(lap_of(key))) return std::nullopt;  // overwritten, or mid-write
  return slot;
}

void Ring::prefetch(std::size_t slot, CopyPlan plan) const noexcept {
  __builtin_prefetch(&seq_[slot]);
  for (const FieldCopy& field : plan) __builtin_prefetch(field.column + slot * field.row_bytes);
}

void Ring::clear() noexcept {
  // Never backwards: a clear that read an older key counter than a concurrent one must not
  // un-clear what the other removed.
  const std::uint64_t target = next_key();
  auto base = sync::counter_ref(counters_->base_key);
  std::uint64_t current = base.load(std::memory_order_acquire);
  while (current < target &&
         !base.compare_exchange_weak(current, target, std::memory_order_acq_rel)) {
  }
  // The rate limiter counts from here again (Reverb resets its limiter with its table). A process
  // killed between the two stores only leaves the limiter counting from the previous clear.
  const std::uint64_t sampled = sync::counter_ref(counters_->sampled).load(std::memory_order_acquire);
  auto at_clear = sync::counter_ref(counters_->sampled_at_clear);
  std::uint64_t seen = at_clear.load(std::memory_order_acquire);
  while (seen < sampled &&
         !at_clear.compare_exchange_weak(seen, sampled, std::memory_order_acq_rel)) {
  }
}

std::uint64_t Ring::takeovers() const noexcept {
  return sync::counter_ref(counters_->takeovers).load(std::memory_order_relaxed);
}

}  // namespace replay_buffer
