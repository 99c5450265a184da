// The slot ring of a buffer: keys, slots, per-slot sequence words, the write protocol, and the
// validated read of one row or of a window of rows.
//
// Keys come from a 64-bit counter in the region. Key k lives in slot k mod capacity on lap
// k / capacity — absolute laps, counted from key 0, never from the last clear. A clear only moves
// the base key (the first key that is not cleared) up to the counter: every older row then reads
// as cleared whatever its sequence word says. So a clear is one atomic store, a process killed at
// any instant of it leaves a consistent ring, and adds that overlap a clear are simply cleared
// with it or kept after it, by their keys.
//
// Memory orderings (they matter on ARM, whose model is weaker than x86's):
// - next_key: fetch_add/CAS acq_rel. Claims need no ordering with row data (the sequence word
//   protocol orders that); acquire/release keeps counter reads by rate limiters monotonic with
//   the rows a caller has seen.
// - base_key: store release by clear, load acquire by readers: a reader that sees the new base
//   never returns a row the clear removed.
// - sequence words: see sync.hpp and docs/architecture.md ("Memory orderings").
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/rate_limiter.hpp"
#include "replay_buffer/sync.hpp"
#include "replay_buffer/writers.hpp"

namespace replay_buffer {

// One field's bytes for `n` consecutive rows, in the field's dtype, C order.
using FieldBytes = std::span<const std::byte>;
// Where a read writes one field's rows; an empty span skips that field.
using FieldOut = std::span<std::byte>;

// One field a read copies: its column, where its rows go, and their size.
struct FieldCopy {
  const std::byte* column;
  std::byte* out;
  std::size_t row_bytes;
};
using CopyPlan = std::span<const FieldCopy>;

// The keys live at one moment: [first, end), at most capacity of them, with where the first and
// the last of them sit in the ring (computed once per snapshot, so that mapping a drawn key to
// its slot costs no division).
struct LiveKeys {
  std::uint64_t base;   // the first key not cleared
  std::uint64_t first;  // the oldest key not overwritten: max(base, end - capacity)
  std::uint64_t end;    // keys handed out so far
  std::size_t first_slot = 0;        // first mod capacity
  std::uint64_t first_lap = 0;       // first / capacity
  std::size_t last_slot = 0;         // (end - 1) mod capacity, when end >= 1
  std::uint64_t last_lap_start = 0;  // end - 1 - last_slot
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(end - first); }
};

// Where a key's row sits: its slot and its lap.
struct SlotLap {
  std::size_t slot;
  std::uint64_t lap;
};

class Ring {
 public:
  // A view of the ring parts of a region. `writer` marks this process's writes; its registry
  // (shared regions only) tells live writers from dead ones. All outlive the ring. Thread-safe.
  Ring(std::byte* region, const Layout& layout, const Schema& schema, WriterClaim& writer);

  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t slot_of(std::uint64_t key) const noexcept {
    return static_cast<std::size_t>(key % capacity_);
  }
  [[nodiscard]] std::uint64_t lap_of(std::uint64_t key) const noexcept { return key / capacity_; }

  // The live keys now: two acquire loads. Thread-safe.
  [[nodiscard]] LiveKeys live_keys() const noexcept;
  // Keys handed out so far. Thread-safe.
  [[nodiscard]] std::uint64_t next_key() const noexcept;
  // The first key not cleared. Thread-safe.
  [[nodiscard]] std::uint64_t base_key() const noexcept;

  // Hands out `count` consecutive keys and returns the first, after `limit` admits them (waiting
  // as it says, with inserts and samples counted since the last clear). Throws RateLimitTimeout
  // after the limit's timeout, WaitCancelled when `cancels` moves, and std::invalid_argument for
  // a batch the limit could never admit. Thread- and process-safe; lock-free without a ratio
  // limit.
  [[nodiscard]] std::uint64_t claim(std::size_t count, const RateLimit& limit,
                                    const std::atomic<std::uint64_t>* cancels = nullptr);
  // Items sampled since the last clear (what the rate limiter compares). Thread-safe.
  [[nodiscard]] std::uint64_t sampled_since_clear() const noexcept;

  // The word this process marks the slots it writes with (claims a writer entry on first use in a
  // shared region). Thread-safe.
  [[nodiscard]] sync::SeqWord writer_word() { return writer_.word(); }
  // Claims `at` (a key's slot and lap), marking its sequence word with `mine` (writer_word()),
  // and returns true; false when a newer lap already holds the slot (this row would be
  // overwritten at once: skip it). Waits for another live writer of the slot; takes the slot
  // over from one whose process died mid-write. Thread- and process-safe.
  [[nodiscard]] bool begin_write(SlotLap at, sync::SeqWord mine) noexcept;
  // Copies `rows` rows, starting at row first_row of `columns`, into consecutive slots from
  // first_slot (which the caller holds). Thread-safe for slots the caller holds.
  void write(std::span<const FieldBytes> columns, std::size_t first_row, std::size_t first_slot,
             std::size_t rows) noexcept;
  // Publishes the row at `at` (release): readers may return it from now on. Caller holds the slot.
  void end_write(SlotLap at) noexcept;

