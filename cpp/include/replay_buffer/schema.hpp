// What a transition is made of: named fields, each with an element type and a fixed shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "replay_buffer/dtype.hpp"

namespace replay_buffer {

inline constexpr std::size_t kMaxFieldNameLength = 63;
inline constexpr std::size_t kMaxDims = 8;
inline constexpr std::size_t kMaxFields = 64;

// Whether `name` may name a field: 1 to kMaxFieldNameLength characters from [A-Za-z0-9_.-].
// Thread-safe (pure); O(length).
[[nodiscard]] bool is_valid_field_name(std::string_view name) noexcept;

// One named field of a transition, e.g. {"obs", kUInt8, {84, 84, 4}}. An empty shape is a scalar.
struct Field {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<std::size_t> shape;
  // For integer fields that hold indices (a discrete action): every value must lie in
  // [0, num_values), checked on every add. 0: any value of the dtype.
  std::uint64_t num_values = 0;

  [[nodiscard]] std::size_t elements() const noexcept;
  // Throws std::invalid_argument naming the field, the row and the value when a value of `rows`
  // (bytes of whole rows of this field) lies outside [0, num_values). O(values); nothing to do
  // when num_values is 0. Thread-safe.
  void check_values(std::span<const std::byte> rows) const {
    if (num_values != 0) check_values_slow(rows);
  }
  [[nodiscard]] std::size_t row_bytes() const noexcept { return elements() * dtype_size(dtype); }
  // "float32[84, 84, 4]" / "float32 scalar": how errors name a field's type and shape.
  [[nodiscard]] std::string describe() const;

  friend bool operator==(const Field&, const Field&) = default;

 private:
  void check_values_slow(std::span<const std::byte> rows) const;
};

// An ordered, validated list of fields. Immutable once built; safe to share between threads.
class Schema {
 public:
  // Throws std::invalid_argument for an empty list, more than kMaxFields fields, a duplicate or
  // invalid name (empty, too long, not [A-Za-z0-9_.-]), more than kMaxDims dimensions, or a zero
  // dimension.
  explicit Schema(std::vector<Field> fields);

  [[nodiscard]] std::size_t size() const noexcept { return fields_.size(); }
  [[nodiscard]] const Field& operator[](std::size_t i) const noexcept { return fields_[i]; }
  [[nodiscard]] const std::vector<Field>& fields() const noexcept { return fields_; }
  [[nodiscard]] std::optional<std::size_t> index_of(std::string_view name) const noexcept;
  // Sum of every field's row_bytes: the raw size of one transition.
  [[nodiscard]] std::size_t transition_bytes() const noexcept;
  // "obs, action, reward": for error messages.
  [[nodiscard]] std::string field_names() const;

  friend bool operator==(const Schema&, const Schema&) = default;

 private:
  std::vector<Field> fields_;
};

}  // namespace replay_buffer
