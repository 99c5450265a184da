#include "conversions.hpp"

#include <cstring>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>

#include "replay_buffer/errors.hpp"

namespace replay_buffer::python {

std::string shape_text(std::span<const py::ssize_t> shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + (shape.size() == 1 ? ",)" : ")");
}

std::string batched_shape_text(const char* leading, std::span<const py::ssize_t> row_shape) {
  std::string out = std::string("(") + leading;
  for (const py::ssize_t dim : row_shape) out += ", " + std::to_string(dim);
  return out + (row_shape.empty() ? ",)" : ")");
}

std::string type_name(py::handle value) {
  return py::str(py::type::handle_of(value).attr("__name__"));
}

bool has_shape(const py::array& array, std::optional<py::ssize_t> leading,
               std::span<const py::ssize_t> row_shape) {
  const auto offset = static_cast<py::ssize_t>(leading.has_value());
  if (array.ndim() != offset + static_cast<py::ssize_t>(row_shape.size())) return false;
  if (leading && array.shape(0) != *leading) return false;
  for (std::size_t d = 0; d < row_shape.size(); ++d) {
    if (array.shape(offset + static_cast<py::ssize_t>(d)) != row_shape[d]) return false;
  }
  return true;
}

bool same_kind_castable(const py::dtype& from, const py::dtype& to) {
  static std::map<std::pair<int, int>, bool> cache;  // guarded by the GIL
  const auto key = std::make_pair(from.num(), to.num());
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> can_cast;
  const py::object& fn =
      can_cast
          .call_once_and_store_result([] { return py::module_::import("numpy").attr("can_cast"); })
          .get_stored();
  const bool castable = fn(from, to, "same_kind").cast<bool>();
  cache.emplace(key, castable);
  return castable;
}

namespace {

[[noreturn]] void throw_out_of_range(const Field& field) {
  throw py::value_error("field '" + field.name + "': value out of range for " +
                        std::string(dtype_name(field.dtype)));
}

bool is_integer_kind(const py::dtype& dtype) {
  const char kind = dtype.kind();
  return kind == 'i' || kind == 'u';
}

// Throws ValueError naming the field when a value of the integer array `array` does not fit the
// field's integer dtype.
void check_integer_range(const py::array& array, const FieldInfo& info) {
  if (array.size() == 0) return;
  const py::module_ np = py::module_::import("numpy");
  const py::object limits = np.attr("iinfo")(info.dtype);
  const py::object low = array.attr("min")();
  const py::object high = array.attr("max")();
  if (low < limits.attr("min") || high > limits.attr("max")) {
    const py::object bad = low < limits.attr("min") ? low : high;
    throw py::value_error("field '" + info.field->name + "' (" + info.field->describe() +
                          "): value " + std::string(py::str(bad)) + " is out of range for " +
                          std::string(dtype_name(info.field->dtype)));
  }
}

}  // namespace

template <typename T>
bool ScalarSlot::put(T v) noexcept {
  std::memcpy(bytes_.data(), &v, sizeof(T));
  size_ = sizeof(T);
  return true;
}

template <typename T>
bool ScalarSlot::put_checked(long long v, const Field& field) {
  if constexpr (std::is_signed_v<T>) {
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
      throw_out_of_range(field);
    }
  } else {
    if (v < 0 || static_cast<unsigned long long>(v) > std::numeric_limits<T>::max()) {
      throw_out_of_range(field);
    }
  }
  return put(static_cast<T>(v));
}

bool ScalarSlot::store_integer(long long v, const Field& field) {
  switch (field.dtype) {
    case DType::kBool:
      return put(v != 0);
    case DType::kInt8:
      return put_checked<std::int8_t>(v, field);
    case DType::kUInt8:
      return put_checked<std::uint8_t>(v, field);
    case DType::kInt16:
      return put_checked<std::int16_t>(v, field);
    case DType::kUInt16:
      return put_checked<std::uint16_t>(v, field);
    case DType::kInt32:
      return put_checked<std::int32_t>(v, field);
    case DType::kUInt32:
      return put_checked<std::uint32_t>(v, field);
    case DType::kInt64:
      return put(static_cast<std::int64_t>(v));
    case DType::kUInt64:
      return put_checked<std::uint64_t>(v, field);
    case DType::kFloat32:
      return put(static_cast<float>(v));
    case DType::kFloat64:
      return put(static_cast<double>(v));
    case DType::kFloat16:
      return false;
  }
  return false;
}

