// Uses the schema-based Buffer and the typed ReplayBuffer through the replay_buffer::core target
// only: exits with 1 and says why when what comes back is not what went in.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <span>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/replay_buffer.hpp"

namespace rb = replay_buffer;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer: %s\n", what);
    ++failures;
  }
}

void schema_buffer() {
  rb::Buffer buffer(rb::Schema({{"obs", rb::DType::kFloat32, {3}}, {"reward", rb::DType::kFloat32, {}}}),
                    rb::BufferOptions{.capacity = 8, .strategy = rb::Strategy::kProportional});
  const std::array<float, 3> obs{1.0f, 2.0f, 3.0f};
  const float reward = 0.5f;
  const std::array<rb::FieldBytes, 2> row{std::as_bytes(std::span(obs)),
                                          std::as_bytes(std::span(&reward, 1))};
  const std::uint64_t key = buffer.add(row);

  std::array<float, 12> sampled_obs{};
  std::array<float, 4> sampled_reward{};
  std::array<std::uint64_t, 4> keys{};
  std::array<float, 4> weights{};
  const std::array<rb::FieldOut, 2> out{std::as_writable_bytes(std::span(sampled_obs)),
                                        std::as_writable_bytes(std::span(sampled_reward))};
  buffer.sample(4, out, keys, weights);
  expect(keys[0] == key && sampled_obs[2] == 3.0f && sampled_reward[3] == 0.5f,
         "a sample of the only transition returned other values");
  expect(weights[0] == 1.0f, "the only transition's weight is not 1");

  // Priorities go in as doubles, with what they are: TD errors (the default) or priorities.
  const std::array<double, 1> td_error{-2.0};
  expect(buffer.update_priorities(std::span(&key, 1), td_error, rb::PriorityKind::kTdError) == 1,
         "update_priorities did not apply the priority of a live key");
  std::array<double, 1> stored{};
  buffer.priorities(std::span(&key, 1), stored);
  expect(std::abs(stored[0] - std::pow(2.0 + 1e-6, 0.6)) < 1e-9,
         "the stored priority is not (|td| + eps)^alpha of td = -2");
}

void typed_buffer() {
  using Obs = std::array<float, 4>;
  rb::ReplayBuffer<Obs, std::int64_t> buffer(rb::BufferConfig{.capacity = 4});
  for (std::int64_t i = 0; i < 6; ++i) {
    const float f = static_cast<float>(i);
    buffer.add({Obs{f, f, f, f}, i, f, Obs{f + 1, f + 1, f + 1, f + 1}, i % 2 == 0});
  }
  expect(buffer.size() == 4 && buffer.is_full(), "a full ring of 4 does not hold 4");
  for (const auto& t : buffer.sample(16)) {
    expect(t.action >= 2 && t.reward == static_cast<float>(t.action) &&
               t.next_observation[0] == t.observation[0] + 1 && t.done == (t.action % 2 == 0),
           "a sampled transition is not one that was added last");
  }
}

}  // namespace

int main() {
  try {
    schema_buffer();
    typed_buffer();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  if (failures == 0) std::puts("consumer: replay_buffer::core works from another project");
  return failures == 0 ? 0 : 1;
}
