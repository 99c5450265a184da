#include "replay_buffer/layout.hpp"

#include <gtest/gtest.h>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {
namespace {

TEST(Layout, EveryPartIsAlignedAndInOrder) {
  const Schema schema(
      {{"a", DType::kUInt8, {3}}, {"b", DType::kFloat64, {}}, {"c", DType::kBool, {}}});
  const Layout layout = Layout::compute(schema, 5);
  EXPECT_EQ(layout.fields_offset % kAlignment, 0u);
  EXPECT_EQ(layout.counters_offset % kAlignment, 0u);
  EXPECT_EQ(layout.seq_offset % kAlignment, 0u);
  EXPECT_GE(layout.counters_offset, layout.fields_offset + 3 * sizeof(FieldRecord));
  EXPECT_GE(layout.seq_offset, layout.counters_offset + sizeof(Counters));
  std::size_t previous_end = layout.seq_offset + 5 * sizeof(std::uint32_t);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(layout.column_offsets[i] % kAlignment, 0u);
    EXPECT_GE(layout.column_offsets[i], previous_end);
    previous_end = layout.column_offsets[i] + 5 * schema[i].row_bytes();
  }
  EXPECT_EQ(layout.total_bytes, align_up(previous_end));
}

TEST(Layout, IsAPureFunctionOfSchemaAndCapacity) {
  const Schema schema({{"obs", DType::kFloat32, {4}}});
  const Layout a = Layout::compute(schema, 1000);
  const Layout b = Layout::compute(schema, 1000);
  EXPECT_EQ(a.column_offsets, b.column_offsets);
  EXPECT_EQ(a.total_bytes, b.total_bytes);
}

TEST(Layout, RejectsZeroAndOverflowingCapacities) {
  const Schema schema({{"obs", DType::kFloat32, {1000}}});
  EXPECT_THROW((void)Layout::compute(schema, 0), CapacityError);
  EXPECT_THROW((void)Layout::compute(schema, std::size_t(-1) / 1000), CapacityError);
  EXPECT_THROW((void)Layout::compute(schema, std::size_t(-1)), CapacityError);
}

}  // namespace
}  // namespace replay_buffer
