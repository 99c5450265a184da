#include "py_buffer.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <memory>
#include <utility>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/selectors/registry.hpp"

namespace replay_buffer::python {
namespace {

constexpr const char* kIndicesKey = "indices";
constexpr const char* kWeightsKey = "weights";

template <typename T>
T option(const py::dict& options, const char* name) {
  if (!options.contains(name)) throw py::key_error(std::string("missing buffer option '") + name + "'");
  return options[name].cast<T>();
}

// A 1-d array of `dtype` from an array-like, with the same casting rules as add.
py::array vector_of(py::handle value, const py::dtype& dtype, const char* name) {
  py::array array = py::isinstance<py::array>(value) ? py::reinterpret_borrow<py::array>(value)
                                                     : py::array::ensure(value);
  if (!array) {
    PyErr_Clear();
    throw DTypeError(std::string(name) + ": cannot make an array of " + type_name(value));
  }
  if (array.ndim() != 1) {
    const std::vector<py::ssize_t> given(array.shape(), array.shape() + array.ndim());
    throw py::value_error(std::string(name) + " must be 1-dimensional, got shape " +
                          shape_text(given));
  }
  if (!array.dtype().equal(dtype)) {
    if (!same_kind_castable(array.dtype(), dtype)) {
      throw DTypeError(std::string(name) + " must be " + std::string(py::str(dtype)) +
                       "-compatible; cannot safely cast " + std::string(py::str(array.dtype())));
    }
    array = array.attr("astype")(dtype);
  }
  return py::array::ensure(array, py::array::c_style);
}

// The keys of an int64 array from vector_of, as the unsigned keys they are; IndexError for a
// negative one.
std::span<const std::uint64_t> checked_keys(const py::array& keys) {
  const auto* data = static_cast<const std::int64_t*>(keys.data());
  const auto count = static_cast<std::size_t>(keys.shape(0));
  for (std::size_t i = 0; i < count; ++i) {
    if (data[i] < 0) {
      throw py::index_error("indices[" + std::to_string(i) + "] is " + std::to_string(data[i]) +
                            "; keys are never negative");
    }
  }
  return {reinterpret_cast<const std::uint64_t*>(data), count};
}

Schema make_schema(const std::vector<FieldDescription>& fields) {
  std::vector<Field> list;
  for (const auto& [name, dtype_text, shape, num_values] : fields) {
    const auto dtype = dtype_from_name(dtype_text);
    if (!dtype) {
      throw DTypeError("field '" + name + "': unsupported dtype '" + dtype_text +
                       "' (bool, int8-64, uint8-64, float16, float32, float64)");
    }
    list.push_back(Field{name, *dtype, shape, num_values});
  }
  return Schema(std::move(list));
}

// A batch size from Python: an int (or integer-like, such as numpy.int64) >= 1, not a bool or a
// float.
py::ssize_t batch_size_of(py::handle value) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr())) {
    throw py::type_error("batch_size must be an int, got " + type_name(value) + " (" +
                         std::string(py::repr(value)) + ")");
  }
  const py::ssize_t n = PyNumber_AsSsize_t(value.ptr(), nullptr);
  if (n == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("batch_size " + std::string(py::repr(value)) + " is out of range");
  }
  if (n <= 0) throw py::value_error("batch_size must be at least 1; got " + std::to_string(n));
  return n;
}

[[noreturn]] void throw_closed() { throw py::value_error("buffer is closed"); }

constexpr std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

BufferOptions options_from_dict(const py::dict& options) {
  static constexpr std::array<const char*, 10> kNames{
      "capacity", "strategy", "seed", "alpha", "beta", "eps", "min_size_to_sample",
      "samples_per_insert", "error_buffer", "rate_limit_timeout"};
  for (const auto& [key, value] : options) {
    const std::string name = py::str(key);
    if (std::find_if(kNames.begin(), kNames.end(), [&](const char* n) { return name == n; }) ==
        kNames.end()) {
      throw py::key_error("unknown buffer option '" + name + "'");
    }
  }
  const auto strategy_text = option<std::string>(options, "strategy");
  const auto strategy = strategy_from_name(strategy_text);
  if (!strategy) {
    std::string names;
    for (const std::string_view n : strategy_names()) names += (names.empty() ? "'" : ", '") + std::string(n) + "'";
    throw py::value_error("strategy must be one of " + names + ", got '" + strategy_text + "'");
  }
  return {.capacity = option<std::size_t>(options, "capacity"),
          .seed = option<std::uint64_t>(options, "seed"),
          .strategy = *strategy,
          .alpha = option<double>(options, "alpha"),
          .beta = option<double>(options, "beta"),
          .eps = option<double>(options, "eps"),
          .rate_limit = {.min_size_to_sample = option<std::uint64_t>(options, "min_size_to_sample"),
                         .samples_per_insert = option<double>(options, "samples_per_insert"),
                         .error_buffer = option<double>(options, "error_buffer"),
                         .timeout_seconds = option<double>(options, "rate_limit_timeout")}};
}

