#include "replay_buffer/sum_tree.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/layout.hpp"

namespace replay_buffer {
namespace {

constexpr std::size_t kLine = SumTree::kFanout;
constexpr std::size_t kLineShift = 3;
static_assert(kLine == std::size_t{1} << kLineShift);
static_assert(kLine * sizeof(double) == kAlignment);

// Items walked together by a batch: enough independent loads in flight to hide memory latency,
// few enough that their state stays in registers and L1.
constexpr std::size_t kChunk = 64;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Pairwise, for a short dependency chain. The one function every parent sum goes through.
[[gnu::always_inline]] inline double line_sum(const double* line) noexcept {
  return ((line[0] + line[1]) + (line[2] + line[3])) + ((line[4] + line[5]) + (line[6] + line[7]));
}

// Smallest positive value of a line, or 0 when there is none (0 stands for "no positive leaf").
// Non-negative doubles order like their bit patterns, and subtracting 1 sends +0 to the largest
// pattern, so one unsigned min finds the smallest positive value and adding 1 back turns "none"
// into +0 again. Branch-free, as zero and positive children mix unpredictably.
[[gnu::always_inline]] inline double line_min_positive(const double* line) noexcept {
  std::uint64_t smallest = std::numeric_limits<std::uint64_t>::max();
  for (std::size_t i = 0; i < kLine; ++i) {
    smallest = std::min(smallest, std::bit_cast<std::uint64_t>(line[i]) - 1);
  }
  return std::bit_cast<double>(smallest + 1);
}

[[gnu::always_inline]] inline double line_max(const double* line) noexcept {
  double largest = 0.0;
  for (std::size_t i = 0; i < kLine; ++i) largest = std::max(largest, line[i]);
  return largest;
}

// Picks the child of `line` under offset `u` (>= 0) and makes `u` relative to it. Branch-free
// (the choice is a coin flip a predictor cannot learn): counts the running prefixes <= u. The
// prefix does not grow across a zero child, so `prefix <= u` always steps over one and the child
// found is positive. When rounding leaves `u` at or past the line's end, the walk takes the last
// positive child and aims at its end, which repeats the choice on every level below.
[[gnu::always_inline]] inline std::size_t select_child(const double* line, double& u) noexcept {
  std::array<double, kLine> before;
  double prefix = 0.0;
  std::size_t child = 0;
  for (std::size_t i = 0; i < kLine; ++i) {
    before[i] = prefix;
    prefix += line[i];
    child += prefix <= u ? 1 : 0;
  }
  if (child == kLine) [[unlikely]] {
    child = kLine - 1;
    while (child > 0 && !(line[child] > 0.0)) --child;
    u = line[child];
    return child;
  }
  u -= before[child];
  return child;
}

void check_priority(double priority) {
  if (!(priority >= 0.0) || !std::isfinite(priority)) {
    throw std::invalid_argument("priority must be finite and >= 0, got " +
                                std::to_string(priority));
  }
}

void check_leaf(std::size_t leaf, std::size_t capacity) {
  if (leaf >= capacity) {
    throw std::out_of_range("leaf " + std::to_string(leaf) + " out of range for capacity " +
                            std::to_string(capacity));
  }
}

}  // namespace

SumTree::Shape SumTree::shape_for(std::size_t capacity) {
  // Bounds every offset below well inside size_t.
  constexpr std::size_t kMaxCapacity = std::numeric_limits<std::size_t>::max() / 64;
  if (capacity == 0 || capacity > kMaxCapacity) {
    throw CapacityError("a sum tree needs a capacity in [1, " + std::to_string(kMaxCapacity) +
                        "], got " + std::to_string(capacity));
  }
  Shape shape;
  shape.width[0] = capacity;
  shape.levels = 1;
  while (shape.width[shape.levels - 1] > kLine) {
    shape.width[shape.levels] = (shape.width[shape.levels - 1] + kLine - 1) / kLine;
    ++shape.levels;
  }
  std::size_t end = kLine;  // the root line
  for (std::size_t l = shape.levels; l-- > 0;) {
    shape.sum_offset[l] = end;
    end += align_up(shape.width[l], kLine);
  }
  for (std::size_t l = shape.levels; l-- > 1;) {
    shape.min_offset[l] = end;
    end += align_up(shape.width[l], kLine);
  }
  for (std::size_t l = shape.levels; l-- > 1;) {
    shape.max_offset[l] = end;
    end += align_up(shape.width[l], kLine);
  }
  shape.total_doubles = end;
  return shape;
}

std::size_t SumTree::bytes_for(std::size_t capacity) {
  return shape_for(capacity).total_doubles * sizeof(double);
}

SumTree::SumTree(std::span<std::byte> storage, std::size_t capacity)
    : capacity_(capacity), shape_(shape_for(capacity)) {
  const std::size_t needed = shape_.total_doubles * sizeof(double);
  if (storage.size() < needed) {
    throw std::invalid_argument("a sum tree of capacity " + std::to_string(capacity) + " needs " +
                                std::to_string(needed) + " bytes, got " +
                                std::to_string(storage.size()));
  }
  if (reinterpret_cast<std::uintptr_t>(storage.data()) % kAlignment != 0) {
    throw std::invalid_argument("sum tree storage must start on a 64-byte boundary");
  }
  values_ = std::span<double>(reinterpret_cast<double*>(storage.data()), shape_.total_doubles);
}

void SumTree::reset() noexcept { std::memset(values_.data(), 0, values_.size_bytes()); }

void SumTree::refresh(std::size_t level, std::size_t node) noexcept {
  sum_level(level)[node] = line_sum(sum_level(level - 1) + node * kLine);
  min_level(level)[node] = line_min_positive(min_level(level - 1) + node * kLine);
  max_level(level)[node] = line_max(max_level(level - 1) + node * kLine);
}

void SumTree::refresh_root() noexcept {
  const std::size_t top = shape_.levels - 1;
  values_[0] = line_sum(sum_level(top));
  values_[1] = line_min_positive(min_level(top));
  values_[2] = line_max(max_level(top));
}

void SumTree::set(std::size_t leaf, double priority) {
  check_leaf(leaf, capacity_);
  check_priority(priority);
  sum_level(0)[leaf] = priority + 0.0;  // -0.0 becomes +0.0, as line_min_positive needs
  std::size_t node = leaf;
  for (std::size_t level = 1; level < shape_.levels; ++level) {
    node >>= kLineShift;
    refresh(level, node);
  }
  refresh_root();
}

void SumTree::set_batch(std::span<const std::size_t> leaves, std::span<const double> priorities) {
  if (leaves.size() != priorities.size()) {
    throw std::invalid_argument("set_batch got " + std::to_string(leaves.size()) + " leaves and " +
                                std::to_string(priorities.size()) + " priorities");
  }
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    check_leaf(leaves[i], capacity_);
    check_priority(priorities[i]);
  }
  // The values every item will write at `level`, requested for writing ahead of time.
  const auto prefetch_level = [this, leaves](std::size_t level) {
    if (level >= shape_.levels) return;
    const std::size_t shift = kLineShift * level;
    for (const std::size_t leaf : leaves) {
      __builtin_prefetch(sum_level(level) + (leaf >> shift), 1);
      if (level > 0) {
        __builtin_prefetch(min_level(level) + (leaf >> shift), 1);
        __builtin_prefetch(max_level(level) + (leaf >> shift), 1);
      }
    }
  };
  prefetch_level(0);
  prefetch_level(1);
  double* const priority_level = sum_level(0);
  for (std::size_t i = 0; i < leaves.size(); ++i) priority_level[leaves[i]] = priorities[i] + 0.0;
  // Level by level, so every parent reads children that are already final (this is what makes a
  // duplicate leaf harmless), one level's lines prefetched while the previous one is computed.
  for (std::size_t level = 1; level < shape_.levels; ++level) {
    prefetch_level(level + 1);
    if (shape_.width[level] <= leaves.size()) {
      // The top levels: recomputing each of their few values once is less work than once per item.
      for (std::size_t node = 0; node < shape_.width[level]; ++node) refresh(level, node);
    } else {
      const std::size_t shift = kLineShift * level;
      for (const std::size_t leaf : leaves) refresh(level, leaf >> shift);
    }
  }
  refresh_root();
}

