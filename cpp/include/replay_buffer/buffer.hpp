// The schema-based replay buffer: a fixed-capacity ring of transitions stored column by column in
// one region, with lock-free adds and uniform sampling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/priorities.hpp"
#include "replay_buffer/region.hpp"
#include "replay_buffer/schema.hpp"
#include "replay_buffer/strategy.hpp"
#include "replay_buffer/sync.hpp"

namespace replay_buffer {

struct BufferOptions {
  std::size_t capacity = 0;
  // Seeds sampling: the n-th sample call on a buffer with this seed draws the same slots every
  // time, whichever thread makes it (so one thread sampling alone gets the same batches).
  std::uint64_t seed = 0;
  Strategy strategy = Strategy::kUniform;
  // Prioritized strategies only. alpha: how much priorities count (0 = uniform), fixed for the
  // buffer's life. beta: the importance-weight exponent, changeable at any time. eps: added to
  // every |TD error| so no transition's priority is 0.
  double alpha = 0.6;
  double beta = 0.4;
  double eps = 1e-6;
};

// One field's bytes for `n` consecutive rows, in the field's dtype, C order.
using FieldBytes = std::span<const std::byte>;
// Where a sample writes one field's rows; an empty span skips that field.
using FieldOut = std::span<std::byte>;

class Buffer {
 public:
  // Throws std::invalid_argument for a bad schema and CapacityError for capacity 0 or a size this
  // machine cannot hold.
  Buffer(Schema schema, BufferOptions options);

  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  // Immutable after construction: all of these are thread-safe.
  [[nodiscard]] const Schema& schema() const noexcept { return schema_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return header_->seed; }
  [[nodiscard]] Strategy strategy() const noexcept { return strategy_; }
  [[nodiscard]] double alpha() const noexcept { return header_->alpha; }
  [[nodiscard]] double eps() const noexcept { return header_->eps; }
  // Bytes of the whole region: header, sequence words, columns and priority structures.
  [[nodiscard]] std::size_t region_bytes() const noexcept { return region_.size(); }

  // Transitions held: adds begun since the last clear, at most capacity. Thread-safe.
  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] bool is_full() const noexcept { return size() == capacity_; }
  // Keys handed out since the buffer was made (the next add gets this key). Thread-safe.
  [[nodiscard]] std::uint64_t next_key() const noexcept;

  // Appends one transition, overwriting the oldest when full, and returns its key.
  // `row[i]` holds field i's bytes (exactly its row_bytes). Throws std::invalid_argument, leaving
  // the buffer unchanged, on a wrong field count or size.
  // Thread-safe and lock-free; must not overlap clear().
  std::uint64_t add(std::span<const FieldBytes> row);

  // Appends `count` transitions; `columns[i]` holds `count` rows of field i. Returns the first key
  // (the rest follow consecutively). When count exceeds capacity only the last `capacity` rows are
  // kept, as if added one by one. Throws std::invalid_argument (buffer unchanged) on a wrong field
  // count, size, or count == 0. Thread-safe and lock-free; must not overlap clear().
  std::uint64_t add_batch(std::span<const FieldBytes> columns, std::size_t count);

  // Draws `batch` transitions with replacement (uniformly, or by priority) and copies each whole
  // transition into `out` (out[i]: `batch` rows of field i, or empty to skip it), its key into
  // `keys` (size `batch`, or empty) and, for prioritized buffers, its importance weight
  // (N * P(i))^-beta / max_j (N * P(j))^-beta into `weights` (size `batch`, or empty), with
  // `beta` overriding the buffer's for this call. Throws EmptyBufferError when empty,
  // std::invalid_argument on batch == 0, a wrong field count or size, weights or beta asked of a
  // uniform buffer, or a bad beta. Thread-safe; uniform sampling is lock-free, prioritized takes
  // the priority lock once per batch (copies happen outside it). Only ever returns rows as one
  // add wrote them.
  void sample(std::size_t batch, std::span<const FieldOut> out, std::span<std::uint64_t> keys,
              std::span<float> weights = {}, std::optional<double> beta = std::nullopt);

