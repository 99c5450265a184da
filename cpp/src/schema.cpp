#include "replay_buffer/schema.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <limits>
#include <stdexcept>

namespace replay_buffer {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

void validate_field(const Field& field) {
  if (field.name.empty()) throw std::invalid_argument("field name must not be empty");
  if (field.name.size() > kMaxFieldNameLength) {
    throw std::invalid_argument("field name '" + field.name + "' is longer than " +
                                std::to_string(kMaxFieldNameLength) + " characters");
  }
  if (!std::all_of(field.name.begin(), field.name.end(), is_name_char)) {
    throw std::invalid_argument("field name '" + field.name +
                                "' may only contain letters, digits, '_', '-' and '.'");
  }
  if (field.shape.size() > kMaxDims) {
    throw std::invalid_argument("field '" + field.name + "' has " +
                                std::to_string(field.shape.size()) + " dimensions; at most " +
                                std::to_string(kMaxDims) + " are supported");
  }
  std::size_t elements = 1;
  for (const std::size_t dim : field.shape) {
    if (dim == 0) {
      throw std::invalid_argument("field '" + field.name + "' has shape " + field.describe() +
                                  "; every dimension must be at least 1");
    }
    if (elements > std::numeric_limits<std::uint32_t>::max() / dim) {
      throw std::invalid_argument("field '" + field.name + "' has shape " + field.describe() +
                                  ", too large for one transition");
    }
    elements *= dim;
  }
  if (field.num_values != 0) {
    if (field.dtype == DType::kBool || field.dtype == DType::kFloat16 ||
        field.dtype == DType::kFloat32 || field.dtype == DType::kFloat64) {
      throw std::invalid_argument("field '" + field.name + "' (" + field.describe() +
                                  "): num_values needs an integer dtype");
    }
    const std::size_t bits = dtype_size(field.dtype) * 8;
    const bool is_signed = field.dtype == DType::kInt8 || field.dtype == DType::kInt16 ||
                           field.dtype == DType::kInt32 || field.dtype == DType::kInt64;
    const std::size_t value_bits = is_signed ? bits - 1 : bits;
    if (value_bits < 64 && field.num_values > (std::uint64_t{1} << value_bits)) {
      throw std::invalid_argument("field '" + field.name + "' (" + field.describe() +
                                  "): num_values " + std::to_string(field.num_values) +
                                  " does not fit its dtype");
    }
  }
}

template <typename T>
void check_range(const Field& field, std::span<const std::byte> rows) {
  const std::size_t count = rows.size() / sizeof(T);
  for (std::size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, rows.data() + i * sizeof(T), sizeof(T));
    bool negative = false;
    if constexpr (std::is_signed_v<T>) negative = value < 0;
    if (negative || static_cast<std::uint64_t>(value) >= field.num_values) {
      const std::size_t per_row = std::max<std::size_t>(field.elements(), 1);
      throw std::invalid_argument("field '" + field.name + "': value " + std::to_string(value) +
                                  " (row " + std::to_string(i / per_row) + ") is outside [0, " +
                                  std::to_string(field.num_values) + ")");
    }
  }
}

}  // namespace

bool is_valid_field_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= kMaxFieldNameLength &&
         std::all_of(name.begin(), name.end(), is_name_char);
}

void Field::check_values_slow(std::span<const std::byte> rows) const {
  switch (dtype) {
    case DType::kInt8:
      return check_range<std::int8_t>(*this, rows);
    case DType::kUInt8:
      return check_range<std::uint8_t>(*this, rows);
    case DType::kInt16:
      return check_range<std::int16_t>(*this, rows);
    case DType::kUInt16:
      return check_range<std::uint16_t>(*this, rows);
    case DType::kInt32:
      return check_range<std::int32_t>(*this, rows);
    case DType::kUInt32:
      return check_range<std::uint32_t>(*this, rows);
    case DType::kInt64:
      return check_range<std::int64_t>(*this, rows);
    case DType::kUInt64:
      return check_range<std::uint64_t>(*this, rows);
    default:
      return;
  }
}

std::size_t Field::elements() const noexcept {
  std::size_t n = 1;
  for (const std::size_t dim : shape) n *= dim;
  return n;
}

std::string Field::describe() const {
  std::string out(dtype_name(dtype));
  if (shape.empty()) return out + " scalar";
  out += '[';
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + ']';
}

Schema::Schema(std::vector<Field> fields) : fields_(std::move(fields)) {
  if (fields_.empty()) throw std::invalid_argument("a schema needs at least one field");
  if (fields_.size() > kMaxFields) {
    throw std::invalid_argument("a schema has at most " + std::to_string(kMaxFields) +
                                " fields; got " + std::to_string(fields_.size()));
  }
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    validate_field(fields_[i]);
    for (std::size_t j = 0; j < i; ++j) {
      if (fields_[j].name == fields_[i].name) {
        throw std::invalid_argument("field name '" + fields_[i].name + "' appears twice");
      }
    }
  }
}

std::optional<std::size_t> Schema::index_of(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    if (fields_[i].name == name) return i;
  }
  return std::nullopt;
}

std::size_t Schema::transition_bytes() const noexcept {
  std::size_t total = 0;
  for (const Field& f : fields_) total += f.row_bytes();
  return total;
}

std::string Schema::field_names() const {
  std::string out;
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    if (i > 0) out += ", ";
    out += fields_[i].name;
  }
  return out;
}

}  // namespace replay_buffer
