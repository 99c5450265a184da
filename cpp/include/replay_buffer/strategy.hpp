// How a buffer samples, and how callers express priorities.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace replay_buffer {

// Stored in region headers: never renumber, only append.
enum class Strategy : std::uint8_t {
  kUniform = 0,       // every transition equally likely
  kProportional = 1,  // P(i) = p_i / sum p, p_i = (|delta_i| + eps)^alpha (sum tree)
  kRank = 2,          // P(i) = rank(i)^-alpha / sum, ranks by |delta_i| + eps
};

// What update_priorities is given.
enum class PriorityKind : std::uint8_t {
  kTdError,   // any finite value; its magnitude is used: (|delta| + eps)
  kPriority,  // a finite value >= 0, used as given: (p + eps)
};

[[nodiscard]] constexpr std::string_view strategy_name(Strategy s) noexcept {
  switch (s) {
    case Strategy::kUniform:
      return "uniform";
    case Strategy::kProportional:
      return "prioritized";
    case Strategy::kRank:
      return "rank";
  }
  return "invalid";
}

[[nodiscard]] constexpr std::optional<Strategy> strategy_from_name(std::string_view name) noexcept {
  for (const Strategy s : {Strategy::kUniform, Strategy::kProportional, Strategy::kRank}) {
    if (strategy_name(s) == name) return s;
  }
  return std::nullopt;
}

}  // namespace replay_buffer
