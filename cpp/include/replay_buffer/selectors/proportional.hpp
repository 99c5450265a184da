// Proportional prioritized selection (Schaul et al. 2016): P(i) = p_i / sum_j p_j with
// p_i = (|delta_i| + eps)^alpha, in a sum tree; a batch is drawn stratified (one point per equal
// segment of the total). O(log n) per update and per drawn item, under one lock per batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "replay_buffer/selectors/priority_state.hpp"

namespace replay_buffer {

class ProportionalSelector {
 public:
  static constexpr Strategy kStrategy = Strategy::kProportional;
  static constexpr std::string_view kName = "prioritized";
  static constexpr bool kPrioritized = true;

  [[nodiscard]] static std::size_t region_bytes(std::size_t capacity) {
    return PriorityState::region_bytes(capacity);
  }
  ProportionalSelector(std::byte* part, std::size_t capacity, const SelectorParams& params)
      : state_(part, capacity, params) {}
  void init_region() { state_.init_region(); }
  // (|value| + eps)^alpha; see PriorityState::stored_priority. Thread-safe.
  [[nodiscard]] double stored_priority(double value, PriorityKind kind,
                                       std::size_t position) const {
    return state_.stored_priority(value, kind, position, true);
  }

  // Proof that the caller holds the priority lock. Not thread-safe itself: one per scope.
  class Locked {
   public:
    explicit Locked(PriorityState& state) : state_(state), guard_(state, [] {}) {}
    // See PriorityState::insert. O(count log n).
    void insert(std::uint64_t first_key, std::size_t count, std::uint64_t base) {
      state_.insert(first_key, count, base, {});
    }
    // Sets slots[i] to stored[i]; last one wins for a repeated slot. O(k log n).
    void set(std::span<const std::size_t> slots, std::span<const double> stored) {
      state_.tree().set_batch(slots, stored);
    }
    // Draws keys.size() items stratified by priority; uniformly over live keys when every
    // priority is 0 (possible only with eps = 0). O(k log n).
    void draw(const LiveKeys& live, Xoshiro256pp& rng, std::span<std::uint64_t> keys,
              std::span<double> ratios);
    void retire(std::size_t slot) { state_.tree().set(slot, 0.0); }
    void clear() { state_.tree().reset(); }
    [[nodiscard]] double get(std::size_t slot) const { return state_.tree().get(slot); }
    // Sum of the stored priorities, and the smallest positive one (+inf when none). O(1).
    [[nodiscard]] double total() const noexcept { return state_.tree().total(); }
    [[nodiscard]] double min_positive() const noexcept { return state_.tree().min_positive(); }
    [[nodiscard]] std::string check() const;
    [[nodiscard]] bool repaired() const noexcept { return guard_.repaired(); }
    [[nodiscard]] std::uint64_t repairs() const noexcept { return state_.control().repairs; }

   private:
    PriorityState& state_;
    PriorityState::Guard guard_;
  };
  // Takes the priority lock (blocking; repairs after a dead holder). Thread- and process-safe.
  [[nodiscard]] Locked lock() { return Locked(state_); }

 private:
  mutable PriorityState state_;
};

static_assert(Selector<ProportionalSelector>);

}  // namespace replay_buffer
