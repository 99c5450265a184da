// How a buffer samples (the codes region headers store; names and selectors are in
// selectors/registry.hpp), and how callers express priorities.
#pragma once

#include <cstdint>

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

}  // namespace replay_buffer
