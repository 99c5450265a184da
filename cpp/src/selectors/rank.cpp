#include "replay_buffer/selectors/rank.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {
namespace {

constexpr std::uint64_t kMinChangesBeforeSort = 32;

std::size_t order_offset(std::size_t capacity) { return PriorityState::region_bytes(capacity); }

std::size_t changed_offset(std::size_t capacity) {
  return order_offset(capacity) + align_up(capacity * sizeof(RankEntry));
}

}  // namespace

std::size_t RankSelector::region_bytes(std::size_t capacity) {
  if (capacity > std::numeric_limits<std::size_t>::max() / (4 * sizeof(RankEntry))) {
    throw CapacityError("a rank order of " + std::to_string(capacity) +
                        " slots does not fit in the address space");
  }
  return changed_offset(capacity) + align_up(capacity);
}

RankSelector::RankSelector(std::byte* part, std::size_t capacity, const SelectorParams& params)
    : state_(part, capacity, params),
      order_(reinterpret_cast<RankEntry*>(part + order_offset(capacity)), capacity),
      changed_(reinterpret_cast<std::uint8_t*>(part + changed_offset(capacity)), capacity),
      table_(capacity, params.alpha) {}

RankSelector::Locked::Locked(RankSelector& selector)
    : selector_(selector), guard_(selector.state_, [&selector] {
        // The previous holder died mid-change: the order may be half written. It is rebuilt
        // from the priorities at the next draw.
        selector.state_.control().sorted_count = 0;
        selector.state_.control().changes_since_sort =
            std::numeric_limits<std::uint64_t>::max() / 2;
        std::fill(selector.changed_.begin(), selector.changed_.end(), std::uint8_t{1});
      }) {}

void RankSelector::Locked::set(std::span<const std::size_t> slots,
                               std::span<const double> stored) {
  selector_.state_.tree().set_batch(slots, stored);
  for (const std::size_t slot : slots) selector_.changed_[slot] = 1;
  selector_.state_.control().changes_since_sort += slots.size();
}

void RankSelector::Locked::retire(std::size_t slot) {
  selector_.state_.tree().set(slot, 0.0);
  selector_.changed_[slot] = 1;
  selector_.state_.control().changes_since_sort += 1;
}

void RankSelector::Locked::clear() {
  selector_.state_.tree().reset();
  std::fill(selector_.changed_.begin(), selector_.changed_.end(), std::uint8_t{0});
  selector_.state_.control().sorted_count = 0;
  selector_.state_.control().changes_since_sort = 0;
}

std::string RankSelector::Locked::check() const {
  PriorityState& state = selector_.state_;
  std::string problem = state.tree().check();
  if (!problem.empty()) return "sum tree: " + problem;
  const PriorityControl& control = state.control();
  const std::size_t capacity = state.capacity();
  if (control.sorted_count > capacity) {
    return "rank order: " + std::to_string(control.sorted_count) + " sorted slots in a buffer of " +
           std::to_string(capacity);
  }
  std::vector<bool> seen(capacity);
  for (std::size_t r = 0; r < control.sorted_count; ++r) {
    const std::uint64_t slot = selector_.order_[r].slot;
    if (slot >= capacity || seen[slot]) {
      return "rank order: place " + std::to_string(r) + " holds slot " + std::to_string(slot) +
             (slot < capacity ? " twice" : ", out of range");
    }
    seen[slot] = true;
    if (r > 0 && selector_.order_[r - 1].priority < selector_.order_[r].priority) {
      return "rank order: place " + std::to_string(r) + " is out of order";
    }
  }
  for (std::size_t slot = 0; slot < capacity; ++slot) {
    if (selector_.changed_[slot] > 1) {
      return "rank flags: slot " + std::to_string(slot) + " has flag " +
             std::to_string(selector_.changed_[slot]);
    }
  }
  return {};
}

void RankSelector::Locked::sort_ranks(const LiveKeys& live) {
  const auto before = [](const RankEntry& a, const RankEntry& b) {
    return a.priority > b.priority || (a.priority == b.priority && a.slot < b.slot);
  };
  PriorityState& state = selector_.state_;
  PriorityControl& control = state.control();
  const std::size_t capacity = state.capacity();
  std::span<std::uint8_t> changed = selector_.changed_;
  // Whether a slot holds a live item: the live keys occupy the slots from first's to end's, maybe
  // wrapping round the ring (no division per slot: this runs over every slot).
  const std::size_t size = live.size();
  const auto lo = static_cast<std::size_t>(live.first % capacity);
  const auto hi = static_cast<std::size_t>(live.end % capacity);
  const auto live_slot = [&](std::uint64_t slot) {
    if (slot >= capacity || size == 0) return false;
    if (size == capacity) return true;
    return lo < hi ? (slot >= lo && slot < hi) : (slot >= lo || slot < hi);
  };
  // The order's entries whose slot kept its priority stay sorted as they are.
  std::vector<RankEntry> kept;
  kept.reserve(std::min<std::size_t>(control.sorted_count, size));
  for (std::size_t r = 0; r < control.sorted_count; ++r) {
    const RankEntry& entry = selector_.order_[r];
    if (live_slot(entry.slot) && changed[entry.slot] == 0) kept.push_back(entry);
  }
  // Live slots set since the sort are sorted on their own...
  std::vector<RankEntry> fresh;
  for (std::size_t i = 0, slot = lo; i < size; ++i, slot = slot + 1 == capacity ? 0 : slot + 1) {
    if (changed[slot] != 0) {
      fresh.push_back({state.tree().get(slot), slot});
      changed[slot] = 0;
    }
  }
  std::sort(fresh.begin(), fresh.end(), before);
  // ...and merged in.
  std::merge(kept.begin(), kept.end(), fresh.begin(), fresh.end(), selector_.order_.begin(),
             before);
  control.sorted_count = kept.size() + fresh.size();
  control.changes_since_sort = 0;
}

std::size_t RankSelector::Locked::rank_to_slot(std::size_t rank,
                                               const LiveKeys& live) const noexcept {
  // Items past the sorted prefix were added since the sort: they carry the top priority and rank
  // first, newest first.
  const std::size_t size = live.size();
  const std::size_t sorted =
      std::min<std::size_t>(selector_.state_.control().sorted_count, size);
  const std::size_t unsorted = size - sorted;
  if (rank < unsorted) {
    return static_cast<std::size_t>((live.end - 1 - rank) % selector_.state_.capacity());
  }
  return static_cast<std::size_t>(selector_.order_[rank - unsorted].slot);
}

void RankSelector::Locked::draw(const LiveKeys& live, Xoshiro256pp& rng,
                                std::span<std::uint64_t> keys, std::span<double> ratios) {
  PriorityControl& control = selector_.state_.control();
  const std::size_t size = live.size();
  if (control.sorted_count > size ||
      control.changes_since_sort >= std::max<std::uint64_t>(kMinChangesBeforeSort, size / 8)) {
    sort_ranks(live);
  }
  thread_local std::vector<std::size_t> ranks;
  ranks.resize(keys.size());
  const RankTable& table = selector_.table_;
  table.sample(size, keys.size(), rng, ranks);
  const double smallest = table.probability(size - 1, size);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ratios[i] = table.probability(ranks[i], size) / smallest;
    keys[i] = newest_key_of(rank_to_slot(ranks[i], live), live, selector_.state_.capacity());
  }
}

}  // namespace replay_buffer