double SumTree::get(std::size_t leaf) const {
  check_leaf(leaf, capacity_);
  return sum_level(0)[leaf];
}

double SumTree::min_positive() const noexcept { return values_[1] > 0.0 ? values_[1] : kInf; }

std::size_t SumTree::descend(double u) const noexcept {
  std::size_t node = 0;
  for (std::size_t level = shape_.levels; level-- > 0;) {
    node = node * kLine + select_child(sum_level(level) + node * kLine, u);
  }
  return node;
}

std::size_t SumTree::find_prefix(double u) const {
  if (!(total() > 0.0)) throw EmptyBufferError("find_prefix on a tree whose priorities are all 0");
  return descend(u >= 0.0 ? u : 0.0);
}

void SumTree::sample_stratified(std::size_t batch, Xoshiro256pp& rng,
                                std::span<std::size_t> out_leaves) const {
  if (out_leaves.size() != batch) {
    throw std::invalid_argument("sample_stratified of " + std::to_string(batch) +
                                " leaves into a span of " + std::to_string(out_leaves.size()));
  }
  if (batch == 0) return;
  if (!(total() > 0.0)) {
    throw EmptyBufferError("sample_stratified on a tree whose priorities are all 0");
  }
  const double segment = total() / static_cast<double>(batch);
  std::array<double, kChunk> u;
  std::array<std::size_t, kChunk> node;
  for (std::size_t begin = 0; begin < batch; begin += kChunk) {
    const std::size_t count = std::min(kChunk, batch - begin);
    for (std::size_t i = 0; i < count; ++i) {
      u[i] = (static_cast<double>(begin + i) + rng.uniform()) * segment;
      node[i] = 0;
    }
    for (std::size_t level = shape_.levels; level-- > 0;) {
      const double* const values = sum_level(level);
      const double* const below = level > 0 ? sum_level(level - 1) : nullptr;
      for (std::size_t i = 0; i < count; ++i) {
        node[i] = node[i] * kLine + select_child(values + node[i] * kLine, u[i]);
        if (below != nullptr) __builtin_prefetch(below + node[i] * kLine);
      }
    }
    std::copy_n(node.begin(), count, out_leaves.begin() + static_cast<std::ptrdiff_t>(begin));
  }
}