py::dict options_to_dict(const BufferOptions& options) {
  py::dict out;
  out["capacity"] = options.capacity;
  out["strategy"] = std::string(strategy_name(options.strategy));
  out["seed"] = options.seed;
  out["alpha"] = options.alpha;
  out["beta"] = options.beta;
  out["eps"] = options.eps;
  out["min_size_to_sample"] = options.rate_limit.min_size_to_sample;
  out["samples_per_insert"] = options.rate_limit.samples_per_insert;
  out["error_buffer"] = options.rate_limit.error_buffer;
  out["rate_limit_timeout"] = options.rate_limit.timeout_seconds;
  return out;
}

PyBuffer::PyBuffer(const std::vector<FieldDescription>& fields, const py::dict& options_dict,
                   const std::optional<std::string>& shm_name, std::uint32_t shm_mode,
                   bool shm_keep)
    : indices_dtype_(py::dtype::of<std::int64_t>()),
      indices_name_(kIndicesKey),
      weights_dtype_(py::dtype::of<float>()),
      weights_name_(kWeightsKey) {
  Schema schema = make_schema(fields);
  const BufferOptions options = options_from_dict(options_dict);
  if (shm_mode > 0777) {
    throw py::value_error("shm_mode must be permission bits in [0, 0o777], got " +
                          std::to_string(shm_mode));
  }
  if (shm_name) {
    const SharedMemory shared{.name = *shm_name, .mode = shm_mode, .keep = shm_keep};
    py::gil_scoped_release release;  // initialising a large region takes a while
    buffer_ = std::make_shared<Buffer>(std::move(schema), options, shared);
  } else {
    buffer_ = std::make_shared<Buffer>(std::move(schema), options);
  }
  init_info();
}

PyBuffer::PyBuffer(const std::string& name, double timeout, bool allow_other_owner)
    : indices_dtype_(py::dtype::of<std::int64_t>()),
      indices_name_(kIndicesKey),
      weights_dtype_(py::dtype::of<float>()),
      weights_name_(kWeightsKey) {
  if (!(timeout >= 0.0) || timeout > 86400.0) {
    throw py::value_error("timeout must be in [0, 86400] seconds, got " + std::to_string(timeout));
  }
  {
    py::gil_scoped_release release;
    buffer_ = std::make_shared<Buffer>(
        Buffer::attach(name, std::chrono::milliseconds(static_cast<std::int64_t>(timeout * 1000.0)),
                       allow_other_owner ? Region::Owner::kAnyone : Region::Owner::kSelf));
  }
  init_info();
}

void PyBuffer::init_info() {
  shm_name_ = buffer_->shared_name();
  const py::object np_dtype = py::module_::import("numpy").attr("dtype");
  for (const Field& field : buffer_->schema().fields()) {
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
  if (const auto index = buffer().schema().index_of(name)) return *index;
  throw py::type_error(std::string(context) + "unknown field '" + name + "'; fields are " +
                       buffer().schema().field_names());
}

void PyBuffer::bind_fields(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                           std::array<py::handle, kMaxFields>& values) const {
  const Schema& schema = buffer().schema();
  const auto positional = static_cast<std::size_t>(nargs);
  if (positional > schema.size()) {
    throw py::type_error("expected at most " + std::to_string(schema.size()) +
                         " positional values (" + schema.field_names() + "), got " +
                         std::to_string(positional));
  }
  for (std::size_t i = 0; i < positional; ++i) values[i] = args[i];
  const Py_ssize_t named = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t k = 0; k < named; ++k) {
    const std::size_t index = field_index(PyTuple_GET_ITEM(kwnames, k), "");
    if (values[index]) throw py::type_error("field '" + schema[index].name + "' given twice");
    values[index] = args[nargs + k];
  }
  std::string missing;
  for (std::size_t i = 0; i < schema.size(); ++i) {
    if (!values[i]) missing += (missing.empty() ? "'" : ", '") + schema[i].name + "'";
  }
  if (!missing.empty()) throw py::type_error("missing field(s) " + missing);
}

std::uint64_t PyBuffer::add(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  const std::shared_ptr<Buffer> held = hold();
  std::array<py::handle, kMaxFields> values{};
  bind_fields(args, nargs, kwnames, values);
  Inputs inputs;
  for (std::size_t i = 0; i < info_.size(); ++i) convert(values[i], info_[i], i, nullptr, inputs);
  const std::span<const FieldBytes> row(inputs.bytes.data(), info_.size());
  py::gil_scoped_release release;
  return held->add(row);
}

