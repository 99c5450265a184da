// The priority side of a prioritized buffer: which slot is drawn how often.
//
// Proportional: a sum tree over p_i = (|delta_i| + eps)^alpha; a batch is drawn stratified (one
// point per equal segment of the total), P(i) = p_i / total.
//
// Rank-based: the same tree stores q_i = |delta_i| + eps (its max gives new transitions their
// priority); an order array lists slots by descending q. P(rank r) = (r + 1)^-alpha / sum, drawn
// stratified through RankTable. Sorting is amortised: the order is brought up to date at the next
// draw once the priorities set since the last sort reach an eighth of the buffer (at least 32);
// until then a changed priority keeps its old rank, and transitions added since the sort (which
// carry the maximum priority) rank first, newest first. Bringing it up to date sorts only the k
// changed slots and merges them into the unchanged order: O(n + k log k), about 10 ms at
// n = 10^6, k = n/8; amortised, a few operations per priority set.
//
// Everything here lives in the region except the RankTable (a pure function of capacity and
// alpha, rebuilt by every process). All access goes through Locked, which holds the region's
// priority lock, so "one lock acquisition per batch" is a property of the call sites.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/random.hpp"
#include "replay_buffer/rank_table.hpp"
#include "replay_buffer/strategy.hpp"
#include "replay_buffer/sum_tree.hpp"

namespace replay_buffer {

class PriorityIndex {
 public:
  // A view of the priority parts of a region laid out by `layout`. Does not write to it.
  // Thread-safe construction; the region outlives the index.
  PriorityIndex(std::byte* region, const Layout& layout, std::size_t capacity, Strategy strategy,
                double alpha, double eps);

  // Sets up the lock in a fresh region; the creator calls it once, before anyone else.
  void init_region();

  [[nodiscard]] Strategy strategy() const noexcept { return strategy_; }

  // The value the index stores for a caller's TD error or priority: (|delta| + eps)^alpha for
  // proportional, |delta| + eps for rank. Throws std::invalid_argument naming `position` for a
  // NaN or infinite value, or a negative priority. Thread-safe (pure).
  [[nodiscard]] double stored_priority(double value, PriorityKind kind, std::size_t position) const;

  // The drawn slots of a batch, the probability each was drawn with, and the smallest probability
  // of any transition in the buffer (which normalises importance weights).
  struct Draw {
    double min_probability;
  };

  // Proof that the caller holds the priority lock; every operation on the structures needs one.
  // Repairs the structures first if the previous holder died holding the lock.
  class Locked {
   public:
    explicit Locked(PriorityIndex& index);

    // Gives slots [first, first + count) (mod capacity) the largest priority in the buffer (1 in
    // an empty one), as new transitions.
    void insert(std::size_t first, std::size_t count);
    // Sets slots[i] to stored[i] (values from stored_priority); last one wins for a repeated slot.
    void set(std::span<const std::size_t> slots, std::span<const double> stored);
    // Draws slots.size() slots among the first `size` and their probabilities. With every
    // priority 0 (possible only with eps = 0), draws uniformly. `size` must be at least 1.
    [[nodiscard]] Draw draw(std::size_t size, Xoshiro256pp& rng, std::span<std::size_t> slots,
                            std::span<double> probabilities);
    // Forgets every priority.
    void clear();
    // The stored priority of `slot`.
    [[nodiscard]] double get(std::size_t slot) const { return index_.tree_.get(slot); }
    // Gives `slot` priority 0, so that it is never drawn: for a slot a dead writer abandoned.
    void retire(std::size_t slot);
    // A description of the first inconsistency in the structures (sums, mins and maxima that
    // differ from a recomputation, a malformed rank order), or empty.
    [[nodiscard]] std::string check() const;
    // Whether taking the lock found its previous holder dead and repaired the structures.
    [[nodiscard]] bool repaired() const noexcept { return repaired_; }
    // How many times that has happened since the region was made.
    [[nodiscard]] std::uint64_t repairs() const noexcept { return index_.control_->repairs; }

   private:
    void sort_ranks(std::size_t size);
    void mark_changed(std::size_t slot) noexcept;
    [[nodiscard]] std::size_t rank_to_slot(std::size_t rank, std::size_t size) const noexcept;

    PriorityIndex& index_;
    bool repaired_ = false;
    sync::RegionLock lock_;
  };

 private:
  Strategy strategy_;
  double alpha_;
  double eps_;
  std::size_t capacity_;
  PriorityControl* control_;
  SumTree tree_;
  std::span<RankEntry> order_;           // rank only
  std::span<std::uint8_t> changed_;      // rank only: set since the last sort
  std::optional<RankTable> rank_table_;  // rank only
};

}  // namespace replay_buffer