bool ScalarSlot::store(py::handle value, const Field& field) {
  if (field.dtype == DType::kFloat16) return false;
  PyObject* obj = value.ptr();
  if (PyBool_Check(obj)) return store_integer(obj == Py_True ? 1 : 0, field);
  if (PyLong_CheckExact(obj)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow != 0) throw_out_of_range(field);
    if (field.dtype == DType::kBool && v != 0 && v != 1) {
      throw py::type_error("field '" + field.name + "' is bool; got the int " + std::to_string(v) +
                           " (only 0 or 1, or True/False)");
    }
    return store_integer(v, field);
  }
  if (PyFloat_CheckExact(obj)) {
    const double v = PyFloat_AS_DOUBLE(obj);
    if (field.dtype == DType::kFloat32) return put(static_cast<float>(v));
    if (field.dtype == DType::kFloat64) return put(v);
    throw DTypeError("field '" + field.name + "' has dtype " +
                     std::string(dtype_name(field.dtype)) + "; got a float");
  }
  return false;
}

void convert(py::handle value, const FieldInfo& info, std::size_t i,
             std::optional<py::ssize_t>* rows, Inputs& inputs) {
  const Field& field = *info.field;
  if (rows == nullptr && field.shape.empty() && inputs.scalars[i].store(value, field)) {
    inputs.bytes[i] = inputs.scalars[i].bytes();
    return;
  }
  py::array array = py::isinstance<py::array>(value) ? py::reinterpret_borrow<py::array>(value)
                                                     : py::array::ensure(value);
  if (!array) {
    PyErr_Clear();
    throw DTypeError("field '" + field.name + "' (" + field.describe() +
                     "): cannot make an array of " + type_name(value));
  }
  const py::dtype given_dtype = array.dtype();
  const bool exact_dtype = given_dtype.equal(info.dtype);
  const bool from_python = !py::isinstance<py::array>(value);
  if (!exact_dtype && from_python && is_integer_kind(given_dtype) && is_integer_kind(info.dtype)) {
    // Python ints (a list, a tuple) into an integer field: NumPy made them int64, which does not
    // cast to, say, uint8 by its rules; the values are what matter, as for a single Python int.
    check_integer_range(array, info);
  } else if (!exact_dtype && !same_kind_castable(given_dtype, info.dtype)) {
    throw DTypeError("field '" + field.name + "' has dtype " +
                     std::string(dtype_name(field.dtype)) + "; cannot safely cast " +
                     std::string(py::str(given_dtype)) + " to it");
  }
  std::optional<py::ssize_t> leading;
  if (rows != nullptr)
    leading = rows->has_value() ? **rows : (array.ndim() > 0 ? array.shape(0) : -1);
  if (!has_shape(array, leading, info.shape)) {
    std::string want;
    if (rows == nullptr) {
      want = shape_text(info.shape);
    } else if (rows->has_value()) {
      std::vector<py::ssize_t> full{**rows};
      full.insert(full.end(), info.shape.begin(), info.shape.end());
      want = shape_text(full);
    } else {
      want = batched_shape_text("n", info.shape);
    }
    const std::vector<py::ssize_t> given(array.shape(), array.shape() + array.ndim());
    throw py::value_error("field '" + field.name + "' (" + field.describe() + "): expected shape " +
                          want + ", got " + shape_text(given));
  }
  if (!exact_dtype) {
    array = array.attr("astype")(info.dtype, py::arg("order") = "C");
  } else if (!(array.flags() & py::array::c_style)) {
    array = py::array::ensure(array, py::array::c_style);  // non-contiguous input is copied
  }
  if (rows != nullptr) *rows = *leading;
  inputs.bytes[i] = {static_cast<const std::byte*>(array.data()),
                     static_cast<std::size_t>(array.nbytes())};
  inputs.owners[i] = std::move(array);
}

}  // namespace replay_buffer::python
