#include "replay_buffer/buffer.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/random.hpp"

namespace replay_buffer {

// The counters as one sampler sees them: which keys exist and how they map to laps.
struct Buffer::Snapshot {
  std::uint64_t base_key;
  std::size_t size;
  // Keys since the last clear = full_laps * capacity + partial: slots below `partial` are on lap
  // `full_laps`, the others one lap behind.
  std::uint64_t full_laps;
  std::size_t partial;
};

// How long a writer has waited on one holder of a slot.
struct Buffer::HolderWatch {
  sync::SeqWord held = 0;
  unsigned polls = 0;
  std::chrono::steady_clock::time_point next_probe{};
};

namespace {

void check_exponent(const char* name, double value) {
  if (!std::isfinite(value) || value < 0.0) {
    throw std::invalid_argument(std::string(name) + " must be finite and >= 0, got " +
                                std::to_string(value));
  }
}

const BufferOptions& checked(const BufferOptions& options) {
  options.rate_limit.validate();
  check_exponent("alpha", options.alpha);
  check_exponent("beta", options.beta);
  check_exponent("eps", options.eps);
  if (!strategy_from_name(strategy_name(options.strategy))) {
    throw std::invalid_argument("unknown sampling strategy");
  }
  return options;
}

[[noreturn]] void throw_size_mismatch(const Field& field, std::size_t rows, std::size_t given) {
  throw std::invalid_argument("field '" + field.name + "' (" + field.describe() + "): expected " +
                              std::to_string(rows * field.row_bytes()) + " bytes for " +
                              std::to_string(rows) + " row(s), got " + std::to_string(given));
}

}  // namespace

Buffer::Buffer(Schema schema, BufferOptions options)
    : Buffer(std::move(schema), options, std::nullopt) {}

Buffer::Buffer(Schema schema, BufferOptions options, const SharedMemory& shared)
    : Buffer(std::move(schema), options, std::optional<SharedMemory>(shared)) {}

Buffer::Buffer(Schema schema, BufferOptions options, std::optional<SharedMemory> shared)
    : schema_(std::move(schema)),
      capacity_(checked(options).capacity),
      strategy_(options.strategy),
      layout_(Layout::compute(schema_, capacity_, strategy_, shared ? kMaxWriterSlots : 0)),
      region_(shared ? Region::create_shared(shared->name, layout_.total_bytes, shared->mode)
                     : Region::allocate_private(layout_.total_bytes)),
      writer_(std::nullopt) {
  // A failure from here on destroys region_, which removes a shared name it created.
  write_region_header(region_.bytes(), schema_, layout_, capacity_, strategy_, options.seed,
                      options.alpha, options.eps);
  bind_region(options.alpha, options.eps);
  std::fill_n(seq_, capacity_, sync::kUnwritten);
  set_beta(options.beta);
  header_->rate_limit = options.rate_limit;
  if (priorities_) priorities_->init_region();
  // Last: a process that attaches and reads the magic sees everything above.
  publish_region_header(region_.bytes());
  if (shared && shared->keep) region_.keep_name();
}

Buffer::Buffer(Region region, RegionDescription description)
    : schema_(std::move(description.schema)),
      capacity_(description.capacity),
      strategy_(description.strategy),
      layout_(std::move(description.layout)),
      region_(std::move(region)),
      writer_(std::nullopt) {
  bind_region(description.alpha, description.eps);
  try {
    header_->rate_limit.validate();
  } catch (const std::invalid_argument& e) {
    throw InvalidRegionError(std::string("the region's rate limit is corrupt: ") + e.what());
  }
}

void Buffer::bind_region(double alpha, double eps) {
  std::byte* base = region_.data();
  header_ = reinterpret_cast<RegionHeader*>(base);
  counters_ = reinterpret_cast<Counters*>(base + layout_.counters_offset);
  seq_ = reinterpret_cast<sync::SeqWord*>(base + layout_.seq_offset);
  for (std::size_t i = 0; i < schema_.size(); ++i) {
    columns_.push_back(base + layout_.column_offsets[i]);
    row_bytes_.push_back(schema_[i].row_bytes());
  }
  if (strategy_ != Strategy::kUniform) {
    priorities_.emplace(base, layout_, capacity_, strategy_, alpha, eps);
  }
  if (layout_.writer_slots != 0) {
    writer_ = WriterClaim(WriterRegistry(
        std::span<WriterEntry>(reinterpret_cast<WriterEntry*>(base + layout_.writers_offset),
                               layout_.writer_slots),
        region_.fd(), layout_.writers_offset));
  }
}

Buffer Buffer::attach(std::string_view name, std::chrono::milliseconds wait, Region::Owner owner) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    // Mapped afresh each time: a creator that is still at work may not have sized it yet.
    Region region = Region::attach_shared(name, Region::Access::kReadWrite, owner);
    if (region_magic(region.bytes()) != 0 || std::chrono::steady_clock::now() >= deadline) {
      RegionDescription description = read_region_header(region.bytes(), name);
      return Buffer(std::move(region), std::move(description));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(10));
  }
}

