#include "py_buffer.hpp"

#include <utility>

#include "replay_buffer/errors.hpp"

namespace replay_buffer::python {
namespace {

constexpr const char* kIndicesKey = "indices";

Schema make_schema(const std::vector<FieldDescription>& fields) {
  std::vector<Field> list;
  for (const auto& [name, dtype_text, shape] : fields) {
    const auto dtype = dtype_from_name(dtype_text);
    if (!dtype) {
      throw DTypeError("field '" + name + "': unsupported dtype '" + dtype_text +
                       "' (bool, int8-64, uint8-64, float16, float32, float64)");
    }
    list.push_back(Field{name, *dtype, shape});
  }
  return Schema(std::move(list));
}

constexpr std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

PyBuffer::PyBuffer(const std::vector<FieldDescription>& fields, std::size_t capacity,
                   std::uint64_t seed)
    : buffer_(make_schema(fields), BufferOptions{capacity, seed}),
      indices_dtype_(py::dtype::of<std::int64_t>()),
      indices_name_(kIndicesKey) {
  const py::object np_dtype = py::module_::import("numpy").attr("dtype");
  for (const Field& field : buffer_.schema().fields()) {
    info_.push_back(
        FieldInfo{&field,
                  py::reinterpret_borrow<py::dtype>(np_dtype(std::string(dtype_name(field.dtype)))),
                  {field.shape.begin(), field.shape.end()},
                  // Interned, like the keyword names Python passes: compared by address.
                  py::reinterpret_steal<py::str>(PyUnicode_InternFromString(field.name.c_str()))});
  }
}

std::size_t PyBuffer::field_index(py::handle key, const char* context) const {
  // Keyword names are usually the very string objects Python interned for the field names.
  for (std::size_t i = 0; i < info_.size(); ++i) {
    if (key.ptr() == info_[i].name.ptr()) return i;
  }
  const std::string name = py::str(key);
  if (const auto index = buffer_.schema().index_of(name)) return *index;
  throw py::type_error(std::string(context) + "unknown field '" + name + "'; fields are " +
                       buffer_.schema().field_names());
}

void PyBuffer::bind_fields(const py::args& args, const py::kwargs& kwargs,
                           std::array<py::handle, kMaxFields>& values) const {
  const Schema& schema = buffer_.schema();
  if (args.size() > schema.size()) {
    throw py::type_error("expected at most " + std::to_string(schema.size()) +
                         " positional values (" + schema.field_names() + "), got " +
                         std::to_string(args.size()));
  }
  for (std::size_t i = 0; i < args.size(); ++i) values[i] = args[i];
  for (const auto& [key, value] : kwargs) {
    const std::size_t index = field_index(key, "");
    if (values[index]) throw py::type_error("field '" + schema[index].name + "' given twice");
    values[index] = value;
  }
  std::string missing;
  for (std::size_t i = 0; i < schema.size(); ++i) {
    if (!values[i]) missing += (missing.empty() ? "'" : ", '") + schema[i].name + "'";
  }
  if (!missing.empty()) throw py::type_error("missing field(s) " + missing);
}

std::uint64_t PyBuffer::add(const py::args& args, const py::kwargs& kwargs) {
  std::array<py::handle, kMaxFields> values{};
  bind_fields(args, kwargs, values);
  Inputs inputs;
  for (std::size_t i = 0; i < info_.size(); ++i) convert(values[i], info_[i], i, nullptr, inputs);
  const std::span<const FieldBytes> row(inputs.bytes.data(), info_.size());
  py::gil_scoped_release release;
  return buffer_.add(row);
}

std::uint64_t PyBuffer::add_batch(const py::args& args, const py::kwargs& kwargs) {
  std::array<py::handle, kMaxFields> values{};
  bind_fields(args, kwargs, values);
  Inputs inputs;
  std::optional<py::ssize_t> rows;
  for (std::size_t i = 0; i < info_.size(); ++i) convert(values[i], info_[i], i, &rows, inputs);
  if (*rows == 0) throw py::value_error("add_batch needs at least one row; got 0");
  const std::span<const FieldBytes> columns(inputs.bytes.data(), info_.size());
  py::gil_scoped_release release;
  return buffer_.add_batch(columns, static_cast<std::size_t>(*rows));
}

py::dict PyBuffer::sample(py::ssize_t batch_size) {
  if (batch_size <= 0) {
    throw py::value_error("batch_size must be at least 1; got " + std::to_string(batch_size));
  }
  const auto n = static_cast<std::size_t>(batch_size);
  // One block holds every field's rows and the keys, each part 64-byte aligned.
  std::array<std::size_t, kMaxFields + 1> offsets{};
  std::size_t total = 0;
  for (std::size_t i = 0; i < info_.size(); ++i) {
    offsets[i] = total;
    total += align64(n * info_[i].field->row_bytes());
  }
  offsets[info_.size()] = total;
  total += n * sizeof(std::uint64_t);
  const py::array block = blocks_.acquire(total);
  auto* base = static_cast<std::byte*>(const_cast<void*>(block.data()));

  std::array<FieldOut, kMaxFields> out{};
  py::dict batch;
  std::vector<py::ssize_t> shape;
  for (std::size_t i = 0; i < info_.size(); ++i) {
    shape.assign(1, batch_size);
    shape.insert(shape.end(), info_[i].shape.begin(), info_[i].shape.end());
    out[i] = {base + offsets[i], n * info_[i].field->row_bytes()};
    batch[info_[i].name] = py::array(info_[i].dtype, shape, out[i].data(), block);
  }
  auto* keys = reinterpret_cast<std::uint64_t*>(base + offsets[info_.size()]);
  batch[indices_name_] = py::array(indices_dtype_, {batch_size}, keys, block);
  {
    py::gil_scoped_release release;
    buffer_.sample(n, std::span<const FieldOut>(out.data(), info_.size()), {keys, n});
  }
  return batch;
}

py::array PyBuffer::checked_output(py::handle value, const std::string& name,
                                   const py::dtype& dtype, std::span<const py::ssize_t> row_shape,
                                   std::optional<py::ssize_t> rows) const {
  if (!py::isinstance<py::array>(value)) {
    throw py::type_error("sample_into: '" + name + "' must be a numpy.ndarray, got " +
                         type_name(value));
  }
  const auto array = py::reinterpret_borrow<py::array>(value);
  if (!array.dtype().equal(dtype)) {
    throw DTypeError("sample_into: '" + name + "' must have dtype " + std::string(py::str(dtype)) +
                     ", got " + std::string(py::str(array.dtype())));
  }
  const py::ssize_t leading = rows.value_or(array.ndim() > 0 ? array.shape(0) : -1);
  if (leading < 0 || !has_shape(array, leading, row_shape)) {
    std::string expected = batched_shape_text("batch", row_shape);
    if (rows) {
      std::vector<py::ssize_t> full{*rows};
      full.insert(full.end(), row_shape.begin(), row_shape.end());
      expected = shape_text(full);
    }
    const std::vector<py::ssize_t> given(array.shape(), array.shape() + array.ndim());
    throw py::value_error("sample_into: '" + name + "' must have shape " + expected + ", got " +
                          shape_text(given));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error("sample_into: '" + name + "' must be C-contiguous");
  }
  if (!array.writeable()) throw py::value_error("sample_into: '" + name + "' is read-only");
  return array;
}

py::dict PyBuffer::sample_into(const py::dict& out) {
  if (out.empty()) throw py::value_error("sample_into needs at least one output array");
  std::array<FieldOut, kMaxFields> targets{};
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
    const py::dtype& dtype = is_indices ? indices_dtype_ : info_[*field].dtype;
    const std::span<const py::ssize_t> row_shape =
        is_indices ? std::span<const py::ssize_t>()
                   : std::span<const py::ssize_t>(info_[*field].shape);
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
    buffer_.sample(static_cast<std::size_t>(*rows),
                   std::span<const FieldOut>(targets.data(), info_.size()), keys);
  }
  return out;
}

py::dict PyBuffer::columns(const py::object& owner) const {
  const auto rows = static_cast<py::ssize_t>(buffer_.size());
  py::dict views;
  for (std::size_t i = 0; i < info_.size(); ++i) {
    std::vector<py::ssize_t> shape{rows};
    shape.insert(shape.end(), info_[i].shape.begin(), info_[i].shape.end());
    py::array view(info_[i].dtype, shape, buffer_.column(i).data(), owner);
    view.attr("setflags")(py::arg("write") = false);
    views[info_[i].name] = view;
  }
  return views;
}

py::dict PyBuffer::fields() const {
  py::dict out;
  for (const FieldInfo& info : info_) {
    py::dict spec;
    spec["shape"] = py::tuple(py::cast(info.shape));
    spec["dtype"] = info.dtype;
    out[info.name] = spec;
  }
  return out;
}

}  // namespace replay_buffer::python
