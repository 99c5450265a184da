#include "replay_buffer/schema.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "replay_buffer/dtype.hpp"

namespace replay_buffer {
namespace {

TEST(Schema, DescribesFields) {
  const Schema schema({{"obs", DType::kUInt8, {84, 84, 4}}, {"reward", DType::kFloat32, {}}});
  EXPECT_EQ(schema.size(), 2u);
  EXPECT_EQ(schema[0].row_bytes(), 84u * 84u * 4u);
  EXPECT_EQ(schema[1].row_bytes(), 4u);
  EXPECT_EQ(schema.transition_bytes(), 84u * 84u * 4u + 4u);
  EXPECT_EQ(schema.index_of("reward"), 1u);
  EXPECT_EQ(schema.index_of("nope"), std::nullopt);
  EXPECT_EQ(schema[0].describe(), "uint8[84, 84, 4]");
  EXPECT_EQ(schema[1].describe(), "float32 scalar");
  EXPECT_EQ(schema.field_names(), "obs, reward");
}

TEST(Schema, RejectsInvalidFields) {
  EXPECT_THROW(Schema({}), std::invalid_argument);
  EXPECT_THROW(Schema({{"", DType::kFloat32, {}}}), std::invalid_argument);
  EXPECT_THROW(Schema({{"a b", DType::kFloat32, {}}}), std::invalid_argument);
  EXPECT_THROW(Schema({{std::string(64, 'x'), DType::kFloat32, {}}}), std::invalid_argument);
  EXPECT_THROW(Schema({{"a", DType::kFloat32, {}}, {"a", DType::kInt8, {}}}),
               std::invalid_argument);
  EXPECT_THROW(Schema({{"a", DType::kFloat32, {3, 0}}}), std::invalid_argument);
  EXPECT_THROW(Schema({{"a", DType::kFloat32, {1, 1, 1, 1, 1, 1, 1, 1, 1}}}),
               std::invalid_argument);
  EXPECT_THROW(Schema({{"a", DType::kFloat32, {1u << 20, 1u << 20}}}), std::invalid_argument);
  EXPECT_NO_THROW(Schema({{std::string(63, 'x'), DType::kFloat32, {}}}));
}

TEST(DType, NamesRoundTrip) {
  for (std::uint8_t i = 0; i < kDTypeCount; ++i) {
    const auto t = static_cast<DType>(i);
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
    EXPECT_GT(dtype_size(t), 0u);
  }
  EXPECT_EQ(dtype_from_name("complex64"), std::nullopt);
  static_assert(dtype_of<float>() == DType::kFloat32);
  static_assert(dtype_of<std::uint8_t>() == DType::kUInt8);
  static_assert(dtype_of<bool>() == DType::kBool);
  static_assert(dtype_of<long long>() == DType::kInt64);
}

}  // namespace
}  // namespace replay_buffer