SharedBufferInfo Buffer::inspect(std::string_view name) {
  const Region region =
      Region::attach_shared(name, Region::Access::kReadOnly, Region::Owner::kAnyone);
  RegionDescription description = read_region_header(region.bytes(), name);
  const std::byte* base = region.data();
  auto& counters = *reinterpret_cast<Counters*>(const_cast<std::byte*>(base) +
                                                description.layout.counters_offset);
  const std::uint64_t next = sync::counter_ref(counters.next_key).load(std::memory_order_acquire);
  const std::uint64_t first = sync::counter_ref(counters.base_key).load(std::memory_order_acquire);
  const double beta =
      std::bit_cast<double>(sync::counter_ref(counters.beta_bits).load(std::memory_order_relaxed));
  const process::Liveness creator =
      process::liveness({.pid = static_cast<std::int64_t>(description.creator_pid),
                         .start_time = description.creator_start_time,
                         .pid_namespace = description.creator_pid_namespace});
  WriterRegistry::Census writers;
  if (description.layout.writer_slots != 0) {
    auto* entries = reinterpret_cast<WriterEntry*>(const_cast<std::byte*>(base) +
                                                   description.layout.writers_offset);
    writers = WriterRegistry(std::span<WriterEntry>(entries, description.layout.writer_slots),
                             region.fd(), description.layout.writers_offset)
                  .census();
  }
  const std::size_t capacity = description.capacity;
  return SharedBufferInfo{
      .name = std::string(name),
      .bytes = region.size(),
      .mode = region.mode(),
      .owner_uid = region.owner_uid(),
      .description = std::move(description),
      .beta = beta,
      .next_key = next,
      .size = static_cast<std::size_t>(
          std::min<std::uint64_t>(next >= first ? next - first : 0, capacity)),
      .creator = creator,
      .writers = writers,
  };
}

double Buffer::beta() const noexcept {
  return std::bit_cast<double>(
      sync::counter_ref(counters_->beta_bits).load(std::memory_order_relaxed));
}

void Buffer::set_beta(double beta) {
  check_exponent("beta", beta);
  sync::counter_ref(counters_->beta_bits)
      .store(std::bit_cast<std::uint64_t>(beta), std::memory_order_relaxed);
}

void Buffer::insert_priorities(std::size_t first_slot, std::size_t count) {
  if (!priorities_ || count == 0) return;
  PriorityIndex::Locked(*priorities_).insert(first_slot, count);
}

std::uint64_t Buffer::next_key() const noexcept {
  return sync::counter_ref(counters_->next_key).load(std::memory_order_acquire);
}

std::uint64_t Buffer::sampled() const noexcept {
  return sync::counter_ref(counters_->sampled).load(std::memory_order_acquire);
}

