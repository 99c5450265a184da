// Buffer's operations: add and add_batch (the ring's write protocol, the selector's new items),
// sample (the selector draws, the ring copies), priorities, beta and clear.
#include "replay_buffer/buffer.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "buffer_state.hpp"
#include "replay_buffer/errors.hpp"
#include "replay_buffer/random.hpp"

namespace replay_buffer {
namespace {

void check_exponent(const char* name, double value) {
  if (!std::isfinite(value) || value < 0.0) {
    throw std::invalid_argument(std::string(name) + " must be finite and >= 0, got " +
                                std::to_string(value));
  }
}

// rows * row_bytes, or std::invalid_argument naming the field when it overflows.
std::size_t bytes_for_rows(const Field& field, std::size_t row_bytes, std::size_t rows) {
  std::size_t bytes = 0;
  // No division on the add path: the multiplication reports its own overflow.
  if (__builtin_mul_overflow(rows, row_bytes, &bytes)) {
    throw std::invalid_argument("field '" + field.name + "': " + std::to_string(rows) +
                                " rows of " + std::to_string(row_bytes) +
                                " bytes overflow the address space");
  }
  return bytes;
}

[[noreturn]] void throw_size_mismatch(const Field& field, std::size_t rows, std::size_t given) {
  throw std::invalid_argument("field '" + field.name + "' (" + field.describe() + "): expected " +
                              std::to_string(bytes_for_rows(field, field.row_bytes(), rows)) +
                              " bytes for " +
                              std::to_string(rows) + " row(s), got " + std::to_string(given));
}

// Failed reads of one row after which a sampler looks for slots that dead writers abandoned or
// that hold no live item. Live writers make a reader fail a handful of times at most, and only in
// tiny rings.
constexpr std::size_t kFailuresBeforeReclaim = 1024;

}  // namespace

std::size_t Buffer::size() const noexcept { return state_->ring.live_keys().size(); }

std::uint64_t Buffer::next_key() const noexcept { return state_->ring.next_key(); }

std::uint64_t Buffer::sampled() const noexcept {
  return sync::counter_ref(state_->counters->sampled).load(std::memory_order_acquire);
}

double Buffer::beta() const noexcept {
  return std::bit_cast<double>(
      sync::counter_ref(state_->counters->beta_bits).load(std::memory_order_relaxed));
}

void Buffer::set_beta(double beta) {
  if (!is_prioritized(strategy())) {
    throw std::invalid_argument("beta is the importance-weight exponent of prioritized buffers; "
                                "this buffer's strategy is '" +
                                std::string(strategy_name(strategy())) + "'");
  }
  check_exponent("beta", beta);
  sync::counter_ref(state_->counters->beta_bits)
      .store(std::bit_cast<std::uint64_t>(beta), std::memory_order_relaxed);
}

std::span<const std::byte> Buffer::column(std::size_t field) const noexcept {
  return {state_->ring.column(field), capacity() * state_->ring.row_bytes(field)};
}

void Buffer::check_inputs(std::span<const FieldBytes> columns, std::size_t rows) const {
  const Schema& schema = state_->schema;
  if (columns.size() != schema.size()) {
    throw std::invalid_argument("expected " + std::to_string(schema.size()) + " fields (" +
                                schema.field_names() + "), got " + std::to_string(columns.size()));
  }
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].size() != bytes_for_rows(schema[i], state_->ring.row_bytes(i), rows)) {
      throw_size_mismatch(schema[i], rows, columns[i].size());
    }
    schema[i].check_values(columns[i]);
  }
}

void Buffer::check_outputs(std::span<const FieldOut> out, std::span<const std::uint64_t> keys,
                           std::size_t batch) const {
  const Schema& schema = state_->schema;
  if (batch == 0) throw std::invalid_argument("batch size must be at least 1, got 0");
  if (out.size() != schema.size()) {
    throw std::invalid_argument("expected " + std::to_string(schema.size()) + " output fields (" +
                                schema.field_names() + "), got " + std::to_string(out.size()));
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!out[i].empty() &&
        out[i].size() != bytes_for_rows(schema[i], state_->ring.row_bytes(i), batch)) {
      throw_size_mismatch(schema[i], batch, out[i].size());
    }
  }
  if (!keys.empty() && keys.size() != batch) {
    throw std::invalid_argument("expected room for " + std::to_string(batch) + " keys, got " +
                                std::to_string(keys.size()));
  }
}

std::uint64_t Buffer::add(std::span<const FieldBytes> row) {
  check_inputs(row, 1);
  Ring& ring = state_->ring;
  // Registers this process as a writer before it claims a key.
  const sync::SeqWord mine = ring.writer_word();
  const std::uint64_t key = ring.claim(1, rate_limit(), &state_->cancels);
  const SlotLap at = ring.locate(key);
  if (ring.begin_write(at, mine)) {
    if (state_->prioritized) {
      state_->with_locked([&](auto& locked) { locked.insert(key, 1, ring.base_key()); });
    }
    ring.write(row, 0, at.slot, 1);
    ring.end_write(at);
  }
  return key;
}