std::uint64_t PyBuffer::add_batch(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  const std::shared_ptr<Buffer> held = hold();
  std::array<py::handle, kMaxFields> values{};
  bind_fields(args, nargs, kwnames, values);
  Inputs inputs;
  std::optional<py::ssize_t> rows;
  for (std::size_t i = 0; i < info_.size(); ++i) convert(values[i], info_[i], i, &rows, inputs);
  if (*rows == 0) throw py::value_error("add_batch needs at least one row; got 0");
  const std::span<const FieldBytes> columns(inputs.bytes.data(), info_.size());
  py::gil_scoped_release release;
  return held->add_batch(columns, static_cast<std::size_t>(*rows));
}

py::dict PyBuffer::sample(py::handle batch_size_arg, std::optional<double> beta) {
  const std::shared_ptr<Buffer> held = hold();
  const py::ssize_t batch_size = batch_size_of(batch_size_arg);
  const auto n = static_cast<std::size_t>(batch_size);
  // One block holds every field's rows and the keys, each part 64-byte aligned. Every size is
  // checked: a batch larger than memory fails here, before anything is allocated.
  std::array<std::size_t, kMaxFields> offsets{};
  std::size_t total = 0;
  const auto part = [&](std::size_t row_bytes) {
    if (row_bytes != 0 && n > (std::numeric_limits<std::size_t>::max() / 2) / row_bytes) {
      throw CapacityError("a batch of " + std::to_string(n) +
                          " rows does not fit in the address space");
    }
    const std::size_t bytes = align64(n * row_bytes);
    if (bytes > std::numeric_limits<std::size_t>::max() / 2 - total) {
      throw CapacityError("a batch of " + std::to_string(n) +
                          " rows does not fit in the address space");
    }
    const std::size_t at = total;
    total += bytes;
    return at;
  };
  for (std::size_t i = 0; i < info_.size(); ++i) offsets[i] = part(info_[i].field->row_bytes());
  const bool prioritized = is_prioritized(held->strategy());
  const std::size_t keys_offset = part(sizeof(std::uint64_t));
  const std::size_t weights_offset = prioritized ? part(sizeof(float)) : total;
  const std::size_t physical = physical_memory_bytes();
  if (physical != 0 && total > physical) {
    throw CapacityError("a batch of " + std::to_string(n) + " rows needs " +
                        std::to_string(total) + " bytes, more than this machine's memory (" +
                        std::to_string(physical) + " bytes)");
  }
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
  auto* keys = reinterpret_cast<std::uint64_t*>(base + keys_offset);
  batch[indices_name_] = py::array(indices_dtype_, {batch_size}, keys, block);
  std::span<float> weights;
  if (prioritized) {
    weights = {reinterpret_cast<float*>(base + weights_offset), n};
    batch[weights_name_] = py::array(weights_dtype_, {batch_size}, weights.data(), block);
  }
  {
    py::gil_scoped_release release;
    held->sample(n, std::span<const FieldOut>(out.data(), info_.size()), {keys, n}, weights, beta);
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

py::dict PyBuffer::sample_into(const py::dict& out, std::optional<double> beta) {
  const std::shared_ptr<Buffer> held = hold();
  if (out.empty()) throw py::value_error("sample_into needs at least one output array");
  const bool prioritized = is_prioritized(held->strategy());
  std::array<FieldOut, kMaxFields> targets{};
  std::span<std::uint64_t> keys;
  std::span<float> weights;
  std::optional<py::ssize_t> rows;
  for (const auto& [key, value] : out) {
    const std::string name = py::str(key);
    const bool is_indices = name == kIndicesKey;
    const bool is_weights = prioritized && name == kWeightsKey;
    const std::optional<std::size_t> field = held->schema().index_of(name);
    if (!is_indices && !is_weights && !field) {
      throw py::key_error("sample_into: no field named '" + name + "'; fields are " +
                          held->schema().field_names() + ", and '" + kIndicesKey + "'" +
                          (prioritized ? std::string(", '") + kWeightsKey + "'" : ""));
    }
    const py::dtype& dtype =
        is_indices ? indices_dtype_ : (is_weights ? weights_dtype_ : info_[*field].dtype);
    const std::span<const py::ssize_t> row_shape =
        field ? std::span<const py::ssize_t>(info_[*field].shape) : std::span<const py::ssize_t>();
    const py::array array = checked_output(value, name, dtype, row_shape, rows);
    if (!rows) rows = array.shape(0);
    auto* data = static_cast<std::byte*>(const_cast<void*>(array.data()));
    const auto n = static_cast<std::size_t>(*rows);
    if (is_indices) {
      keys = {reinterpret_cast<std::uint64_t*>(data), n};
    } else if (is_weights) {
      weights = {reinterpret_cast<float*>(data), n};
    } else {
      targets[*field] = {data, static_cast<std::size_t>(array.nbytes())};
    }
  }
  if (*rows == 0) throw py::value_error("sample_into: output arrays have 0 rows");
  {
    py::gil_scoped_release release;
    held->sample(static_cast<std::size_t>(*rows),
                 std::span<const FieldOut>(targets.data(), info_.size()), keys, weights, beta);
  }
  return out;
}

std::size_t PyBuffer::update_priorities(const py::handle& indices, const py::handle& td_errors,
                                        const py::handle& priorities) {
  const std::shared_ptr<Buffer> held = hold();
  if (td_errors.is_none() == priorities.is_none()) {
    throw py::type_error("update_priorities takes td_errors or priorities=, exactly one");
  }
  const bool given_td = !td_errors.is_none();
  const py::array keys = vector_of(indices, indices_dtype_, "indices");
  const py::array values = vector_of(given_td ? td_errors : priorities, py::dtype::of<double>(),
                                     given_td ? "td_errors" : "priorities");
  const std::span<const std::uint64_t> key_span = checked_keys(keys);
  const std::span<const double> value_span(static_cast<const double*>(values.data()),
                                           static_cast<std::size_t>(values.shape(0)));
  py::gil_scoped_release release;
  return held->update_priorities(key_span, value_span,
                                 given_td ? PriorityKind::kTdError : PriorityKind::kPriority);
}

py::dict PyBuffer::columns() const {
  const std::shared_ptr<Buffer> held = hold();
  // The views keep the buffer (and so its mapping) alive, even past close().
  const py::capsule owner(new std::shared_ptr<Buffer>(held),
                          [](void* p) { delete static_cast<std::shared_ptr<Buffer>*>(p); });
  // Every slot written so far: slot = key mod capacity, so before the ring wraps these are the
  // keys [0, next_key) — after a clear, including the cleared rows.
  const auto rows = static_cast<py::ssize_t>(
      std::min<std::uint64_t>(held->next_key(), held->capacity()));
  py::dict views;
  for (std::size_t i = 0; i < info_.size(); ++i) {
    std::vector<py::ssize_t> shape{rows};
    shape.insert(shape.end(), info_[i].shape.begin(), info_[i].shape.end());
    py::array view(info_[i].dtype, shape, held->column(i).data(), owner);
    view.attr("setflags")(py::arg("write") = false);
    views[info_[i].name] = view;
  }
  return views;
}

py::dict PyBuffer::fields() const {
  (void)buffer();
  py::dict out;
  for (const FieldInfo& info : info_) {
    py::dict spec;
    spec["shape"] = py::tuple(py::cast(info.shape));
    spec["dtype"] = info.dtype;
    if (info.field->num_values != 0) spec["num_values"] = info.field->num_values;
    out[info.name] = spec;
  }
  return out;
}

py::array PyBuffer::priorities(const py::handle& indices) {
  const std::shared_ptr<Buffer> held = hold();
  const py::array keys = vector_of(indices, indices_dtype_, "indices");
  const std::span<const std::uint64_t> key_span = checked_keys(keys);
  py::array_t<double> out(static_cast<py::ssize_t>(key_span.size()));
  const std::span<double> out_span(out.mutable_data(), key_span.size());
  {
    py::gil_scoped_release release;
    held->priorities(key_span, out_span);
  }
  return out;
}

py::tuple PyBuffer::priority_mass() {
  const std::shared_ptr<Buffer> held = hold();
  PriorityMass mass{};
  {
    py::gil_scoped_release release;
    mass = held->priority_mass();
  }
  return py::make_tuple(mass.total, mass.min_positive);
}

py::dict PyBuffer::check_consistency() {
  const std::shared_ptr<Buffer> held = hold();
  ConsistencyReport report;
  {
    py::gil_scoped_release release;
    report = held->check_consistency();
  }
  py::dict out;
  out["readable"] = report.readable;
  out["being_written"] = report.being_written;
  out["abandoned"] = report.abandoned;
  out["unwritten"] = report.unwritten;
  out["repaired"] = report.repaired;
  out["takeovers"] = report.takeovers;
  out["repairs"] = report.repairs;
  return out;
}

void PyBuffer::close() {
  if (!buffer_) return;
  buffer_->cancel_waits();  // calls waiting for the rate limiter on other threads end now
  buffer_->unlink_shared_name();
  buffer_.reset();
}

std::optional<std::string> PyBuffer::shm_name() const {
  if (shm_name_.empty()) return std::nullopt;
  return shm_name_;
}

Buffer& PyBuffer::buffer() const {
  if (!buffer_) throw_closed();
  return *buffer_;
}

std::shared_ptr<Buffer> PyBuffer::hold() const {
  if (!buffer_) throw_closed();
  return buffer_;
}

}  // namespace replay_buffer::python
