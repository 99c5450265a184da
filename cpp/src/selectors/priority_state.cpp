#include "replay_buffer/selectors/priority_state.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {

std::size_t PriorityState::region_bytes(std::size_t capacity) {
  const std::size_t control = align_up(sizeof(PriorityControl));
  const std::size_t tree = SumTree::bytes_for(capacity);
  if (tree > std::numeric_limits<std::size_t>::max() - control) {
    throw CapacityError("a priority tree of " + std::to_string(capacity) +
                        " leaves does not fit in the address space");
  }
  return control + tree;
}

PriorityState::PriorityState(std::byte* part, std::size_t capacity, const SelectorParams& params)
    : alpha_(params.alpha),
      eps_(params.eps),
      capacity_(capacity),
      control_(reinterpret_cast<PriorityControl*>(part)),
      tree_(std::span<std::byte>(part + align_up(sizeof(PriorityControl)),
                                 SumTree::bytes_for(capacity)),
            capacity) {}

void PriorityState::init_region() { control_->lock.init(); }

double PriorityState::stored_priority(double value, PriorityKind kind, std::size_t position,
                                      bool powered) const {
  const char* what = kind == PriorityKind::kTdError ? "td_errors" : "priorities";
  if (!std::isfinite(value)) {
    throw std::invalid_argument(std::string(what) + "[" + std::to_string(position) + "] is " +
                                std::to_string(value) + "; it must be finite");
  }
  if (kind == PriorityKind::kPriority && value < 0.0) {
    throw std::invalid_argument("priorities[" + std::to_string(position) + "] is " +
                                std::to_string(value) + "; priorities must be >= 0");
  }
  const double magnitude = std::fabs(value) + eps_;
  const double stored = powered ? std::pow(magnitude, alpha_) : magnitude;
  const double largest = max_stored_priority(capacity_);
  if (!(stored <= largest)) {
    char text[160];
    std::snprintf(text, sizeof(text),
                  "%s[%zu] is %.6g, which gives priority %.6g; a buffer of capacity %zu stores "
                  "at most %.6g (so that sums of priorities stay finite)",
                  what, position, value, stored, capacity_, largest);
    throw std::invalid_argument(text);
  }
  return stored;
}

void PriorityState::insert(std::uint64_t first_key, std::size_t count, std::uint64_t base,
                           std::span<std::uint8_t> changed) {
  // What a new item gets: the largest priority in the buffer, or 1 in an empty one (as in the
  // PER paper's p_1 = 1).
  const double priority = tree_.max() > 0.0 ? tree_.max() : 1.0;
  // Kept per thread: this runs under the priority lock, where an allocation per call would hold
  // every other thread and process up.
  thread_local std::vector<std::size_t> slots;
  thread_local std::vector<double> priorities;
  slots.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t key = first_key + i;
    if (key < base) continue;  // cleared while it was being written
    const auto slot = static_cast<std::size_t>(key % capacity_);
    slots.push_back(slot);
    if (!changed.empty()) changed[slot] = 1;
  }
  if (slots.size() == 1) {
    tree_.set(slots[0], priority);
  } else if (!slots.empty()) {
    priorities.assign(slots.size(), priority);
    tree_.set_batch(slots, priorities);
  }
  control_->changes_since_sort += slots.size();
}

}  // namespace replay_buffer
