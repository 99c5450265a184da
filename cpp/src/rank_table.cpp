#include "replay_buffer/rank_table.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

namespace replay_buffer {
namespace {

// Ranks searched together: as in the sum tree, enough independent probes in flight to hide memory
// latency.
constexpr std::size_t kChunk = 64;

[[nodiscard]] double weight(std::size_t rank, double alpha) noexcept {
  return std::pow(static_cast<double>(rank) + 1.0, -alpha);
}

}  // namespace

RankTable::RankTable(std::size_t max_size, double alpha) : alpha_(alpha) {
  if (max_size == 0) throw std::invalid_argument("a rank table needs max_size >= 1");
  if (!(alpha >= 0.0) || !std::isfinite(alpha)) {
    throw std::invalid_argument("alpha must be finite and >= 0, got " + std::to_string(alpha));
  }
  cumulative_.resize(max_size);
  double sum = 0.0;
  for (std::size_t r = 0; r < max_size; ++r) {
    sum += weight(r, alpha);
    cumulative_[r] = sum;
  }
}

void RankTable::check_size(std::size_t n) const {
  if (n == 0 || n > cumulative_.size()) {
    throw std::out_of_range("rank table of max_size " + std::to_string(cumulative_.size()) +
                            " asked about " + std::to_string(n) + " items");
  }
}

double RankTable::probability(std::size_t rank, std::size_t n) const {
  check_size(n);
  if (rank >= n) {
    throw std::out_of_range("rank " + std::to_string(rank) + " out of range for " +
                            std::to_string(n) + " items");
  }
  return weight(rank, alpha_) / cumulative_[n - 1];
}

void RankTable::sample(std::size_t n, std::size_t k, Xoshiro256pp& rng,
                       std::span<std::size_t> out_ranks) const {
  check_size(n);
  if (out_ranks.size() != k) {
    throw std::invalid_argument("sample of " + std::to_string(k) + " ranks into a span of " +
                                std::to_string(out_ranks.size()));
  }
  const double* const cumulative = cumulative_.data();
  const double total = cumulative[n - 1];
  // Every point stays below the total, so the search below always finds a rank r with
  // cumulative[r - 1] <= u < cumulative[r]: one whose weight survived the summation.
  const double last_point = std::nextafter(total, 0.0);
  const double segment = total / static_cast<double>(k);
  std::array<double, kChunk> u;
  std::array<std::size_t, kChunk> base;
  for (std::size_t begin = 0; begin < k; begin += kChunk) {
    const std::size_t count = std::min(kChunk, k - begin);
    for (std::size_t i = 0; i < count; ++i) {
      u[i] = std::min((static_cast<double>(begin + i) + rng.uniform()) * segment, last_point);
      base[i] = 0;
    }
    // Branch-free upper bound (first r with cumulative[r] > u): the answer stays in
    // [base, base + length], and `length` shrinks the same way for every item.
    std::size_t length = n;
    while (length > 1) {
      const std::size_t half = length / 2;
      length -= half;
      const std::size_t next_half = length / 2;
      for (std::size_t i = 0; i < count; ++i) {
        // A product, not `? half : 0`, which GCC compiles to a branch that mispredicts half the
        // time.
        base[i] += half * static_cast<std::size_t>(cumulative[base[i] + half] <= u[i]);
        __builtin_prefetch(cumulative + base[i] + next_half);
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      out_ranks[begin + i] = base[i] + (cumulative[base[i]] <= u[i] ? 1 : 0);
    }
  }
}

}  // namespace replay_buffer
