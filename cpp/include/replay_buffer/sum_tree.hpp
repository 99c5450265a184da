// Sum and min trees over the priorities of proportional prioritized replay, in double precision,
// inside memory the caller provides (a part of a region).
//
// An implicit 8-ary tree stored level by level: value i of level l+1 is the sum of the 8 values
// i*8 .. i*8+7 of level l, which fill one 64-byte line, so a root-to-leaf walk reads one line per
// level (7 at 10^6 leaves) and a batch walks all its items one level at a time, prefetching the
// next level's lines for every item before scanning any of them. Level 0 holds the priorities.
//
//   [root line: total, min, max][sum level h-1 (<= 8 values)]...[sum level 0: the priorities]
//   [min level h-1]...[min level 1][max level h-1]...[max level 1]
//
// The min levels mirror the sum levels with "smallest positive value below", where 0 means "no
// positive priority below"; the max levels hold the largest value below. All-zero bytes are
// therefore a valid empty tree: fresh shared memory needs no initialisation, and another process
// attaches by constructing a view on the same bytes. The storage holds numbers only, no pointers.
// About 1.43 doubles per leaf (11.4 bytes).
//
// Every parent is recomputed from its 8 children (never adjusted by a delta), with the same
// function in set, set_batch and rebuild, so a parent is always exactly what rebuild() would
// make it: sums do not drift however many updates are applied.
//
// Not internally synchronised: the caller holds the tree's lock across every call, const ones
// included, taking it once per batch.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>

#include "replay_buffer/random.hpp"

namespace replay_buffer {

class SumTree {
 public:
  static constexpr std::size_t kFanout = 8;  // doubles per 64-byte line

  // Bytes of storage a tree of `capacity` leaves needs; a multiple of kAlignment. Throws
  // CapacityError when capacity is 0 or the size overflows. Thread-safe (pure).
  [[nodiscard]] static std::size_t bytes_for(std::size_t capacity);

  // A view of the tree of `capacity` leaves kept in `storage`, which must start on a 64-byte
  // boundary and hold bytes_for(capacity) bytes (std::invalid_argument otherwise). Does not touch
  // the storage: all-zero storage is an empty tree; existing contents are adopted as they are.
  // Thread-safe (touches nothing shared).
  SumTree(std::span<std::byte> storage, std::size_t capacity);

  // Thread-safe (a property of the view, not of the storage).
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  // Sets every priority to 0. Caller holds the lock.
  void reset() noexcept;

  // Sets one priority, O(log n). Throws std::out_of_range for leaf >= capacity() and
  // std::invalid_argument for a priority that is negative or not finite; the tree is unchanged
  // then. Priorities whose sum overflows a double are not detected. Caller holds the lock.
  void set(std::size_t leaf, double priority);

  // Sets leaves[i] to priorities[i] for every i; a leaf listed twice ends with its last priority.
  // Validates everything before changing anything (same exceptions as set(), and
  // std::invalid_argument for spans of different sizes), then updates level by level with the
  // next level's lines prefetched, O(batch log n). Caller holds the lock.
  void set_batch(std::span<const std::size_t> leaves, std::span<const double> priorities);

  // Throws std::out_of_range for leaf >= capacity(). Caller holds the lock.
  [[nodiscard]] double get(std::size_t leaf) const;

  // Sum of all priorities, O(1). Caller holds the lock.
  [[nodiscard]] double total() const noexcept { return values_[0]; }

  // Smallest priority > 0, O(1); +infinity when every priority is 0. Caller holds the lock.
  [[nodiscard]] double min_positive() const noexcept;
  // Largest priority, O(1); 0 when every priority is 0. Caller holds the lock.
  [[nodiscard]] double max() const noexcept { return values_[2]; }

  // The leaf i with prefix_sum(i) <= u < prefix_sum(i + 1), O(log n). Always a leaf with a
  // priority > 0, below capacity(), whatever rounding does: u < 0 or NaN reads as 0, and a u at or
  // past the end of a subtree (u >= total(), or rounding inside the walk) takes its last positive
  // leaf. Throws EmptyBufferError when total() is 0. Caller holds the lock.
  [[nodiscard]] std::size_t find_prefix(double u) const;

  // Stratified sampling as in the PER paper: splits [0, total()) into `batch` equal segments and
  // writes to out_leaves[j] the leaf under a uniform point of segment j. Each leaf's expected
  // count in a batch is exactly batch * priority / total(); the same rules as find_prefix keep
  // every result a positive-priority leaf. Throws std::invalid_argument when out_leaves.size() !=
  // batch and EmptyBufferError when total() is 0. Caller holds the lock.
  void sample_stratified(std::size_t batch, Xoshiro256pp& rng,
                         std::span<std::size_t> out_leaves) const;

  // Recomputes everything else from the priorities, O(n): repairs a tree a writer left
  // half-updated (a process that died holding the lock), in which a walk could end on a
  // zero-priority leaf (never one >= capacity()). Caller holds the lock.
  void rebuild() noexcept;

  // A description of the first value that differs from what rebuild() would make it (a sum, min
  // or max, padding that is not 0, a priority that is negative or not finite), or empty when the
  // tree is exactly consistent. O(n). Caller holds the lock.
  [[nodiscard]] std::string check() const;

 private:
  // 8^21 > 2^63, so a size_t capacity never needs more levels.
  static constexpr std::size_t kMaxLevels = 22;

  struct Shape {
    std::size_t levels = 0;                            // sum levels, leaves included
    std::array<std::size_t, kMaxLevels> width{};       // values in use per level
    std::array<std::size_t, kMaxLevels> sum_offset{};  // in doubles, from the storage start
    std::array<std::size_t, kMaxLevels> min_offset{};  // [0] is unused: leaves serve as level 0
    std::array<std::size_t, kMaxLevels> max_offset{};  // likewise
    std::size_t total_doubles = 0;
  };
  [[nodiscard]] static Shape shape_for(std::size_t capacity);

  [[nodiscard]] double* sum_level(std::size_t level) const noexcept {
    return values_.data() + shape_.sum_offset[level];
  }
  // What level-l mins are computed from: the priorities themselves at level 0.
  [[nodiscard]] double* min_level(std::size_t level) const noexcept {
    return values_.data() + (level == 0 ? shape_.sum_offset[0] : shape_.min_offset[level]);
  }
  [[nodiscard]] double* max_level(std::size_t level) const noexcept {
    return values_.data() + (level == 0 ? shape_.sum_offset[0] : shape_.max_offset[level]);
  }
  // Recomputes value `node` of `level` (>= 1) in all three trees from its 8 children.
  void refresh(std::size_t level, std::size_t node) noexcept;
  void refresh_root() noexcept;
  [[nodiscard]] std::size_t descend(double u) const noexcept;

  std::span<double> values_;
  std::size_t capacity_;
  Shape shape_;
};

}  // namespace replay_buffer