  // Sets the priorities of the transitions with the given keys from TD errors or priorities
  // (see PriorityKind); a key listed twice ends with its last value. Keys of transitions
  // overwritten (or cleared) since they were sampled are ignored, never applied to the slot's new
  // occupant. Returns how many were applied. Throws, changing nothing, std::invalid_argument for
  // spans of different sizes, a NaN or infinite value or a negative priority, std::out_of_range
  // for a key never handed out, and std::logic_error on a uniform buffer. Thread-safe: one
  // priority lock acquisition per call.
  std::size_t update_priorities(std::span<const std::uint64_t> keys, std::span<const double> values,
                                PriorityKind kind = PriorityKind::kTdError);

  // The importance-weight exponent used by sample when none is given. Thread-safe.
  [[nodiscard]] double beta() const noexcept;
  // Throws std::invalid_argument unless beta is finite and >= 0. Thread-safe.
  void set_beta(double beta);

  // Forgets every transition; keys keep increasing. Must not overlap add or add_batch; samples
  // that overlap it see the buffer as it was before or after.
  void clear();

  // The whole stored column of field i: capacity rows in slot order (slot = (key - key at last
  // clear) mod capacity). Rows may be mid-write while other threads add. Thread-safe.
  [[nodiscard]] std::span<const std::byte> column(std::size_t field) const noexcept;

 private:
  struct Snapshot;
  // One field a sample copies: its column, where its rows go, and their size.
  struct FieldCopy {
    const std::byte* column;
    std::byte* out;
    std::size_t row_bytes;
  };
  using CopyPlan = std::span<const FieldCopy>;

  [[nodiscard]] Snapshot snapshot() const noexcept;

  void check_inputs(std::span<const FieldBytes> columns, std::size_t rows) const;
  void check_outputs(std::span<const FieldOut> out, std::span<const std::uint64_t> keys,
                     std::size_t batch) const;
  // Claims slot for lap `lap`; false when a newer lap already holds it (our row is stale).
  [[nodiscard]] bool begin_write(std::size_t slot, std::uint64_t lap) noexcept;
  void end_write(std::size_t slot, std::uint64_t lap) noexcept;
  void write_rows(std::span<const FieldBytes> columns, std::size_t first_row,
                  std::size_t first_slot, std::size_t rows) noexcept;
  // Copies slot into row `row` of the plan's outputs; false if the slot is unwritten or changed
  // during the copy.
  [[nodiscard]] bool try_read(std::size_t slot, const Snapshot& snap, CopyPlan plan,
                              std::size_t row, std::uint64_t& key) const noexcept;
  void prefetch_row(std::size_t slot, CopyPlan plan) const noexcept;
  // Copies the rows of `slots` (drawn from snapshot `snap`) into rows first_row... of the plan's
  // outputs and `keys`; a slot that cannot be read whole is replaced by `redraw(row, snap)`.
  template <typename Redraw>
  void copy_rows(std::span<const std::size_t> slots, std::size_t first_row, Snapshot& snap,
                 CopyPlan plan, std::span<std::uint64_t> keys, Redraw&& redraw) const;
  void sample_prioritized(std::size_t batch, CopyPlan plan, Snapshot snap, Xoshiro256pp& rng,
                          std::span<std::uint64_t> keys, std::span<float> weights, double beta);
  // Gives newly written slots their priority, under one lock acquisition.
  void insert_priorities(std::size_t first_slot, std::size_t count);

  Schema schema_;
  std::size_t capacity_;
  Strategy strategy_;
  Layout layout_;
  Region region_;
  // Parts of the region, resolved once: the hot paths use them on every row.
  RegionHeader* header_;
  Counters* counters_;
  sync::SeqWord* seq_;
  std::vector<std::byte*> columns_;
  std::vector<std::size_t> row_bytes_;
  std::optional<PriorityIndex> priorities_;  // prioritized strategies only
};

}  // namespace replay_buffer
