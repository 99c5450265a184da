// Uniform selection: every live item equally likely. Lock-free and stateless: keeps nothing in the
// region, and draws keys straight from the live range with Lemire's unbiased bounded integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "replay_buffer/selectors/selector.hpp"

namespace replay_buffer {

class UniformSelector {
 public:
  static constexpr Strategy kStrategy = Strategy::kUniform;
  static constexpr std::string_view kName = "uniform";
  static constexpr bool kPrioritized = false;

  [[nodiscard]] static std::size_t region_bytes(std::size_t /*capacity*/) noexcept { return 0; }
  UniformSelector(std::byte* /*part*/, std::size_t /*capacity*/, const SelectorParams&) noexcept {}
  void init_region() noexcept {}
  // Uniform buffers keep no priorities. Throws std::logic_error.
  [[nodiscard]] double stored_priority(double, PriorityKind, std::size_t) const {
    throw std::logic_error("a uniform buffer keeps no priorities");
  }

  // Holds nothing: uniform selection takes no lock. Every method is thread-safe.
  class Locked {
   public:
    void insert(std::uint64_t, std::size_t, std::uint64_t) noexcept {}
    void set(std::span<const std::size_t>, std::span<const double>) noexcept {}
    // Draws keys uniformly from the live range; every ratio is 1. O(1) per key.
    void draw(const LiveKeys& live, Xoshiro256pp& rng, std::span<std::uint64_t> keys,
              std::span<double> ratios) noexcept {
      for (std::size_t i = 0; i < keys.size(); ++i) {
        keys[i] = live.first + rng.below(live.size());
        ratios[i] = 1.0;
      }
    }
    void retire(std::size_t) noexcept {}
    void clear() noexcept {}
    [[nodiscard]] double get(std::size_t) const noexcept {
      return std::numeric_limits<double>::quiet_NaN();
    }
    [[nodiscard]] std::string check() const { return {}; }
    [[nodiscard]] bool repaired() const noexcept { return false; }
    [[nodiscard]] std::uint64_t repairs() const noexcept { return 0; }
  };
  [[nodiscard]] Locked lock() noexcept { return {}; }
};

static_assert(Selector<UniformSelector>);

}  // namespace replay_buffer
