// Turning Python values into the bytes of a field: NumPy arrays and plain Python scalars, with
// NumPy's casting rules ("same_kind") and error messages that name the field.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/schema.hpp"

namespace replay_buffer::python {

namespace py = pybind11;

// "(84, 84, 4)" / "(4,)" / "()".
std::string shape_text(std::span<const py::ssize_t> shape);
// "(n, 84, 84)" / "(n,)": a batched shape whose leading size is not known.
std::string batched_shape_text(const char* leading, std::span<const py::ssize_t> row_shape);
std::string type_name(py::handle value);

// Whether `array` has exactly `leading` (if given) followed by `row_shape`.
bool has_shape(const py::array& array, std::optional<py::ssize_t> leading,
               std::span<const py::ssize_t> row_shape);

// Whether NumPy casts `from` to `to` under casting="same_kind" (float64 -> float32 yes,
// float -> int no). Needs the GIL.
bool same_kind_castable(const py::dtype& from, const py::dtype& to);

// A Python int, float or bool stored straight into a scalar field, skipping NumPy. Follows
// NumPy's rules for Python scalars: ints must fit the field, floats go only into float fields,
// bools anywhere; an int goes into a bool field only as 0 or 1.
class ScalarSlot {
 public:
  // False when `value` is not a plain Python scalar or the field needs NumPy (float16).
  bool store(py::handle value, const Field& field);
  [[nodiscard]] FieldBytes bytes() const noexcept { return {bytes_.data(), size_}; }

 private:
  template <typename T>
  bool put(T v) noexcept;
  template <typename T>
  bool put_checked(long long v, const Field& field);
  bool store_integer(long long v, const Field& field);

  alignas(8) std::array<std::byte, 8> bytes_{};
  std::size_t size_ = 0;
};

// The converted values of one add or add_batch call, and the arrays that own their bytes until
// the copy is done.
struct Inputs {
  std::array<FieldBytes, kMaxFields> bytes{};
  std::array<py::object, kMaxFields> owners{};
  std::array<ScalarSlot, kMaxFields> scalars{};
};

// A field's dtype and shape as NumPy sees them.
struct FieldInfo {
  const Field* field;
  py::dtype dtype;
  std::vector<py::ssize_t> shape;
  py::str name;
};

// Converts `value` to C-contiguous bytes of the field's dtype into inputs.bytes[i]: one row when
// `rows` is nullptr, else (rows, *shape), where an unset `*rows` is learned from this value.
void convert(py::handle value, const FieldInfo& info, std::size_t i,
             std::optional<py::ssize_t>* rows, Inputs& inputs);

}  // namespace replay_buffer::python
