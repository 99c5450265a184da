#include "replay_buffer/schema.hpp"

#include <algorithm>
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
}

}  // namespace

bool is_valid_field_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= kMaxFieldNameLength &&
         std::all_of(name.begin(), name.end(), is_name_char);
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
