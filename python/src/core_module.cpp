// The `replay_buffer._core` extension: a thin binding of the C++ Buffer. It checks and converts
// arguments, releases the GIL around every copy, and hands out zero-copy column views.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"

namespace py = pybind11;
namespace rb = replay_buffer;

namespace {

constexpr const char* kIndicesKey = "indices";

std::string shape_text(const std::vector<py::ssize_t>& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + (shape.size() == 1 ? ",)" : ")");
}

// "(n, 84, 84)" / "(n,)": a batched shape whose leading size is still unknown.
std::string batched_shape_text(const char* leading, const std::vector<py::ssize_t>& row_shape) {
  std::string out = std::string("(") + leading;
  for (const py::ssize_t dim : row_shape) out += ", " + std::to_string(dim);
  return out + (row_shape.empty() ? ",)" : ")");
}

std::vector<py::ssize_t> shape_of(const py::array& array) {
  return {array.shape(), array.shape() + array.ndim()};
}

// Whether NumPy would cast `from` to `to` under casting="same_kind" (float64 -> float32 yes,
// float -> int no), asked once per pair of dtypes.
bool same_kind_castable(const py::dtype& from, const py::dtype& to) {
  static std::map<std::pair<int, int>, bool> cache;  // guarded by the GIL
  const auto key = std::make_pair(from.num(), to.num());
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> can_cast;
  const py::object& fn = can_cast
      .call_once_and_store_result([] { return py::module_::import("numpy").attr("can_cast"); })
      .get_stored();
  const bool castable = fn(from, to, "same_kind").cast<bool>();
  cache.emplace(key, castable);
  return castable;
}

// A Python int, float or bool stored straight into a scalar field, skipping NumPy. Follows
// NumPy's rules for Python scalars: ints must fit the field, floats go only into float fields,
// bools anywhere; an int goes into a bool field only as 0 or 1.
class ScalarSlot {
 public:
  // False when `value` is not a plain Python scalar or the field needs NumPy (float16).
  bool store(const py::handle value, rb::DType dtype, const std::string& field) {
    if (dtype == rb::DType::kFloat16) return false;
    if (PyBool_Check(value.ptr())) return store_integer(value.ptr() == Py_True, dtype, field);
    if (PyLong_CheckExact(value.ptr())) {
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
      if (overflow != 0) throw_overflow(field, dtype);
      if (dtype == rb::DType::kBool && v != 0 && v != 1) {
        throw py::type_error("field '" + field + "' is bool; got the int " + std::to_string(v) +
                             " (only 0 or 1, or True/False)");
      }
      return store_integer(v, dtype, field);
    }
    if (PyFloat_CheckExact(value.ptr())) {
      const double v = PyFloat_AS_DOUBLE(value.ptr());
      if (dtype == rb::DType::kFloat32) return put(static_cast<float>(v));
      if (dtype == rb::DType::kFloat64) return put(v);
      throw rb::DTypeError("field '" + field + "' has dtype " +
                           std::string(rb::dtype_name(dtype)) + "; got a float");
    }
    return false;
  }

  [[nodiscard]] rb::FieldBytes bytes() const noexcept { return {bytes_.data(), size_}; }

 private:
  template <typename T>
  bool put(T v) noexcept {
    std::memcpy(bytes_.data(), &v, sizeof(T));
    size_ = sizeof(T);
    return true;
  }

  template <typename T>
  bool put_checked(long long v, const std::string& field, rb::DType dtype) {
    if constexpr (std::is_signed_v<T>) {
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
        throw_overflow(field, dtype);
      }
    } else {
      if (v < 0 || static_cast<unsigned long long>(v) > std::numeric_limits<T>::max()) {
        throw_overflow(field, dtype);
      }
    }
    return put(static_cast<T>(v));
  }

