// What every selector — the part of a buffer that decides which item a sample draws — offers, and
// what they share. One selector per file (uniform.hpp, proportional.hpp, rank.hpp); registry.hpp
// lists them. A selector type S provides (checked by the Selector concept below):
//
//   static constexpr Strategy kStrategy;     its code in region headers
//   static constexpr std::string_view kName; its name in configs ("uniform", "prioritized", ...)
//   static constexpr bool kPrioritized;      whether it keeps priorities and gives weights
//   static std::size_t region_bytes(std::size_t capacity);  bytes it keeps in the region
//   S(std::byte* part, std::size_t capacity, const SelectorParams&);  a view of its part
//   void init_region();                      the region's creator sets the part up, once
//   double stored_priority(double value, PriorityKind, std::size_t position) const;
//   Locked lock();                           a guard holding the selector's lock (if it has one)
//
// and S::Locked offers insert(first_key, count, base), set(slots, stored), draw(live, rng, keys,
// ratios), retire(slot), clear(), get(slot), check(), repaired(), repairs(). draw writes keys
// (the newest key of each drawn slot) and, per row, P(i) / P_min, from which importance_weights
// makes the weights — so the weights are the selector's, whatever Buffer does with the rows.
// Nothing here is virtual: Buffer holds a std::variant of the selectors and dispatches once per
// call, not per row.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "replay_buffer/random.hpp"
#include "replay_buffer/ring.hpp"
#include "replay_buffer/strategy.hpp"

namespace replay_buffer {

struct SelectorParams {
  double alpha = 0.6;  // how much priorities count (0: uniform)
  double eps = 1e-6;   // added to every |TD error|
};

// The largest priority a selector of `capacity` items stores: any sum of `capacity` of them stays
// finite (with room to spare), so totals, probabilities and weights never become inf or NaN.
[[nodiscard]] constexpr double max_stored_priority(std::size_t capacity) noexcept {
  return 1.7976931348623157e308 / 4.0 / static_cast<double>(capacity);
}

// Importance weights from each row's P(i) / P_min: w_i = (N P_i)^-beta / max_j (N P_j)^-beta =
// (P_i / P_min)^-beta (N cancels). In float: the weights are float32 anyway, and powf is several
// times faster than pow. A ratio that overflowed to +inf gives weight 0, never NaN. Thread-safe.
inline void importance_weights(std::span<const double> ratios, double beta,
                               std::span<float> out) noexcept {
  const auto exponent = static_cast<float>(-beta);
  for (std::size_t i = 0; i < ratios.size(); ++i) {
    out[i] = std::pow(static_cast<float>(ratios[i]), exponent);
  }
}

// The key of the newest item slot `slot` can hold among `live` (live.end >= 1): the largest key
// below live.end in that slot. No division. Pure.
[[nodiscard]] inline std::uint64_t newest_key_of(std::size_t slot, const LiveKeys& live,
                                                 std::size_t capacity) noexcept {
  if (slot <= live.last_slot) return live.last_lap_start + slot;
  return live.last_lap_start >= capacity ? live.last_lap_start - capacity + slot : slot;
}

template <typename S>
concept Selector = requires(S s, typename S::Locked& locked, const LiveKeys& live,
                            Xoshiro256pp& rng, std::span<std::uint64_t> keys,
                            std::span<double> ratios, std::span<const std::size_t> slots,
                            std::span<const double> stored) {
  { S::kStrategy } -> std::convertible_to<Strategy>;
  { S::kName } -> std::convertible_to<std::string_view>;
  { S::kPrioritized } -> std::convertible_to<bool>;
  { S::region_bytes(std::size_t{}) } -> std::same_as<std::size_t>;
  s.init_region();
  { s.stored_priority(0.0, PriorityKind::kTdError, std::size_t{}) } -> std::same_as<double>;
  locked.insert(std::uint64_t{}, std::size_t{}, std::uint64_t{});
  locked.set(slots, stored);
  locked.draw(live, rng, keys, ratios);
  locked.retire(std::size_t{});
  locked.clear();
  { locked.get(std::size_t{}) } -> std::same_as<double>;
  { locked.check() } -> std::same_as<std::string>;
  { locked.repaired() } -> std::same_as<bool>;
  { locked.repairs() } -> std::same_as<std::uint64_t>;
};

}  // namespace replay_buffer
