// Element types a field can hold, with their sizes and NumPy-compatible names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

namespace replay_buffer {

// The numeric values are stored in region headers: never renumber, only append.
enum class DType : std::uint8_t {
  kBool = 0,
  kInt8 = 1,
  kUInt8 = 2,
  kInt16 = 3,
  kUInt16 = 4,
  kInt32 = 5,
  kUInt32 = 6,
  kInt64 = 7,
  kUInt64 = 8,
  kFloat16 = 9,
  kFloat32 = 10,
  kFloat64 = 11,
};

// How many DType values there are: codes 0 to kDTypeCount - 1 are valid.
inline constexpr std::uint8_t kDTypeCount = 12;

// Bytes of one element of `t` (0 for an invalid code). Thread-safe (pure); O(1).
[[nodiscard]] constexpr std::size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::kBool:
    case DType::kInt8:
    case DType::kUInt8:
      return 1;
    case DType::kInt16:
    case DType::kUInt16:
    case DType::kFloat16:
      return 2;
    case DType::kInt32:
    case DType::kUInt32:
    case DType::kFloat32:
      return 4;
    case DType::kInt64:
    case DType::kUInt64:
    case DType::kFloat64:
      return 8;
  }
  return 0;
}

// NumPy's names ("float32", "uint8", "bool"), so errors read the same from C++ and Python.
[[nodiscard]] constexpr std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::kBool:
      return "bool";
    case DType::kInt8:
      return "int8";
    case DType::kUInt8:
      return "uint8";
    case DType::kInt16:
      return "int16";
    case DType::kUInt16:
      return "uint16";
    case DType::kInt32:
      return "int32";
    case DType::kUInt32:
      return "uint32";
    case DType::kInt64:
      return "int64";
    case DType::kUInt64:
      return "uint64";
    case DType::kFloat16:
      return "float16";
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
  }
  return "invalid";
}

// The DType whose NumPy name is `name` ("float32"), or nullopt. Thread-safe (pure); O(types).
[[nodiscard]] constexpr std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  for (std::uint8_t i = 0; i < kDTypeCount; ++i) {
    const auto t = static_cast<DType>(i);
    if (dtype_name(t) == name) return t;
  }
  return std::nullopt;
}

// Whether `raw` (a code read from a region or the wire) is a DType. Thread-safe (pure); O(1).
[[nodiscard]] constexpr bool is_valid_dtype(std::uint8_t raw) noexcept { return raw < kDTypeCount; }

// The DType of an arithmetic C++ type, for the typed front (ReplayBuffer<Obs, Act>).
template <typename T>
[[nodiscard]] consteval DType dtype_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>)
    return DType::kBool;
  else if constexpr (std::is_floating_point_v<U> && sizeof(U) == 4)
    return DType::kFloat32;
  else if constexpr (std::is_floating_point_v<U> && sizeof(U) == 8)
    return DType::kFloat64;
  else if constexpr (std::is_integral_v<U> && std::is_signed_v<U> && sizeof(U) == 1)
    return DType::kInt8;
  else if constexpr (std::is_integral_v<U> && std::is_signed_v<U> && sizeof(U) == 2)
    return DType::kInt16;
  else if constexpr (std::is_integral_v<U> && std::is_signed_v<U> && sizeof(U) == 4)
    return DType::kInt32;
  else if constexpr (std::is_integral_v<U> && std::is_signed_v<U> && sizeof(U) == 8)
    return DType::kInt64;
  else if constexpr (std::is_integral_v<U> && sizeof(U) == 1)
    return DType::kUInt8;
  else if constexpr (std::is_integral_v<U> && sizeof(U) == 2)
    return DType::kUInt16;
  else if constexpr (std::is_integral_v<U> && sizeof(U) == 4)
    return DType::kUInt32;
  else if constexpr (std::is_integral_v<U> && sizeof(U) == 8)
    return DType::kUInt64;
  else
    static_assert(sizeof(U) == 0, "no DType for this type");
}

}  // namespace replay_buffer