  bool store_integer(long long v, rb::DType dtype, const std::string& field) {
    switch (dtype) {
      case rb::DType::kBool:
        return put(static_cast<bool>(v));
      case rb::DType::kInt8:
        return put_checked<std::int8_t>(v, field, dtype);
      case rb::DType::kUInt8:
        return put_checked<std::uint8_t>(v, field, dtype);
      case rb::DType::kInt16:
        return put_checked<std::int16_t>(v, field, dtype);
      case rb::DType::kUInt16:
        return put_checked<std::uint16_t>(v, field, dtype);
      case rb::DType::kInt32:
        return put_checked<std::int32_t>(v, field, dtype);
      case rb::DType::kUInt32:
        return put_checked<std::uint32_t>(v, field, dtype);
      case rb::DType::kInt64:
        return put(static_cast<std::int64_t>(v));
      case rb::DType::kUInt64:
        return put_checked<std::uint64_t>(v, field, dtype);
      case rb::DType::kFloat32:
        return put(static_cast<float>(v));
      case rb::DType::kFloat64:
        return put(static_cast<double>(v));
      case rb::DType::kFloat16:
        return false;
    }
    return false;
  }

  [[noreturn]] static void throw_overflow(const std::string& field, rb::DType dtype) {
    throw py::value_error("field '" + field + "': value out of range for " +
                          std::string(rb::dtype_name(dtype)));
  }

  alignas(8) std::array<std::byte, 8> bytes_{};
  std::size_t size_ = 0;
};

// A Buffer plus what the binding needs per field: its NumPy dtype, shape and dict key.
class PyBuffer {
 public:
  PyBuffer(const std::vector<std::tuple<std::string, std::string, std::vector<std::size_t>>>& fields,
           std::size_t capacity, std::uint64_t seed)
      : buffer_(make_schema(fields), rb::BufferOptions{capacity, seed}) {
    const py::object np_dtype = py::module_::import("numpy").attr("dtype");
    for (const rb::Field& field : buffer_.schema().fields()) {
      dtypes_.push_back(py::reinterpret_borrow<py::dtype>(np_dtype(std::string(rb::dtype_name(field.dtype)))));
      shapes_.emplace_back(field.shape.begin(), field.shape.end());
      names_.emplace_back(field.name);
    }
    indices_dtype_ = py::dtype::of<std::int64_t>();
    indices_name_ = py::str(kIndicesKey);
  }