void SumTree::rebuild() noexcept {
  // Padding is zeroed too, so nothing but the priorities themselves needs to have survived.
  const auto zero_padding = [](double* level_values, std::size_t width) {
    std::fill(level_values + width, level_values + align_up(width, kLine), 0.0);
  };
  zero_padding(sum_level(0), shape_.width[0]);
  for (std::size_t level = 1; level < shape_.levels; ++level) {
    for (std::size_t node = 0; node < shape_.width[level]; ++node) refresh(level, node);
    zero_padding(sum_level(level), shape_.width[level]);
    zero_padding(min_level(level), shape_.width[level]);
    zero_padding(max_level(level), shape_.width[level]);
  }
  std::fill(values_.begin() + 3, values_.begin() + kLine, 0.0);
  refresh_root();
}

}  // namespace replay_buffer

namespace replay_buffer {

std::string SumTree::check() const {
  const auto at = [](const char* what, std::size_t level, std::size_t node) {
    return std::string(what) + " at level " + std::to_string(level) + ", node " +
           std::to_string(node);
  };
  const double* leaves = sum_level(0);
  for (std::size_t leaf = 0; leaf < align_up(shape_.width[0], kLine); ++leaf) {
    const double p = leaves[leaf];
    if (leaf >= shape_.width[0] ? p != 0.0 : !(p >= 0.0 && std::isfinite(p))) {
      return "priority " + std::to_string(p) + " at leaf " + std::to_string(leaf);
    }
  }
  for (std::size_t level = 1; level < shape_.levels; ++level) {
    const std::size_t width = shape_.width[level];
    for (std::size_t node = 0; node < align_up(width, kLine); ++node) {
      const bool used = node < width;
      const double sum = used ? line_sum(sum_level(level - 1) + node * kLine) : 0.0;
      const double min = used ? line_min_positive(min_level(level - 1) + node * kLine) : 0.0;
      const double max = used ? line_max(max_level(level - 1) + node * kLine) : 0.0;
      // Compared bit for bit: every parent is recomputed by the same function, never adjusted.
      if (std::bit_cast<std::uint64_t>(sum_level(level)[node]) !=
          std::bit_cast<std::uint64_t>(sum)) {
        return at("sum", level, node) + " is " + std::to_string(sum_level(level)[node]) +
               ", its children add up to " + std::to_string(sum);
      }
      if (min_level(level)[node] != min) return at("min", level, node) + " is stale";
      if (max_level(level)[node] != max) return at("max", level, node) + " is stale";
    }
  }
  const std::size_t top = shape_.levels - 1;
  if (std::bit_cast<std::uint64_t>(values_[0]) !=
      std::bit_cast<std::uint64_t>(line_sum(sum_level(top)))) {
    return "total is " + std::to_string(values_[0]) + ", the top level adds up to " +
           std::to_string(line_sum(sum_level(top)));
  }
  if (values_[1] != line_min_positive(min_level(top))) return "root min is stale";
  if (values_[2] != line_max(max_level(top))) return "root max is stale";
  for (std::size_t i = 3; i < kLine; ++i) {
    if (values_[i] != 0.0) return "root line padding is not 0";
  }
  return {};
}

}  // namespace replay_buffer