std::uint64_t Buffer::add_batch(std::span<const FieldBytes> columns, std::size_t count) {
  if (count == 0) throw std::invalid_argument("add_batch needs at least one row, got 0");
  check_inputs(columns, count);
  const sync::SeqWord mine = state_->ring.writer_word();
  const std::uint64_t first_key = state_->ring.claim(count, rate_limit(), &state_->cancels);
  write_claimed(columns, first_key, count, mine);
  return first_key;
}

void Buffer::write_claimed(std::span<const FieldBytes> columns, std::uint64_t first_key,
                           std::size_t count, sync::SeqWord mine) {
  Ring& ring = state_->ring;
  const std::size_t capacity = ring.capacity();
  // Rows that the same batch overwrites are never written.
  const std::size_t skipped = count > capacity ? count - capacity : 0;
  std::size_t row = skipped;
  SlotLap at = ring.locate(first_key + skipped);  // then advanced without dividing
  // Copy runs of consecutive slots with one memcpy per field; a run ends at the ring's end or at a
  // slot a newer lap already holds (possible only when another writer is a whole lap ahead, who
  // gives that slot its priority). Slots are claimed in ascending order within a run and a run is
  // published before the next is claimed, so writers waiting on each other never wait in a cycle.
  // A run's priorities are set between claiming and publishing it: an update for a previous
  // occupant that takes the lock later sees the slot claimed and is ignored, and a writer that
  // dies after this leaves its slots with their own priority, never a predecessor's.
  while (row < count) {
    const std::size_t run_start = row;
    const SlotLap run_at = at;
    bool stale = false;
    while (row < count && (row == run_start || at.slot != 0)) {
      if (!ring.begin_write(at, mine)) {
        stale = true;
        break;
      }
      ++row;
      if (++at.slot == capacity) at = {0, at.lap + 1};
    }
    const std::size_t run_length = row - run_start;
    if (state_->prioritized && run_length != 0) {
      state_->with_locked([&](auto& locked) {
        locked.insert(first_key + run_start, run_length, state_->ring.base_key());
      });
    }
    ring.write(columns, run_start, run_at.slot, run_length);
    for (std::size_t i = 0; i < run_length; ++i) {
      ring.end_write({run_at.slot + i, run_at.lap});
    }
    if (stale) {
      ++row;
      if (++at.slot == capacity) at = {0, at.lap + 1};
    }
  }
}

void Buffer::admit_sample(std::size_t count) {
  auto sampled_so_far = sync::counter_ref(state_->counters->sampled);
  const RateLimit& limit = rate_limit();
  if (!limit.enabled()) {
    sampled_so_far.fetch_add(count, std::memory_order_acq_rel);
    return;
  }
  limit.check_sample_batch(count);
  const Ring& ring = state_->ring;
  // Counted since the last clear, as the limiter's inserts are.
  const auto inserts = [&ring] {
    const LiveKeys live = ring.live_keys();
    return live.end - live.base;
  };
  const bool admitted = retry_until(
      [&] {
        std::uint64_t before = sampled_so_far.load(std::memory_order_acquire);
        return limit.can_sample(size(), inserts(), ring.sampled_since_clear(), count) &&
               sampled_so_far.compare_exchange_strong(before, before + count,
                                                      std::memory_order_acq_rel);
      },
      limit.timeout_seconds, &state_->cancels);
  if (!admitted) {
    throw RateLimitTimeout("a sample of " + std::to_string(count) + " waited " +
                           std::to_string(limit.timeout_seconds) + " s for the buffer to hold " +
                           std::to_string(limit.min_size_to_sample) +
                           " transitions and for adds to keep up (samples_per_insert " +
                           std::to_string(limit.samples_per_insert) + ", size " +
                           std::to_string(size()) + ", " + std::to_string(inserts()) +
                           " added and " + std::to_string(ring.sampled_since_clear()) +
                           " sampled since the last clear)");
  }
}

