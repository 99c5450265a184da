// The schema-based replay buffer: a fixed-capacity ring of transitions stored column by column in
// one region, with lock-free adds and uniform sampling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/region.hpp"
#include "replay_buffer/schema.hpp"
#include "replay_buffer/sync.hpp"

namespace replay_buffer {

struct BufferOptions {
  std::size_t capacity = 0;
  // Seeds sampling: the n-th sample call on a buffer with this seed draws the same slots every
  // time, whichever thread makes it (so one thread sampling alone gets the same batches).
  std::uint64_t seed = 0;
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
  // Bytes of the whole region: header, sequence words and columns.
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

  // Draws `batch` slots uniformly with replacement and copies each whole transition into `out`
  // (out[i]: `batch` rows of field i, or empty to skip it) and its key into `keys` (size `batch`,
  // or empty). Throws EmptyBufferError when empty, std::invalid_argument on batch == 0 or a wrong
  // field count or size. Thread-safe and lock-free; only ever returns rows as one add wrote them.
  void sample(std::size_t batch, std::span<const FieldOut> out, std::span<std::uint64_t> keys);

  // Forgets every transition; keys keep increasing. Must not overlap add or add_batch; samples
  // that overlap it see the buffer as it was before or after.
  void clear() noexcept;

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

  Schema schema_;
  std::size_t capacity_;
  Layout layout_;
  Region region_;
  // Parts of the region, resolved once: the hot paths use them on every row.
  RegionHeader* header_;
  Counters* counters_;
  sync::SeqWord* seq_;
  std::vector<std::byte*> columns_;
  std::vector<std::size_t> row_bytes_;
};

}  // namespace replay_buffer