  std::uint64_t add(const py::args& args, const py::kwargs& kwargs) {
    const std::vector<py::handle> values = bind_fields(args, kwargs);
    Inputs inputs(values.size());
    std::array<ScalarSlot, rb::kMaxFields> scalars;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const rb::Field& field = buffer_.schema()[i];
      if (field.shape.empty() && scalars[i].store(values[i], field.dtype, field.name)) {
        inputs.bytes[i] = scalars[i].bytes();
      } else {
        convert(values[i], i, /*batched=*/false, std::nullopt, inputs);
      }
    }
    py::gil_scoped_release release;
    return buffer_.add(inputs.bytes);
  }

  std::uint64_t add_batch(const py::args& args, const py::kwargs& kwargs) {
    const std::vector<py::handle> values = bind_fields(args, kwargs);
    Inputs inputs(values.size());
    std::optional<py::ssize_t> rows;
    for (std::size_t i = 0; i < values.size(); ++i) {
      rows = convert(values[i], i, /*batched=*/true, rows, inputs);
    }
    if (*rows == 0) throw py::value_error("add_batch needs at least one row; got 0");
    py::gil_scoped_release release;
    return buffer_.add_batch(inputs.bytes, static_cast<std::size_t>(*rows));
  }

  py::dict sample(py::ssize_t batch_size) {
    if (batch_size <= 0) {
      throw py::value_error("batch_size must be at least 1; got " + std::to_string(batch_size));
    }
    const std::size_t n = static_cast<std::size_t>(batch_size);
    std::vector<py::array> arrays;
    std::vector<rb::FieldOut> out;
    arrays.reserve(names_.size());
    out.reserve(names_.size());
    for (std::size_t i = 0; i < names_.size(); ++i) {
      std::vector<py::ssize_t> shape{batch_size};
      shape.insert(shape.end(), shapes_[i].begin(), shapes_[i].end());
      py::array array(dtypes_[i], shape);
      out.emplace_back(static_cast<std::byte*>(array.mutable_data()),
                       static_cast<std::size_t>(array.nbytes()));
      arrays.push_back(std::move(array));
    }
    py::array indices(indices_dtype_, std::vector<py::ssize_t>{batch_size});
    const std::span<std::uint64_t> keys(static_cast<std::uint64_t*>(indices.mutable_data()), n);
    {
      py::gil_scoped_release release;
      buffer_.sample(n, out, keys);
    }
    py::dict batch;
    for (std::size_t i = 0; i < names_.size(); ++i) batch[names_[i]] = std::move(arrays[i]);
    batch[indices_name_] = std::move(indices);
    return batch;
  }

  py::dict sample_into(const py::dict& out) {
    if (out.empty()) throw py::value_error("sample_into needs at least one output array");
    std::vector<rb::FieldOut> targets(names_.size());
    std::span<std::uint64_t> keys;
    std::optional<py::ssize_t> rows;
    for (const auto& [key, value] : out) {
      const std::string name = py::str(key);
      const bool is_indices = name == kIndicesKey;
      const std::optional<std::size_t> field = buffer_.schema().index_of(name);
      if (!is_indices && !field) {
        throw py::key_error("sample_into: no field named '" + name + "'; fields are " +
                            buffer_.schema().field_names() + ", and '" + kIndicesKey + "'");
      }
      const py::dtype& dtype = is_indices ? indices_dtype_ : dtypes_[*field];
      const std::vector<py::ssize_t> no_dims;
      const std::vector<py::ssize_t>& row_shape = is_indices ? no_dims : shapes_[*field];
      const py::array array = checked_output(value, name, dtype, row_shape, rows);
      if (!rows) rows = array.shape(0);
      auto* data = static_cast<std::byte*>(const_cast<void*>(array.data()));
      if (is_indices) {
        keys = {reinterpret_cast<std::uint64_t*>(data), static_cast<std::size_t>(*rows)};
      } else {
        targets[*field] = {data, static_cast<std::size_t>(array.nbytes())};
      }
    }
    if (*rows == 0) throw py::value_error("sample_into: output arrays have 0 rows");
    {
      py::gil_scoped_release release;
      buffer_.sample(static_cast<std::size_t>(*rows), targets, keys);
    }
    return out;
  }

  // Read-only views of the stored rows (slot order), sharing memory with the buffer.
  py::dict columns(const py::object& owner) const {
    const auto rows = static_cast<py::ssize_t>(buffer_.size());
    py::dict views;
    for (std::size_t i = 0; i < names_.size(); ++i) {
      std::vector<py::ssize_t> shape{rows};
      shape.insert(shape.end(), shapes_[i].begin(), shapes_[i].end());
      py::array view(dtypes_[i], shape, buffer_.column(i).data(), owner);
      view.attr("setflags")(py::arg("write") = false);
      views[names_[i]] = view;
    }
    return views;
  }

  py::dict fields() const {
    py::dict out;
    for (std::size_t i = 0; i < names_.size(); ++i) {
      py::dict spec;
      spec["shape"] = py::tuple(py::cast(shapes_[i]));
      spec["dtype"] = dtypes_[i];
      out[names_[i]] = spec;
    }
    return out;
  }

  rb::Buffer& buffer() noexcept { return buffer_; }

 private:
  // Converted inputs, and the arrays that own their bytes until the copy is done.
  struct Inputs {
    explicit Inputs(std::size_t n) : bytes(n), owners(n) {}
    std::vector<rb::FieldBytes> bytes;
    std::vector<py::object> owners;
  };

  static rb::Schema make_schema(
      const std::vector<std::tuple<std::string, std::string, std::vector<std::size_t>>>& fields) {
    std::vector<rb::Field> list;
    for (const auto& [name, dtype_name, shape] : fields) {
      const auto dtype = rb::dtype_from_name(dtype_name);
      if (!dtype) {
        throw rb::DTypeError("field '" + name + "': unsupported dtype '" + dtype_name +
                             "' (bool, int8-64, uint8-64, float16, float32, float64)");
      }
      list.push_back(rb::Field{name, *dtype, shape});
    }
    return rb::Schema(std::move(list));
  }

  // Puts positional and keyword arguments in schema order; every field exactly once.
  std::vector<py::handle> bind_fields(const py::args& args, const py::kwargs& kwargs) const {
    const rb::Schema& schema = buffer_.schema();
    if (args.size() > schema.size()) {
      throw py::type_error("expected at most " + std::to_string(schema.size()) +
                           " positional values (" + schema.field_names() + "), got " +
                           std::to_string(args.size()));
    }
    std::vector<py::handle> values(schema.size());
    for (std::size_t i = 0; i < args.size(); ++i) values[i] = args[i];
    for (const auto& [key, value] : kwargs) {
      const std::string name = py::str(key);
      const auto index = schema.index_of(name);
      if (!index) {
        throw py::type_error("unknown field '" + name + "'; fields are " + schema.field_names());
      }
      if (values[*index]) throw py::type_error("field '" + name + "' given twice");
      values[*index] = value;
    }
    std::string missing;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!values[i]) missing += (missing.empty() ? "'" : ", '") + schema[i].name + "'";
    }
    if (!missing.empty()) throw py::type_error("missing field(s) " + missing);
    return values;
  }

  // Converts `value` into C-contiguous bytes of field i's dtype, stored in inputs[i]. One row
  // (add) when not `batched`; otherwise (rows, *shape), where the first field sets `rows`.
  // Returns the number of rows.
  py::ssize_t convert(py::handle value, std::size_t i, bool batched,
                      std::optional<py::ssize_t> rows, Inputs& inputs) const {
    const rb::Field& field = buffer_.schema()[i];
    py::array array = py::array::ensure(value);
    if (!array) {
      PyErr_Clear();
      throw rb::DTypeError("field '" + field.name + "' (" + field.describe() +
                           "): cannot make an array of " +
                           std::string(py::str(py::type::handle_of(value).attr("__name__"))));
    }
    const bool exact_dtype = array.dtype().equal(dtypes_[i]);
    if (!exact_dtype && !same_kind_castable(array.dtype(), dtypes_[i])) {
      throw rb::DTypeError("field '" + field.name + "' has dtype " +
                           std::string(rb::dtype_name(field.dtype)) + "; cannot safely cast " +
                           std::string(py::str(array.dtype())) + " to it");
    }
    std::vector<py::ssize_t> expected;
    if (batched) {
      expected.push_back(rows.value_or(array.ndim() > 0 ? array.shape(0) : -1));
    }
    expected.insert(expected.end(), shapes_[i].begin(), shapes_[i].end());
    const std::vector<py::ssize_t> given = shape_of(array);
    if (given != expected) {
      const std::string want =
          batched && !rows ? batched_shape_text("n", shapes_[i]) : shape_text(expected);
      throw py::value_error("field '" + field.name + "' (" + field.describe() +
                            "): expected shape " + want + ", got " + shape_text(given));
    }
    if (!exact_dtype) {
      array = array.attr("astype")(dtypes_[i], py::arg("order") = "C");
    } else if (!(array.flags() & py::array::c_style)) {
      array = py::array::ensure(array, py::array::c_style);  // non-contiguous: copied
    }
    inputs.bytes[i] = {static_cast<const std::byte*>(array.data()),
                       static_cast<std::size_t>(array.nbytes())};
    inputs.owners[i] = std::move(array);
    return batched ? expected[0] : 1;
  }

  py::array checked_output(py::handle value, const std::string& name, const py::dtype& dtype,
                           const std::vector<py::ssize_t>& row_shape,
                           std::optional<py::ssize_t> rows) const {
    if (!py::isinstance<py::array>(value)) {
      throw py::type_error("sample_into: '" + name + "' must be a numpy.ndarray, got " +
                           std::string(py::str(py::type::handle_of(value).attr("__name__"))));
    }
    const auto array = py::reinterpret_borrow<py::array>(value);
    if (!array.dtype().equal(dtype)) {
      throw rb::DTypeError("sample_into: '" + name + "' must have dtype " +
                           std::string(py::str(dtype)) + ", got " +
                           std::string(py::str(array.dtype())));
    }
    std::vector<py::ssize_t> want{rows.value_or(array.ndim() > 0 ? array.shape(0) : -1)};
    want.insert(want.end(), row_shape.begin(), row_shape.end());
    if (shape_of(array) != want || want[0] < 0) {
      const std::string expected = rows ? shape_text(want) : batched_shape_text("batch", row_shape);
      throw py::value_error("sample_into: '" + name + "' must have shape " + expected +
                            ", got " + shape_text(shape_of(array)));
    }
    if (!(array.flags() & py::array::c_style)) {
      throw py::value_error("sample_into: '" + name + "' must be C-contiguous");
    }
    if (!array.writeable()) throw py::value_error("sample_into: '" + name + "' is read-only");
    return array;
  }

  rb::Buffer buffer_;
  std::vector<py::dtype> dtypes_;
  std::vector<std::vector<py::ssize_t>> shapes_;
  std::vector<py::str> names_;
  py::dtype indices_dtype_;
  py::str indices_name_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ core of replay_buffer. Use the replay_buffer package, not this module.";

  // Stored without a destructor that would run after the interpreter is gone.
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> empty_error;
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> capacity_error;
  empty_error.call_once_and_store_result([&] {
    return py::exception<rb::EmptyBufferError>(m, "EmptyBufferError", PyExc_ValueError);
  });
  capacity_error.call_once_and_store_result([&] {
    return py::exception<rb::CapacityError>(m, "CapacityError", PyExc_MemoryError);
  });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rb::DTypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const rb::EmptyBufferError& e) {
      py::set_error(empty_error.get_stored(), e.what());
    } catch (const rb::CapacityError& e) {
      py::set_error(capacity_error.get_stored(), e.what());
    }
  });

  py::class_<PyBuffer>(m, "Buffer")
      .def(py::init<const std::vector<std::tuple<std::string, std::string, std::vector<std::size_t>>>&,
                    std::size_t, std::uint64_t>(),
           py::arg("fields"), py::arg("capacity"), py::arg("seed"))
      .def("add", &PyBuffer::add)
      .def("add_batch", &PyBuffer::add_batch)
      .def("sample", &PyBuffer::sample, py::arg("batch_size"))
      .def("sample_into", &PyBuffer::sample_into, py::arg("out"))
      .def("columns", [](const py::object& self) { return self.cast<const PyBuffer&>().columns(self); })
      .def_property_readonly("fields", &PyBuffer::fields)
      .def("size", [](PyBuffer& b) { return b.buffer().size(); })
      .def("__len__", [](PyBuffer& b) { return b.buffer().size(); })
      .def("capacity", [](PyBuffer& b) { return b.buffer().capacity(); })
      .def("is_full", [](PyBuffer& b) { return b.buffer().is_full(); })
      .def("next_key", [](PyBuffer& b) { return b.buffer().next_key(); })
      .def("region_bytes", [](PyBuffer& b) { return b.buffer().region_bytes(); })
      .def("clear", [](PyBuffer& b) { b.buffer().clear(); });
}