void Buffer::sample(std::size_t batch, std::span<const FieldOut> out, std::span<std::uint64_t> keys,
                    std::span<float> weights, std::optional<double> beta) {
  check_outputs(out, keys, batch);
  const bool prioritized = state_->prioritized;
  if (!prioritized && (!weights.empty() || beta)) {
    throw std::invalid_argument("importance weights and beta need a prioritized buffer");
  }
  if (!weights.empty() && weights.size() != batch) {
    throw std::invalid_argument("expected room for " + std::to_string(batch) + " weights, got " +
                                std::to_string(weights.size()));
  }
  if (beta) check_exponent("beta", *beta);
  // An empty buffer fails before it counts anything (with a rate limit, admission waits for
  // min_size_to_sample items instead).
  if (!rate_limit().enabled() && size() == 0) {
    throw EmptyBufferError("cannot sample from an empty buffer");
  }
  admit_sample(batch);
  std::array<FieldCopy, kMaxFields> copies;
  std::size_t copy_count = 0;
  for (std::size_t f = 0; f < out.size(); ++f) {
    if (!out[f].empty()) {
      copies[copy_count++] = {state_->ring.column(f), out[f].data(), state_->ring.row_bytes(f)};
    }
  }
  const CopyPlan plan(copies.data(), copy_count);
  try {
    std::visit(
        [&](auto& selector) {
          sample_with([&selector] { return selector.lock(); }, batch, plan, keys, weights,
                      beta.value_or(this->beta()));
        },
        state_->selector);
  } catch (const EmptyBufferError&) {
    // Nothing was returned: the rows it counted were never sampled.
    sync::counter_ref(state_->counters->sampled).fetch_sub(batch, std::memory_order_acq_rel);
    throw;
  }
}

template <typename LockSelector>
void Buffer::sample_with(LockSelector&& lock_selector, std::size_t batch, CopyPlan plan,
                         std::span<std::uint64_t> keys, std::span<float> weights, double beta) {
  Ring& ring = state_->ring;
  LiveKeys live = ring.live_keys();
  if (live.size() == 0) throw EmptyBufferError("cannot sample from an empty buffer");
  const std::uint64_t stream =
      sync::counter_ref(state_->counters->sample_stream).fetch_add(1, std::memory_order_relaxed);
  Xoshiro256pp rng = Xoshiro256pp::for_stream(state_->header->seed, stream);
  // The whole batch is drawn under one lock acquisition (stratified over the whole batch), then
  // copied in chunks: prefetch each row of a chunk, then copy — so the cache misses of a chunk
  // overlap instead of queueing. Each row keeps P(i) / P_min from the draw that chose it: a redraw
  // sees the priorities as they are then, so its ratio must not mix with the first draw's.
  thread_local std::vector<std::uint64_t> drawn;
  thread_local std::vector<double> ratios;
  drawn.resize(batch);
  ratios.resize(batch);
  const auto draw = [&](std::span<std::uint64_t> to, std::span<double> r) {
    auto locked = lock_selector();
    if (locked.repaired()) retire_dead_slots(locked, ring);
    locked.draw(live, rng, to, r);
  };
  draw(drawn, ratios);
  constexpr std::size_t kChunk = 16;
  for (std::size_t start = 0; start < batch; start += kChunk) {
    const std::size_t end = std::min(batch, start + kChunk);
    for (std::size_t row = start; row < end; ++row) {
      ring.prefetch(ring.locate(drawn[row], live).slot, plan);
    }
    for (std::size_t row = start; row < end; ++row) {
      std::uint64_t actual = 0;
      sync::Backoff backoff;
      // A slot mid-write or emptied by a clear: draw another. Only concurrent writers, a clear, or
      // slots that writers which died left mid-write make this loop run more than once.
      for (std::size_t failures = 1; !ring.try_read(drawn[row], live, plan, row, actual);
           ++failures) {
        backoff.wait();
        live = ring.live_keys();
        if (live.size() == 0) throw EmptyBufferError("cannot sample from an empty buffer");
        if (failures % kFailuresBeforeReclaim == 0) reclaim(live);
        draw(std::span(&drawn[row], 1), std::span(&ratios[row], 1));
      }
      if (!keys.empty()) keys[row] = actual;
    }
  }
  if (!weights.empty()) importance_weights(std::span(ratios).first(batch), beta, weights);
}

