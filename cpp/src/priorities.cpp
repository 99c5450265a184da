#include "replay_buffer/priorities.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace replay_buffer {
namespace {

constexpr std::uint64_t kMinChangesBeforeSort = 32;

// What a new transition gets: the largest priority in the buffer, or 1 in an empty one (as in
// the PER paper's p_1 = 1).
double new_priority(const SumTree& tree) noexcept { return tree.max() > 0.0 ? tree.max() : 1.0; }

}  // namespace

PriorityIndex::PriorityIndex(std::byte* region, const Layout& layout, std::size_t capacity,
                             Strategy strategy, double alpha, double eps)
    : strategy_(strategy),
      alpha_(alpha),
      eps_(eps),
      capacity_(capacity),
      control_(reinterpret_cast<PriorityControl*>(region + layout.priority_control_offset)),
      tree_(std::span<std::byte>(region + layout.tree_offset, SumTree::bytes_for(capacity)),
            capacity) {
  if (strategy == Strategy::kRank) {
    order_ = {reinterpret_cast<RankEntry*>(region + layout.order_offset), capacity};
    changed_ = {reinterpret_cast<std::uint8_t*>(region + layout.changed_offset), capacity};
    rank_table_.emplace(capacity, alpha);
  }
}

void PriorityIndex::init_region() { control_->lock.init(); }

double PriorityIndex::stored_priority(double value, PriorityKind kind, std::size_t position) const {
  if (!std::isfinite(value)) {
    throw std::invalid_argument(
        std::string(kind == PriorityKind::kTdError ? "td_errors" : "priorities") + "[" +
        std::to_string(position) + "] is " + std::to_string(value) + "; it must be finite");
  }
  if (kind == PriorityKind::kPriority && value < 0.0) {
    throw std::invalid_argument("priorities[" + std::to_string(position) + "] is " +
                                std::to_string(value) + "; priorities must be >= 0");
  }
  const double magnitude = std::fabs(value) + eps_;
  return strategy_ == Strategy::kProportional ? std::pow(magnitude, alpha_) : magnitude;
}

PriorityIndex::Locked::Locked(PriorityIndex& index)
    : index_(index), lock_(index.control_->lock, [this, &index] {
        // The previous holder died mid-change: sums may disagree with the priorities, and the
        // rank order may be half written. Both are rebuilt from the priorities themselves.
        repaired_ = true;
        ++index.control_->repairs;
        index.tree_.rebuild();
        index.control_->sorted_count = 0;
        index.control_->changes_since_sort = std::numeric_limits<std::uint64_t>::max() / 2;
      }) {}

void PriorityIndex::Locked::mark_changed(std::size_t slot) noexcept {
  if (!index_.changed_.empty()) index_.changed_[slot] = 1;
}

void PriorityIndex::Locked::insert(std::size_t first, std::size_t count) {
  SumTree& tree = index_.tree_;
  const double priority = new_priority(tree);
  if (count == 1) {
    tree.set(first, priority);
    mark_changed(first);
  } else {
    // Kept per thread: this runs under the priority lock, where an allocation per call would
    // hold every other thread and process up.
    thread_local std::vector<std::size_t> slots;
    thread_local std::vector<double> priorities;
    slots.resize(count);
    priorities.assign(count, priority);
    for (std::size_t i = 0; i < count; ++i) {
      slots[i] = (first + i) % index_.capacity_;
      mark_changed(slots[i]);
    }
    tree.set_batch(slots, priorities);
  }
  index_.control_->changes_since_sort += count;
}

void PriorityIndex::Locked::set(std::span<const std::size_t> slots,
                                std::span<const double> stored) {
  index_.tree_.set_batch(slots, stored);
  for (const std::size_t slot : slots) mark_changed(slot);
  index_.control_->changes_since_sort += slots.size();
}

void PriorityIndex::Locked::retire(std::size_t slot) {
  index_.tree_.set(slot, 0.0);
  mark_changed(slot);
  index_.control_->changes_since_sort += 1;
}