std::uint64_t Buffer::claim_keys(std::size_t count) {
  auto next = sync::counter_ref(counters_->next_key);
  const RateLimit& limit = rate_limit();
  if (!limit.limits_ratio()) return next.fetch_add(count, std::memory_order_acq_rel);
  limit.check_insert_batch(next.load(std::memory_order_acquire), count);
  std::uint64_t first = 0;
  // Check and claim in one compare-exchange, so concurrent adders cannot overshoot together.
  const bool admitted = retry_until(
      [&] {
        first = next.load(std::memory_order_acquire);
        return limit.can_insert(first, sampled(), count) &&
               next.compare_exchange_strong(first, first + count, std::memory_order_acq_rel);
      },
      limit.timeout_seconds);
  if (!admitted) {
    throw RateLimitTimeout(
        "an add of " + std::to_string(count) + " waited " + std::to_string(limit.timeout_seconds) +
        " s for samples to catch up (samples_per_insert " +
        std::to_string(limit.samples_per_insert) + ", " + std::to_string(next_key()) + " added, " +
        std::to_string(sampled()) + " sampled)");
  }
  return first;
}

void Buffer::admit_sample(std::size_t count) {
  auto sampled_so_far = sync::counter_ref(counters_->sampled);
  const RateLimit& limit = rate_limit();
  if (!limit.enabled()) {
    sampled_so_far.fetch_add(count, std::memory_order_acq_rel);
    return;
  }
  limit.check_sample_batch(count);
  const bool admitted = retry_until(
      [&] {
        std::uint64_t before = sampled_so_far.load(std::memory_order_acquire);
        return limit.can_sample(size(), next_key(), before, count) &&
               sampled_so_far.compare_exchange_strong(before, before + count,
                                                      std::memory_order_acq_rel);
      },
      limit.timeout_seconds);
  if (!admitted) {
    throw RateLimitTimeout("a sample of " + std::to_string(count) + " waited " +
                           std::to_string(limit.timeout_seconds) + " s for the buffer to hold " +
                           std::to_string(limit.min_size_to_sample) +
                           " transitions and for adds to keep up (samples_per_insert " +
                           std::to_string(limit.samples_per_insert) + ", size " +
                           std::to_string(size()) + ", " + std::to_string(next_key()) + " added, " +
                           std::to_string(sampled()) + " sampled)");
  }
}

Buffer::Snapshot Buffer::snapshot() const noexcept {
  Counters& c = *counters_;
  const std::uint64_t base = sync::counter_ref(c.base_key).load(std::memory_order_acquire);
  const std::uint64_t next = sync::counter_ref(c.next_key).load(std::memory_order_acquire);
  const std::uint64_t since_clear = next >= base ? next - base : 0;
  return Snapshot{base, static_cast<std::size_t>(std::min<std::uint64_t>(since_clear, capacity_)),
                  since_clear / capacity_, static_cast<std::size_t>(since_clear % capacity_)};
}

std::size_t Buffer::size() const noexcept { return snapshot().size; }

std::span<const std::byte> Buffer::column(std::size_t field) const noexcept {
  return {columns_[field], capacity_ * row_bytes_[field]};
}

void Buffer::check_inputs(std::span<const FieldBytes> columns, std::size_t rows) const {
  if (columns.size() != schema_.size()) {
    throw std::invalid_argument("expected " + std::to_string(schema_.size()) + " fields (" +
                                schema_.field_names() + "), got " + std::to_string(columns.size()));
  }
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].size() != rows * row_bytes_[i]) {
      throw_size_mismatch(schema_[i], rows, columns[i].size());
    }
  }
}