  // Where `key` sits: without a division when key lies within a capacity of live.first. Pure.
  [[nodiscard]] SlotLap locate(std::uint64_t key, const LiveKeys& live) const noexcept {
    if (key >= live.first && key - live.first < capacity_) {
      std::size_t slot = live.first_slot + static_cast<std::size_t>(key - live.first);
      std::uint64_t lap = live.first_lap;
      if (slot >= capacity_) {
        slot -= capacity_;
        ++lap;
      }
      return {slot, lap};
    }
    return {slot_of(key), lap_of(key)};
  }
  [[nodiscard]] SlotLap locate(std::uint64_t key) const noexcept {
    return {slot_of(key), lap_of(key)};
  }
  // Copies the row in the slot of `key` into row `row` of the plan's outputs when it is whole and
  // not cleared, and reports whose row it is in `actual` (key itself, or another lap of that
  // slot: an older one whose successor is still being written, or a newer one written since
  // `live` was taken). False when the slot is mid-write, unwritten, cleared, or changed during
  // the copy. Thread- and process-safe, lock-free.
  [[nodiscard]] bool try_read(std::uint64_t key, const LiveKeys& live, CopyPlan plan,
                              std::size_t row, std::uint64_t& actual) const noexcept;
  // Copies the rows of exactly `keys` (keys[i] into row first_row + i of the plan's outputs),
  // validated together: true only if every row was published for that very key, is not cleared,
  // and none changed during the copies — all or none. The window read that items spanning
  // several steps use. Thread- and process-safe, lock-free.
  [[nodiscard]] bool read_window(std::span<const std::uint64_t> keys, std::uint64_t base,
                                 CopyPlan plan, std::size_t first_row) const noexcept;
  // The slot of `key` if it holds key's published row and key is not cleared (the key resolver
  // that priority updates and lookups share). A snapshot: the row may be overwritten right after,
  // so callers that act on it hold a lock writers also take. Thread-safe.
  [[nodiscard]] std::optional<std::size_t> live_slot(std::uint64_t key) const noexcept;
  // Starts loading a slot's sequence word and the plan's rows of it into the cache.
  void prefetch(std::size_t slot, CopyPlan plan) const noexcept;

  // Forgets every row: moves the base key up to the key counter (one atomic compare-exchange),
  // then restarts the rate limiter's count of sampled items. Thread- and process-safe (adds that
  // overlap it are cleared or kept by their keys).
  void clear() noexcept;

  // Field i's column: capacity rows in slot order. Thread-safe.
  [[nodiscard]] std::byte* column(std::size_t field) const noexcept { return columns_[field]; }
  [[nodiscard]] std::size_t row_bytes(std::size_t field) const noexcept {
    return row_bytes_[field];
  }
  // The sequence word of a slot, for the consistency checker and reclaiming. Thread-safe.
  [[nodiscard]] std::atomic_ref<sync::SeqWord> word(std::size_t slot) const noexcept {
    return sync::seq_ref(seq_[slot]);
  }
  // The key whose published row the even word `word` of `at.slot` holds, given a lap `at.lap` of
  // that slot at most 2^30 laps away; -1 for a slot never written. Pure.
  [[nodiscard]] std::int64_t key_in(sync::SeqWord word, SlotLap at) const noexcept {
    const std::int64_t lap = static_cast<std::int64_t>(at.lap) - sync::laps_behind(word, at.lap);
    if (lap < 0) return -1;
    return lap * static_cast<std::int64_t>(capacity_) + static_cast<std::int64_t>(at.slot);
  }
  // Slots taken over from writers that died mid-write, since the region was made. Thread-safe.
  [[nodiscard]] std::uint64_t takeovers() const noexcept;
  [[nodiscard]] WriterRegistry* registry() noexcept { return writer_.registry(); }

 private:
  struct HolderWatch;
  // Whether the writer that marked a slot with the odd word `held` has died, timing how long it
  // has held it in `watch` (only after holding it a millisecond is the OS asked).
  [[nodiscard]] bool holder_died(sync::SeqWord held, HolderWatch& watch) noexcept;

  std::size_t capacity_;
  Counters* counters_;
  sync::SeqWord* seq_;
  std::vector<std::byte*> columns_;
  std::vector<std::size_t> row_bytes_;
  WriterClaim& writer_;
};

}  // namespace replay_buffer