std::string PriorityIndex::Locked::check() const {
  std::string problem = index_.tree_.check();
  if (!problem.empty()) return "sum tree: " + problem;
  if (index_.strategy_ != Strategy::kRank) return {};
  const PriorityControl& control = *index_.control_;
  if (control.sorted_count > index_.capacity_) {
    return "rank order: " + std::to_string(control.sorted_count) + " sorted slots in a buffer of " +
           std::to_string(index_.capacity_);
  }
  std::vector<bool> seen(index_.capacity_);
  for (std::size_t r = 0; r < control.sorted_count; ++r) {
    const std::uint64_t slot = index_.order_[r].slot;
    if (slot >= index_.capacity_ || seen[slot]) {
      return "rank order: place " + std::to_string(r) + " holds slot " + std::to_string(slot) +
             (slot < index_.capacity_ ? " twice" : ", out of range");
    }
    seen[slot] = true;
    if (r > 0 && index_.order_[r - 1].priority < index_.order_[r].priority) {
      return "rank order: place " + std::to_string(r) + " is out of order";
    }
  }
  for (std::size_t slot = 0; slot < index_.changed_.size(); ++slot) {
    if (index_.changed_[slot] > 1) {
      return "rank flags: slot " + std::to_string(slot) + " has flag " +
             std::to_string(index_.changed_[slot]);
    }
  }
  return {};
}

void PriorityIndex::Locked::clear() {
  index_.tree_.reset();
  std::fill(index_.changed_.begin(), index_.changed_.end(), std::uint8_t{0});
  index_.control_->sorted_count = 0;
  index_.control_->changes_since_sort = 0;
}

void PriorityIndex::Locked::sort_ranks(std::size_t size) {
  const auto before = [](const RankEntry& a, const RankEntry& b) {
    return a.priority > b.priority || (a.priority == b.priority && a.slot < b.slot);
  };
  const std::size_t sorted = std::min<std::size_t>(index_.control_->sorted_count, size);
  std::span<std::uint8_t> changed = index_.changed_;
  // The order's entries whose slot kept its priority stay sorted as they are.
  std::vector<RankEntry> kept;
  kept.reserve(sorted);
  for (std::size_t r = 0; r < index_.control_->sorted_count; ++r) {
    const RankEntry& entry = index_.order_[r];
    if (entry.slot < size && changed[entry.slot] == 0) kept.push_back(entry);
  }
  // Slots set since the sort, and slots the order never held, are sorted on their own...
  std::vector<RankEntry> fresh;
  for (std::size_t slot = 0; slot < size; ++slot) {
    if (changed[slot] != 0 || slot >= sorted) {
      fresh.push_back({index_.tree_.get(slot), slot});
      changed[slot] = 0;
    }
  }
  std::sort(fresh.begin(), fresh.end(), before);
  // ...and merged in.
  std::merge(kept.begin(), kept.end(), fresh.begin(), fresh.end(), index_.order_.begin(), before);
  index_.control_->sorted_count = kept.size() + fresh.size();
  index_.control_->changes_since_sort = 0;
}

std::size_t PriorityIndex::Locked::rank_to_slot(std::size_t rank, std::size_t size) const noexcept {
  // Slots past the sorted prefix were added since the sort: they carry the top priority and
  // rank first, newest first.
  const std::size_t sorted = std::min<std::size_t>(index_.control_->sorted_count, size);
  const std::size_t unsorted = size - sorted;
  if (rank < unsorted) return size - 1 - rank;
  return static_cast<std::size_t>(index_.order_[rank - unsorted].slot);
}

PriorityIndex::Draw PriorityIndex::Locked::draw(std::size_t size, Xoshiro256pp& rng,
                                                std::span<std::size_t> slots,
                                                std::span<double> probabilities) {
  const SumTree& tree = index_.tree_;
  if (index_.strategy_ == Strategy::kRank) {
    PriorityControl& control = *index_.control_;
    if (control.sorted_count > size ||
        control.changes_since_sort >= std::max<std::uint64_t>(kMinChangesBeforeSort, size / 8)) {
      sort_ranks(size);
    }
    const RankTable& table = *index_.rank_table_;
    table.sample(size, slots.size(), rng, slots);
    for (std::size_t i = 0; i < slots.size(); ++i) {
      probabilities[i] = table.probability(slots[i], size);
      slots[i] = rank_to_slot(slots[i], size);
    }
    return {table.probability(size - 1, size)};
  }
  const double total = tree.total();
  if (!(total > 0.0)) {
    const double uniform = 1.0 / static_cast<double>(size);
    for (std::size_t i = 0; i < slots.size(); ++i) {
      slots[i] = static_cast<std::size_t>(rng.below(size));
      probabilities[i] = uniform;
    }
    return {uniform};
  }
  tree.sample_stratified(slots.size(), rng, slots);
  for (std::size_t i = 0; i < slots.size(); ++i) probabilities[i] = tree.get(slots[i]) / total;
  return {tree.min_positive() / total};
}

}  // namespace replay_buffer
