#include "replay_buffer/replay_buffer.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>

#include "replay_buffer/errors.hpp"
#include "shm_test_support.hpp"

namespace replay_buffer {
namespace {

using CartPole = ReplayBuffer<std::array<float, 4>, std::int64_t>;

CartPole::TransitionType transition(int i) {
  const auto f = static_cast<float>(i);
  return {{f, f + 1, f + 2, f + 3}, i % 2, f * 0.5f, {f + 10, f + 11, f + 12, f + 13}, i % 3 == 0};
}

TEST(ReplayBuffer, SpecificationApi) {
  CartPole buffer(BufferConfig{.capacity = 100, .strategy = SamplingStrategy::kUniform});
  EXPECT_EQ(buffer.capacity(), 100u);
  EXPECT_EQ(buffer.size(), 0u);
  for (int i = 0; i < 120; ++i) buffer.add(transition(i));
  EXPECT_EQ(buffer.size(), 100u);
  EXPECT_TRUE(buffer.is_full());
  std::vector<std::uint64_t> keys(32);
  const auto batch = buffer.sample(32, keys);
  ASSERT_EQ(batch.size(), 32u);
  for (std::size_t j = 0; j < batch.size(); ++j) {
    const int i = static_cast<int>(batch[j].reward * 2);
    EXPECT_GE(i, 20);
    EXPECT_EQ(keys[j], std::uint64_t(i));
    const auto want = transition(i);
    EXPECT_EQ(batch[j].observation, want.observation);
    EXPECT_EQ(batch[j].action, want.action);
    EXPECT_EQ(batch[j].next_observation, want.next_observation);
    EXPECT_EQ(batch[j].done, want.done);
  }
}

TEST(ReplayBuffer, SchemaFollowsTheTypes) {
  struct Opaque {
    double x;
    int y;
  };
  ReplayBuffer<std::array<std::array<std::uint8_t, 3>, 2>, Opaque> buffer(
      BufferConfig{.capacity = 4});
  const Schema& schema = buffer.buffer().schema();
  EXPECT_EQ(schema[0].describe(), "uint8[2, 3]");
  EXPECT_EQ(schema[1].describe(), "uint8[" + std::to_string(sizeof(Opaque)) + "]");
  EXPECT_EQ(schema[2].describe(), "float32 scalar");
  EXPECT_EQ(schema[4].describe(), "bool scalar");
  buffer.add({{{{1, 2, 3}, {4, 5, 6}}}, {2.5, 7}, 1.0f, {}, true});
  const auto batch = buffer.sample(1);
  EXPECT_EQ(batch[0].observation[1][2], 6);
  EXPECT_EQ(batch[0].action.x, 2.5);
  EXPECT_EQ(batch[0].action.y, 7);
}

TEST(ReplayBuffer, EmptyAndZeroBatchThrow) {
  CartPole buffer(BufferConfig{.capacity = 4});
  EXPECT_THROW((void)buffer.sample(1), EmptyBufferError);
  buffer.add(transition(0));
  EXPECT_THROW((void)buffer.sample(0), std::invalid_argument);
}

TEST(ReplayBuffer, PrioritizedSpecificationApi) {
  CartPole buffer(BufferConfig{.capacity = 16,
                               .strategy = SamplingStrategy::kProportional,
                               .alpha = 1.0f,
                               .beta = 1.0f,
                               .eps = 0.0f});
  for (int i = 0; i < 16; ++i) buffer.add(transition(i));
  std::vector<std::size_t> all(16);
  for (std::size_t i = 0; i < 16; ++i) all[i] = i;
  std::vector<float> priorities(16, 0.0f);
  priorities[5] = 2.0f;
  priorities[9] = 6.0f;
  EXPECT_EQ(buffer.update_priorities(all, priorities), 16u);
  std::vector<std::uint64_t> keys(64);
  std::vector<float> weights(64);
  const auto batch = buffer.sample(64, keys, weights);
  for (std::size_t j = 0; j < 64; ++j) {
    ASSERT_TRUE(keys[j] == 5 || keys[j] == 9);
    EXPECT_EQ(batch[j].reward * 2, static_cast<float>(keys[j]));
    // beta 1: w = P_min / P = 2 / priority.
    EXPECT_FLOAT_EQ(weights[j], keys[j] == 5 ? 1.0f : 2.0f / 6.0f);
  }
}

TEST(ReplayBuffer, SharedBetweenProcesses) {
  const testing::ShmName name;
  CartPole creator(BufferConfig{.capacity = 50}, SharedMemory{name});
  // A child process attaches by name and adds; the parent samples what it added.
  EXPECT_EQ(testing::run_in_child([&] {
              CartPole attached = CartPole::attach(name.str());
              for (int i = 0; i < 20; ++i) attached.add(transition(i));
              return 0;
            }),
            0);
  EXPECT_EQ(creator.size(), 20u);
  for (const auto& t : creator.sample(40)) {
    EXPECT_EQ(t.observation, transition(static_cast<int>(t.reward * 2)).observation);
  }
  using Other = ReplayBuffer<std::array<float, 3>, std::int64_t>;
  EXPECT_THROW((void)Other::attach(name.str()), InvalidRegionError);
}

}  // namespace
}  // namespace replay_buffer
