// The selectors a buffer can use. Adding a strategy: write its selector (one file, see
// selector.hpp), give it a code in strategy.hpp, and add it to AnySelector below — names, sizes
// and construction follow from the list, and Python reads the names from here.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <variant>

#include "replay_buffer/selectors/proportional.hpp"
#include "replay_buffer/selectors/rank.hpp"
#include "replay_buffer/selectors/uniform.hpp"

namespace replay_buffer {

using AnySelector = std::variant<UniformSelector, ProportionalSelector, RankSelector>;

namespace detail {
template <typename Variant>
struct SelectorList;
template <typename... S>
struct SelectorList<std::variant<S...>> {
  static constexpr std::array<std::string_view, sizeof...(S)> names{S::kName...};
  static constexpr std::array<Strategy, sizeof...(S)> strategies{S::kStrategy...};
  static constexpr std::array<bool, sizeof...(S)> prioritized{S::kPrioritized...};
  static std::size_t region_bytes(Strategy strategy, std::size_t capacity) {
    std::size_t bytes = 0;
    ((strategy == S::kStrategy ? (void)(bytes = S::region_bytes(capacity)) : void()), ...);
    return bytes;
  }
  static std::optional<AnySelector> make(Strategy strategy, std::byte* part, std::size_t capacity,
                                         const SelectorParams& params) {
    std::optional<AnySelector> made;
    ((strategy == S::kStrategy ? (void)made.emplace(std::in_place_type<S>, part, capacity, params)
                               : void()),
     ...);
    return made;
  }
};
}  // namespace detail

using Selectors = detail::SelectorList<AnySelector>;

// The names of every strategy, in code order ("uniform", "prioritized", "rank"). Thread-safe.
[[nodiscard]] constexpr const auto& strategy_names() noexcept { return Selectors::names; }

// Whether the strategy keeps priorities (and gives importance weights). Thread-safe.
[[nodiscard]] constexpr bool is_prioritized(Strategy strategy) noexcept {
  for (std::size_t i = 0; i < Selectors::strategies.size(); ++i) {
    if (Selectors::strategies[i] == strategy) return Selectors::prioritized[i];
  }
  return false;
}

// The strategy's name in configs, or "invalid". Thread-safe.
[[nodiscard]] constexpr std::string_view strategy_name(Strategy strategy) noexcept {
  for (std::size_t i = 0; i < Selectors::strategies.size(); ++i) {
    if (Selectors::strategies[i] == strategy) return Selectors::names[i];
  }
  return "invalid";
}

// The strategy of that name, if any. Thread-safe.
[[nodiscard]] constexpr std::optional<Strategy> strategy_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < Selectors::names.size(); ++i) {
    if (Selectors::names[i] == name) return Selectors::strategies[i];
  }
  return std::nullopt;
}

}  // namespace replay_buffer
