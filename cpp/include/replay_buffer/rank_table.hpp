// The sampling distribution of rank-based prioritized replay (Schaul et al. 2016, §3.3):
// P(rank r) = (r + 1)^-alpha / sum_{i=1..n} i^-alpha for 0-based ranks r < n (rank 0 is the
// highest priority).
//
// Sampling is stratified and exact: [0, 1) is cut into k segments of equal probability mass and
// one uniform point of each is mapped through the inverse CDF, so every rank's expected count in a
// batch is exactly k * P(r). (The paper's approximation, a uniform rank inside a segment of whole
// ranks, over-samples the far end of every segment.) The segment bounds are never materialised:
// the k points are already in increasing order, one per segment, and the inverse CDF is a binary
// search over the cumulative weights, run for the whole batch one step at a time with the next
// probes prefetched, as the sum tree does.
//
// The cumulative weights do not depend on n, so one table built for the largest size serves every
// n <= max_size() and every k with nothing to rebuild as a buffer fills; only a new alpha needs a
// new table. Cost: 8 bytes per rank (80 MB at 10^7 ranks) and one std::pow per rank to build
// (a fraction of a second at 10^7); O(k log n) per batch.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "replay_buffer/random.hpp"

namespace replay_buffer {

class RankTable {
 public:
  // Precomputes the weights of ranks [0, max_size). Throws std::invalid_argument when max_size is
  // 0 or alpha is negative or not finite. Thread-safe (touches nothing shared).
  RankTable(std::size_t max_size, double alpha);

  // Immutable after construction, so every const method is safe from any number of threads.
  [[nodiscard]] std::size_t max_size() const noexcept { return cumulative_.size(); }
  // Thread-safe.
  [[nodiscard]] double alpha() const noexcept { return alpha_; }

  // P(rank) among n items, 1 <= n <= max_size() and rank < n (std::out_of_range otherwise).
  // Thread-safe.
  [[nodiscard]] double probability(std::size_t rank, std::size_t n) const;

  // Writes k stratified ranks in [0, n) to out_ranks, out_ranks[j] drawn from segment j, so in
  // non-decreasing order. A rank whose weight is lost to rounding in the cumulative sum (below
  // 2^-53 of the sum before it, e.g. deep ranks at a large alpha) is never returned. Throws
  // std::out_of_range unless 1 <= n <= max_size() and std::invalid_argument when
  // out_ranks.size() != k. Thread-safe (rng is the caller's own).
  void sample(std::size_t n, std::size_t k, Xoshiro256pp& rng,
              std::span<std::size_t> out_ranks) const;

 private:
  void check_size(std::size_t n) const;

  double alpha_;
  // cumulative_[r] = sum of (i + 1)^-alpha for i <= r, summed in order, so non-decreasing.
  std::vector<double> cumulative_;
};

}  // namespace replay_buffer
