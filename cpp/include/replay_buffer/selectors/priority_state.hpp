// What the prioritized selectors share: a sum/min/max tree over per-slot priorities in the region,
// the process-shared lock that guards it, and the conversion of TD errors to stored priorities.
//
// Region part: [PriorityControl][SumTree storage][the selector's own parts...], each 64-byte
// aligned. All access to the tree goes through a Guard, which holds the lock, so "one lock
// acquisition per batch" is a property of the call sites.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/selectors/selector.hpp"
#include "replay_buffer/sum_tree.hpp"
#include "replay_buffer/sync.hpp"

namespace replay_buffer {

// The lock of the priority structures and the rank order's bookkeeping, both guarded by it.
struct PriorityControl {
  sync::RegionMutex lock;
  std::uint64_t sorted_count;        // rank only: entries of the rank order
  std::uint64_t changes_since_sort;  // rank only: priorities set since the last sort
  std::uint64_t repairs;             // times a locker found the holder dead and rebuilt
};
static_assert(std::is_standard_layout_v<PriorityControl>);

class PriorityState {
 public:
  // Bytes of [PriorityControl][tree] for `capacity` slots; a multiple of kAlignment. Pure.
  [[nodiscard]] static std::size_t region_bytes(std::size_t capacity);

  // A view of the part at `part`. Thread-safe construction; the region outlives the view.
  PriorityState(std::byte* part, std::size_t capacity, const SelectorParams& params);

  // Sets up the lock in a fresh region; the creator calls it once, before anyone else.
  void init_region();

  // The value stored for a caller's TD error or priority: (|delta| + eps)^alpha when `powered`,
  // else |delta| + eps. Throws std::invalid_argument naming `position` for a NaN or infinite
  // value, a negative priority, or a result above max_stored_priority(capacity). Thread-safe.
  [[nodiscard]] double stored_priority(double value, PriorityKind kind, std::size_t position,
                                       bool powered) const;

  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] SumTree& tree() noexcept { return tree_; }
  [[nodiscard]] PriorityControl& control() noexcept { return *control_; }

  // Holds the lock for a scope. When the previous holder died holding it, rebuilds the tree from
  // the priorities and counts a repair before `repair` (the selector's own) runs.
  class Guard {
   public:
    template <typename Repair>
    Guard(PriorityState& state, Repair&& repair) : state_(state) {
      if (state.control_->lock.lock()) {
        repaired_ = true;
        ++state.control_->repairs;
        state.tree_.rebuild();
        repair();
      }
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    Guard(Guard&& other) noexcept : state_(other.state_), repaired_(other.repaired_) {
      other.owns_ = false;
    }
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
      if (owns_) state_.control_->lock.unlock();
    }
    [[nodiscard]] bool repaired() const noexcept { return repaired_; }

   private:
    PriorityState& state_;
    bool repaired_ = false;
    bool owns_ = true;
  };

  // Gives keys [first_key, first_key + count) that are not below `base` the largest priority in
  // the tree (1 in an empty one), as new items. Caller holds a Guard.
  void insert(std::uint64_t first_key, std::size_t count, std::uint64_t base,
              std::span<std::uint8_t> changed);

 private:
  double alpha_;
  double eps_;
  std::size_t capacity_;
  PriorityControl* control_;
  SumTree tree_;
};

}  // namespace replay_buffer
