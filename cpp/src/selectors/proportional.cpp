#include "replay_buffer/selectors/proportional.hpp"

namespace replay_buffer {

void ProportionalSelector::Locked::draw(const LiveKeys& live, Xoshiro256pp& rng,
                                        std::span<std::uint64_t> keys, std::span<double> ratios) {
  const SumTree& tree = state_.tree();
  const double total = tree.total();
  if (!(total > 0.0)) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      keys[i] = live.first + rng.below(live.size());
      ratios[i] = 1.0;
    }
    return;
  }
  // Scratch kept per thread: the slots of one batch.
  thread_local std::vector<std::size_t> slots;
  slots.resize(keys.size());
  tree.sample_stratified(slots.size(), rng, slots);
  // P_i / P_min = p_i / p_min: the total cancels.
  const double smallest = tree.min_positive();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    keys[i] = newest_key_of(slots[i], live, state_.capacity());
    ratios[i] = tree.get(slots[i]) / smallest;
  }
}

std::string ProportionalSelector::Locked::check() const {
  std::string problem = state_.tree().check();
  return problem.empty() ? problem : "sum tree: " + problem;
}

}  // namespace replay_buffer