void Buffer::reclaim(const LiveKeys& live) {
  Ring& ring = state_->ring;
  WriterRegistry* registry = ring.registry();
  std::size_t readable = 0;
  std::size_t live_writers = 0;
  // Writers asked about in this pass: one question to the OS per writer, not per slot.
  std::vector<std::pair<sync::WriterId, bool>> dead;
  for (std::uint64_t key = live.first; key < live.end; ++key) {
    const SlotLap at = ring.locate(key, live);
    auto word = ring.word(at.slot);
    sync::SeqWord held = word.load(std::memory_order_acquire);
    if (!sync::is_writing(held)) {
      const std::int64_t in_slot = ring.key_in(held, at);
      if (in_slot >= 0 && static_cast<std::uint64_t>(in_slot) >= live.base) ++readable;
      continue;
    }
    if (held == sync::kAbandoned) continue;
    if (registry == nullptr) {
      ++live_writers;
      continue;
    }
    const sync::WriterId holder = sync::writer_of(held);
    auto known = std::find_if(dead.begin(), dead.end(),
                              [holder](const auto& entry) { return entry.first == holder; });
    if (known == dead.end()) {
      const bool is_dead =
          registry->known_dead(holder) || registry->liveness(holder) == process::Liveness::kDead;
      known = dead.insert(dead.end(), {holder, is_dead});
    }
    if (!known->second) {
      ++live_writers;
    } else {
      (void)word.compare_exchange_strong(held, sync::kAbandoned, std::memory_order_acq_rel);
    }
  }
  // Under the lock: a writer that takes a slot over sets its priority under the lock too, after
  // its claim, so a slot that holds a live item again keeps the priority it was given.
  state_->with_locked([&](auto& locked) { retire_dead_slots(locked, ring); });
  if (readable == 0 && live_writers == 0) {
    throw EmptyBufferError(
        "no transition can be read: every slot added so far was left half-written by a writer "
        "process that died (the next add to each slot reclaims it)");
  }
}

std::size_t Buffer::update_priorities(std::span<const std::uint64_t> keys,
                                      std::span<const double> values, PriorityKind kind) {
  if (!is_prioritized(strategy())) {
    throw std::logic_error("update_priorities needs a prioritized buffer (strategy '" +
                           std::string(strategy_name(strategy())) + "')");
  }
  if (keys.size() != values.size()) {
    throw std::invalid_argument("got " + std::to_string(keys.size()) + " indices and " +
                                std::to_string(values.size()) + " values");
  }
  const std::uint64_t issued = next_key();
  thread_local std::vector<double> stored;
  thread_local std::vector<std::size_t> slots;
  stored.resize(values.size());
  std::visit(
      [&](auto& selector) {
        for (std::size_t i = 0; i < values.size(); ++i) {
          if (keys[i] >= issued) {
            throw std::out_of_range("indices[" + std::to_string(i) + "] is " +
                                    std::to_string(keys[i]) +
                                    ", a key never handed out (the next add gets " +
                                    std::to_string(issued) + ")");
          }
          stored[i] = selector.stored_priority(values[i], kind, i);
        }
      },
      state_->selector);
  return state_->with_locked([&](auto& locked) {
    // Under the lock, so a writer that overwrites a slot (it sets the new occupant's priority
    // under this lock before publishing it) cannot slip between the check and the update.
    slots.clear();
    std::size_t live = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::optional<std::size_t> slot = state_->ring.live_slot(keys[i]);
      if (!slot) continue;  // overwritten, cleared, or mid-write
      slots.push_back(*slot);
      stored[live++] = stored[i];
    }
    locked.set(slots, std::span(stored).first(live));
    return live;
  });
}

void Buffer::priorities(std::span<const std::uint64_t> keys, std::span<double> out) {
  if (!is_prioritized(strategy())) {
    throw std::logic_error("priorities needs a prioritized buffer (strategy '" +
                           std::string(strategy_name(strategy())) + "')");
  }
  if (keys.size() != out.size()) {
    throw std::invalid_argument("got " + std::to_string(keys.size()) + " indices and room for " +
                                std::to_string(out.size()) + " priorities");
  }
  const std::uint64_t issued = next_key();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] >= issued) {
      throw std::out_of_range("indices[" + std::to_string(i) + "] is " + std::to_string(keys[i]) +
                              ", a key never handed out (the next add gets " +
                              std::to_string(issued) + ")");
    }
  }
  state_->with_locked([&](auto& locked) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::optional<std::size_t> slot = state_->ring.live_slot(keys[i]);
      out[i] = slot ? locked.get(*slot) : std::numeric_limits<double>::quiet_NaN();
    }
  });
}

PriorityMass Buffer::priority_mass() {
  if (strategy() != Strategy::kProportional) {
    throw std::logic_error("priority_mass needs a proportional buffer (strategy 'prioritized'), "
                           "not '" + std::string(strategy_name(strategy())) + "'");
  }
  return state_->with_locked([&](auto& locked) -> PriorityMass {
    if constexpr (requires { locked.total(); }) {
      return {locked.total(), locked.min_positive()};
    } else {
      throw std::logic_error("priority_mass: selector keeps no sum tree");
    }
  });
}

void Buffer::cancel_waits() noexcept {
  state_->cancels.fetch_add(1, std::memory_order_acq_rel);
}

void Buffer::clear() {
  if (!is_prioritized(strategy())) {
    state_->ring.clear();
    return;
  }
  // Both under the lock: an add that inserts its priority after this sees the new base and skips
  // a cleared key. A process killed between the two leaves priorities on cleared slots, which
  // the next locker's repair retires.
  state_->with_locked([&](auto& locked) {
    state_->ring.clear();
    locked.clear();
  });
}

}  // namespace replay_buffer