bool Buffer::holder_died(sync::SeqWord held, HolderWatch& watch) noexcept {
  WriterRegistry* registry = writer_.registry();
  if (registry == nullptr) return false;  // private: every writer is a thread of this process
  if (held == sync::kAbandoned) return true;
  if (held != watch.held) {
    watch = HolderWatch{held, 0, {}};
  }
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

bool Buffer::begin_write(std::size_t slot, std::uint64_t lap, sync::SeqWord mine) noexcept {
  auto word = sync::seq_ref(seq_[slot]);
  sync::SeqWord current = word.load(std::memory_order_relaxed);
  sync::Backoff backoff;
  HolderWatch watch;
  for (;;) {
    if (sync::is_writing(current)) {
      // Another writer holds this slot: one that claimed its key a whole lap before or after us
      // (wait for it), or, in a shared buffer, one whose process died mid-copy. Then its row was
      // never published and never will be: take the slot over, whatever lap it was writing.
      if (holder_died(current, watch)) {
        if (word.compare_exchange_strong(current, mine, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          std::atomic_thread_fence(std::memory_order_release);
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
    if (word.compare_exchange_weak(current, mine, std::memory_order_acquire,
                                   std::memory_order_relaxed)) {
      // The odd word must be visible before any byte of the row changes.
      std::atomic_thread_fence(std::memory_order_release);
      return true;
    }
  }
}

void Buffer::end_write(std::size_t slot, std::uint64_t lap) noexcept {
  sync::seq_ref(seq_[slot]).store(sync::published(lap), std::memory_order_release);
}

void Buffer::write_rows(std::span<const FieldBytes> columns, std::size_t first_row,
                        std::size_t first_slot, std::size_t rows) noexcept {
  for (std::size_t f = 0; f < columns.size(); ++f) {
    const std::size_t rb = row_bytes_[f];
    sync::seqlock_copy(columns_[f] + first_slot * rb, columns[f].data() + first_row * rb,
                       rows * rb);
  }
}

std::uint64_t Buffer::add(std::span<const FieldBytes> row) {
  check_inputs(row, 1);
  const sync::SeqWord mine = writer_.word();
  Counters& c = *counters_;
  const std::uint64_t key = claim_keys(1);
  const std::uint64_t since_clear =
      key - sync::counter_ref(c.base_key).load(std::memory_order_relaxed);
  const std::uint64_t lap = since_clear / capacity_;
  const std::size_t slot = static_cast<std::size_t>(since_clear % capacity_);
  if (begin_write(slot, lap, mine)) {
    insert_priorities(slot, 1);
    write_rows(row, 0, slot, 1);
    end_write(slot, lap);
  }
  return key;
}

std::uint64_t Buffer::add_batch(std::span<const FieldBytes> columns, std::size_t count) {
  if (count == 0) throw std::invalid_argument("add_batch needs at least one row, got 0");
  check_inputs(columns, count);
  const sync::SeqWord mine = writer_.word();
  Counters& c = *counters_;
  const std::uint64_t first_key = claim_keys(count);
  const std::uint64_t base = sync::counter_ref(c.base_key).load(std::memory_order_relaxed);
  // Rows that the same batch overwrites are never written.
  const std::size_t skipped = count > capacity_ ? count - capacity_ : 0;
  std::uint64_t since_clear = first_key - base + skipped;
  std::uint64_t lap = since_clear / capacity_;
  std::size_t slot = static_cast<std::size_t>(since_clear % capacity_);
  std::size_t row = skipped;
  // Copy runs of consecutive slots with one memcpy per field; a run ends at the ring's end or at a
  // slot a newer lap already holds (possible only when another writer is a whole lap ahead, who
  // gives that slot its priority). Slots are claimed in ascending order within a run and a run is
  // published before the next is claimed, so writers waiting on each other never wait in a cycle.
  while (row < count) {
    const std::size_t run_start = row;
    const std::size_t run_slot = slot;
    bool stale = false;
    while (row < count && slot < capacity_) {
      if (!begin_write(slot, lap, mine)) {
        stale = true;
        break;
      }
      ++row;
      ++slot;
    }
    const std::size_t run_length = row - run_start;
    insert_priorities(run_slot, run_length);
    write_rows(columns, run_start, run_slot, run_length);
    for (std::size_t i = 0; i < run_length; ++i) end_write(run_slot + i, lap);
    if (stale) {
      ++row;
      ++slot;
    }
    if (slot == capacity_) {
      slot = 0;
      ++lap;
    }
  }
  return first_key;
}

void Buffer::check_outputs(std::span<const FieldOut> out, std::span<const std::uint64_t> keys,
                           std::size_t batch) const {
  if (batch == 0) throw std::invalid_argument("batch size must be at least 1, got 0");
  if (out.size() != schema_.size()) {
    throw std::invalid_argument("expected " + std::to_string(schema_.size()) + " output fields (" +
                                schema_.field_names() + "), got " + std::to_string(out.size()));
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!out[i].empty() && out[i].size() != batch * row_bytes_[i]) {
      throw_size_mismatch(schema_[i], batch, out[i].size());
    }
  }
  if (!keys.empty() && keys.size() != batch) {
    throw std::invalid_argument("expected room for " + std::to_string(batch) + " keys, got " +
                                std::to_string(keys.size()));
  }
}

void Buffer::prefetch_row(std::size_t slot, CopyPlan plan) const noexcept {
  __builtin_prefetch(&seq_[slot]);
  for (const FieldCopy& field : plan) __builtin_prefetch(field.column + slot * field.row_bytes);
}

bool Buffer::try_read(std::size_t slot, const Snapshot& snap, CopyPlan plan, std::size_t row,
                      std::uint64_t& key) const noexcept {
  if (slot >= snap.size) return false;  // a clear shrank the buffer since the slot was drawn
  auto word = sync::seq_ref(seq_[slot]);
  const sync::SeqWord before = word.load(std::memory_order_acquire);
  if (sync::is_writing(before)) return false;
  const std::uint64_t expected_lap = slot < snap.partial ? snap.full_laps : snap.full_laps - 1;
  const std::int64_t lap =
      static_cast<std::int64_t>(expected_lap) - sync::laps_behind(before, expected_lap);
  if (lap < 0) return false;  // never written since the last clear
  for (const FieldCopy& field : plan) {
    sync::seqlock_copy(field.out + row * field.row_bytes, field.column + slot * field.row_bytes,
                       field.row_bytes);
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (word.load(std::memory_order_relaxed) != before) return false;
  key = snap.base_key + static_cast<std::uint64_t>(lap) * capacity_ + slot;
  return true;
}

// Failed reads of one row after which a sampler looks for slots that dead writers abandoned. Live
// writers make a reader fail a handful of times at most, and only in tiny rings.
constexpr std::size_t kFailuresBeforeReclaim = 1024;

void Buffer::reclaim_abandoned(const Snapshot& snap) {
  WriterRegistry* registry = writer_.registry();
  std::size_t readable = 0;
  std::size_t live = 0;
  std::vector<std::size_t> retired;
  // Writers asked about in this pass: one question to the OS per writer, not per slot.
  std::vector<std::pair<sync::WriterId, bool>> dead;
  for (std::size_t slot = 0; slot < snap.size; ++slot) {
    auto word = sync::seq_ref(seq_[slot]);
    sync::SeqWord held = word.load(std::memory_order_acquire);
    if (!sync::is_writing(held)) {
      const std::uint64_t expected_lap = slot < snap.partial ? snap.full_laps : snap.full_laps - 1;
      if (static_cast<std::int64_t>(expected_lap) >= sync::laps_behind(held, expected_lap)) {
        ++readable;
      }
      continue;
    }
    if (held == sync::kAbandoned) continue;
    if (registry == nullptr) {
      ++live;
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
      ++live;
    } else if (word.compare_exchange_strong(held, sync::kAbandoned, std::memory_order_acq_rel)) {
      retired.push_back(slot);
    }
  }
  if (priorities_ && !retired.empty()) {
    PriorityIndex::Locked locked(*priorities_);
    for (const std::size_t slot : retired) {
      // Under the lock: a writer that takes the slot over sets its priority under the lock too,
      // after its claim, so a slot no longer marked abandoned keeps the priority it was given.
      if (sync::seq_ref(seq_[slot]).load(std::memory_order_acquire) == sync::kAbandoned) {
        locked.retire(slot);
      }
    }
  }
  if (readable == 0 && live == 0) {
    throw EmptyBufferError(
        "no transition can be read: every slot added so far was left half-written by a writer "
        "process that died (the next add to each slot reclaims it)");
  }
}

template <typename Redraw>
void Buffer::copy_rows(std::span<const std::size_t> slots, std::size_t first_row, Snapshot& snap,
                       CopyPlan plan, std::span<std::uint64_t> keys, Redraw&& redraw) {
  // Prefetch a chunk of rows before copying any: the copies then wait on many cache misses at
  // once instead of one after another.
  constexpr std::size_t kChunk = 16;
  for (std::size_t start = 0; start < slots.size(); start += kChunk) {
    const std::size_t end = std::min(slots.size(), start + kChunk);
    for (std::size_t j = start; j < end; ++j) prefetch_row(slots[j], plan);
    for (std::size_t j = start; j < end; ++j) {
      const std::size_t row = first_row + j;
      std::size_t slot = slots[j];
      std::uint64_t key = 0;
      sync::Backoff backoff;
      // A slot mid-write or emptied by a clear: draw another. Only concurrent writers, a clear, or
      // slots that writers which died left mid-write make this loop run more than once.
      for (std::size_t failures = 1; !try_read(slot, snap, plan, row, key); ++failures) {
        backoff.wait();
        snap = snapshot();
        if (snap.size == 0) throw EmptyBufferError("cannot sample from an empty buffer");
        if (failures % kFailuresBeforeReclaim == 0) reclaim_abandoned(snap);
        slot = redraw(row, snap);
      }
      if (!keys.empty()) keys[row] = key;
    }
  }
}

void Buffer::sample(std::size_t batch, std::span<const FieldOut> out, std::span<std::uint64_t> keys,
                    std::span<float> weights, std::optional<double> beta) {
  check_outputs(out, keys, batch);
  if (!priorities_ && (!weights.empty() || beta)) {
    throw std::invalid_argument("importance weights and beta need a prioritized buffer");
  }
  if (!weights.empty() && weights.size() != batch) {
    throw std::invalid_argument("expected room for " + std::to_string(batch) + " weights, got " +
                                std::to_string(weights.size()));
  }
  if (beta) check_exponent("beta", *beta);
  admit_sample(batch);
  Snapshot snap = snapshot();
  if (snap.size == 0) throw EmptyBufferError("cannot sample from an empty buffer");
  const std::uint64_t stream =
      sync::counter_ref(counters_->sample_stream).fetch_add(1, std::memory_order_relaxed);
  Xoshiro256pp rng = Xoshiro256pp::for_stream(header_->seed, stream);
  std::array<FieldCopy, kMaxFields> copies;
  std::size_t copy_count = 0;
  for (std::size_t f = 0; f < out.size(); ++f) {
    if (!out[f].empty()) copies[copy_count++] = {columns_[f], out[f].data(), row_bytes_[f]};
  }
  const CopyPlan plan(copies.data(), copy_count);
  if (priorities_) {
    sample_prioritized(batch, plan, snap, rng, keys, weights, beta.value_or(this->beta()));
    return;
  }
  constexpr std::size_t kChunk = 64;
  std::array<std::size_t, kChunk> slots;
  const auto redraw = [&rng](std::size_t, const Snapshot& s) {
    return static_cast<std::size_t>(rng.below(s.size));
  };
  for (std::size_t start = 0; start < batch; start += kChunk) {
    const std::size_t n = std::min(kChunk, batch - start);
    for (std::size_t j = 0; j < n; ++j) slots[j] = static_cast<std::size_t>(rng.below(snap.size));
    copy_rows(std::span(slots).first(n), start, snap, plan, keys, redraw);
  }
}

void Buffer::sample_prioritized(std::size_t batch, CopyPlan plan, Snapshot snap, Xoshiro256pp& rng,
                                std::span<std::uint64_t> keys, std::span<float> weights,
                                double beta) {
  // Scratch kept per thread: a prioritized batch needs its slots and probabilities at once.
  thread_local std::vector<std::size_t> slots;
  thread_local std::vector<double> ratios;  // P_i, then P_i / P_min
  slots.resize(batch);
  ratios.resize(batch);
  // Each row's P_i / P_min, from the draw that chose it: a redraw sees the tree as it is then,
  // so its ratio must not mix with the first draw's minimum.
  const auto to_ratios = [](std::span<double> probabilities, PriorityIndex::Draw drawn) {
    for (double& p : probabilities) p /= drawn.min_probability;
  };
  {
    PriorityIndex::Locked locked(*priorities_);
    to_ratios(ratios, locked.draw(snap.size, rng, slots, ratios));
  }
  const auto redraw = [&](std::size_t row, const Snapshot& s) {
    std::size_t slot = 0;
    const std::span<double> ratio(&ratios[row], 1);
    PriorityIndex::Locked locked(*priorities_);
    to_ratios(ratio, locked.draw(s.size, rng, std::span(&slot, 1), ratio));
    return slot;
  };
  copy_rows(slots, 0, snap, plan, keys, redraw);
  if (weights.empty()) return;
  // w_i = (N P_i)^-beta / max_j (N P_j)^-beta = (P_i / P_min)^-beta: N cancels. In float: the
  // weights are float32 anyway, and powf is several times faster than pow.
  const auto exponent = static_cast<float>(-beta);
  for (std::size_t i = 0; i < batch; ++i) {
    weights[i] = std::pow(static_cast<float>(ratios[i]), exponent);
  }
}

std::size_t Buffer::update_priorities(std::span<const std::uint64_t> keys,
                                      std::span<const double> values, PriorityKind kind) {
  if (!priorities_) {
    throw std::logic_error("update_priorities needs a prioritized buffer (strategy '" +
                           std::string(strategy_name(strategy_)) + "')");
  }
  if (keys.size() != values.size()) {
    throw std::invalid_argument("got " + std::to_string(keys.size()) + " indices and " +
                                std::to_string(values.size()) + " values");
  }
  const std::uint64_t issued = next_key();
  thread_local std::vector<double> stored;
  thread_local std::vector<std::size_t> slots;
  stored.resize(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (keys[i] >= issued) {
      throw std::out_of_range("indices[" + std::to_string(i) + "] is " + std::to_string(keys[i]) +
                              ", a key never handed out (the next add gets " +
                              std::to_string(issued) + ")");
    }
    stored[i] = priorities_->stored_priority(values[i], kind, i);
  }
  PriorityIndex::Locked locked(*priorities_);
  // Under the lock, so a writer that overwrites a slot (it sets the new occupant's priority under
  // this lock after publishing it) cannot slip between the check and the update.
  const std::uint64_t base = sync::counter_ref(counters_->base_key).load(std::memory_order_acquire);
  slots.clear();
  std::size_t live = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] < base) continue;  // cleared since
    const std::uint64_t since_clear = keys[i] - base;
    const std::size_t slot = static_cast<std::size_t>(since_clear % capacity_);
    const sync::SeqWord word = sync::seq_ref(seq_[slot]).load(std::memory_order_acquire);
    if (word != sync::published(since_clear / capacity_)) continue;  // overwritten, or mid-write
    slots.push_back(slot);
    stored[live++] = stored[i];
  }
  locked.set(slots, std::span(stored).first(live));
  return live;
}

void Buffer::priorities(std::span<const std::uint64_t> keys, std::span<double> out) {
  if (!priorities_) {
    throw std::logic_error("priorities needs a prioritized buffer (strategy '" +
                           std::string(strategy_name(strategy_)) + "')");
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
  PriorityIndex::Locked locked(*priorities_);
  const std::uint64_t base = sync::counter_ref(counters_->base_key).load(std::memory_order_acquire);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    out[i] = std::numeric_limits<double>::quiet_NaN();
    if (keys[i] < base) continue;
    const std::uint64_t since_clear = keys[i] - base;
    const std::size_t slot = static_cast<std::size_t>(since_clear % capacity_);
    const sync::SeqWord word = sync::seq_ref(seq_[slot]).load(std::memory_order_acquire);
    if (word == sync::published(since_clear / capacity_)) out[i] = locked.get(slot);
  }
}

ConsistencyReport Buffer::check_consistency() {
  const std::string who =
      shared_name().empty() ? std::string("buffer") : "shared buffer '" + shared_name() + "'";
  const auto fail = [&who](const std::string& what) {
    return InvalidRegionError(who + " is inconsistent: " + what);
  };
  ConsistencyReport report;
  WriterRegistry* registry = writer_.registry();
  if (registry != nullptr) {
    if (const std::string problem = registry->check(); !problem.empty()) throw fail(problem);
  }
  const std::uint64_t base = sync::counter_ref(counters_->base_key).load(std::memory_order_acquire);
  std::vector<sync::SeqWord> words(capacity_);
  for (std::size_t slot = 0; slot < capacity_; ++slot) {
    words[slot] = sync::seq_ref(seq_[slot]).load(std::memory_order_acquire);
  }
  // Read after the words: every lap they hold was claimed before this load, so none may be newer.
  const std::uint64_t next = next_key();
  if (next < base) {
    throw fail("the key counter (" + std::to_string(next) + ") is behind the key at the last " +
               "clear (" + std::to_string(base) + ")");
  }
  const std::uint64_t since_clear = next - base;
  for (std::size_t slot = 0; slot < capacity_; ++slot) {
    const sync::SeqWord word = words[slot];
    const std::string where = "slot " + std::to_string(slot) + ": ";
    if (word == sync::kUnwritten) {
      ++report.unwritten;
    } else if (!sync::is_writing(word)) {
      // The newest lap claimed for this slot so far.
      const std::uint64_t claims = since_clear / capacity_ + (slot < since_clear % capacity_);
      if (claims == 0 || sync::laps_behind(word, claims - 1) < 0) {
        throw fail(where + "holds lap " + std::to_string(word >> 1) + ", but only " +
                   std::to_string(claims) + " laps were claimed");
      }
      ++report.readable;
    } else if (word == sync::kAbandoned) {
      ++report.abandoned;
    } else if (registry == nullptr) {
      if (sync::writer_of(word) != sync::kPrivateWriter) {
        throw fail(where + "marked by writer " + std::to_string(sync::writer_of(word)) +
                   " in a private buffer");
      }
      ++report.being_written;
    } else {
      const sync::WriterId holder = sync::writer_of(word);
      if (WriterRegistry::index_of(holder) >= layout_.writer_slots ||
          WriterRegistry::incarnation_of(holder) == 0 ||
          WriterRegistry::incarnation_of(holder) > WriterRegistry::kMaxIncarnation) {
        throw fail(where + "marked by writer " + std::to_string(holder) +
                   ", which no registry entry can name");
      }
      if (registry->known_dead(holder) || registry->liveness(holder) == process::Liveness::kDead) {
        ++report.abandoned;
      } else {
        ++report.being_written;
      }
    }
  }
  report.takeovers = sync::counter_ref(counters_->takeovers).load(std::memory_order_relaxed);
  if (priorities_) {
    PriorityIndex::Locked locked(*priorities_);
    report.repaired = locked.repaired();
    report.repairs = locked.repairs();
    if (const std::string problem = locked.check(); !problem.empty()) throw fail(problem);
  }
  return report;
}

void Buffer::clear() {
  Counters& c = *counters_;
  const std::uint64_t next = sync::counter_ref(c.next_key).load(std::memory_order_acquire);
  sync::counter_ref(c.base_key).store(next, std::memory_order_release);
  for (std::size_t i = 0; i < capacity_; ++i) {
    sync::seq_ref(seq_[i]).store(sync::kUnwritten, std::memory_order_release);
  }
  if (priorities_) PriorityIndex::Locked(*priorities_).clear();
}

}  // namespace replay_buffer
