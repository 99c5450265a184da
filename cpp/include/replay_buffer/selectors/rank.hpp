// Rank-based prioritized selection (Schaul et al. 2016, §3.3): P(rank r) ∝ (r + 1)^-alpha, ranks
// by q_i = |delta_i| + eps, highest first. The sum tree stores q (its max gives new items their
// priority); an order array in the region lists slots by descending q, and RankTable draws ranks
// stratified and exactly.
//
// Sorting is amortised: the order is brought up to date at the next draw once the priorities set
// since the last sort reach an eighth of the live items (at least 32); until then a changed
// priority keeps its old rank, and items added since the sort (which carry the maximum priority)
// rank first, newest first. Bringing it up to date sorts only the changed slots and merges them
// into the unchanged order: O(n + k log k), about 10 ms at n = 10^6, k = n/8.
//
// Region part: [PriorityState][order: RankEntry x capacity][changed flags: u8 x capacity]. The
// RankTable is a pure function of capacity and alpha, rebuilt by every process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "replay_buffer/rank_table.hpp"
#include "replay_buffer/selectors/priority_state.hpp"

namespace replay_buffer {

// One place of the rank order: a slot and the priority it was sorted by.
struct RankEntry {
  double priority;
  std::uint64_t slot;
};

class RankSelector {
 public:
  static constexpr Strategy kStrategy = Strategy::kRank;
  static constexpr std::string_view kName = "rank";
  static constexpr bool kPrioritized = true;

  [[nodiscard]] static std::size_t region_bytes(std::size_t capacity);
  RankSelector(std::byte* part, std::size_t capacity, const SelectorParams& params);
  void init_region() { state_.init_region(); }
  // |value| + eps; see PriorityState::stored_priority. Thread-safe.
  [[nodiscard]] double stored_priority(double value, PriorityKind kind,
                                       std::size_t position) const {
    return state_.stored_priority(value, kind, position, false);
  }

  // Proof that the caller holds the priority lock. Not thread-safe itself: one per scope.
  class Locked {
   public:
    explicit Locked(RankSelector& selector);
    void insert(std::uint64_t first_key, std::size_t count, std::uint64_t base) {
      selector_.state_.insert(first_key, count, base, selector_.changed_);
    }
    void set(std::span<const std::size_t> slots, std::span<const double> stored);
    // Draws keys.size() items by rank, re-sorting first when due. O(k log n) plus the sort.
    void draw(const LiveKeys& live, Xoshiro256pp& rng, std::span<std::uint64_t> keys,
              std::span<double> ratios);
    void retire(std::size_t slot);
    void clear();
    [[nodiscard]] double get(std::size_t slot) const { return selector_.state_.tree().get(slot); }
    // The trees, for their roots (Buffer::stats). O(1).
    [[nodiscard]] const SumTree& tree() const noexcept { return selector_.state_.tree(); }
    [[nodiscard]] std::string check() const;
    [[nodiscard]] bool repaired() const noexcept { return guard_.repaired(); }
    [[nodiscard]] std::uint64_t repairs() const noexcept {
      return selector_.state_.control().repairs;
    }

   private:
    void sort_ranks(const LiveKeys& live);
    [[nodiscard]] std::size_t rank_to_slot(std::size_t rank, const LiveKeys& live) const noexcept;

    RankSelector& selector_;
    PriorityState::Guard guard_;
  };
  // Takes the priority lock (blocking; repairs after a dead holder). Thread- and process-safe.
  [[nodiscard]] Locked lock() { return Locked(*this); }

 private:
  mutable PriorityState state_;
  std::span<RankEntry> order_;
  std::span<std::uint8_t> changed_;  // set since the last sort
  RankTable table_;
};

static_assert(Selector<RankSelector>);

}  // namespace replay_buffer
