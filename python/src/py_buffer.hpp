// The Python face of a Buffer: argument binding and checks, GIL release around every copy, and
// NumPy arrays in and out.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "conversions.hpp"
#include "replay_buffer/buffer.hpp"
#include "sample_blocks.hpp"

namespace replay_buffer::python {

// (name, NumPy dtype name, shape, num_values): see Field.
using FieldDescription =
    std::tuple<std::string, std::string, std::vector<std::size_t>, std::uint64_t>;

// BufferOptions from the dict BufferConfig.core_options() makes, and back: the one place the
// binding names the options. Unknown or missing keys raise KeyError naming them, so the Python
// and C++ declarations cannot drift apart silently.
BufferOptions options_from_dict(const py::dict& options);
py::dict options_to_dict(const BufferOptions& options);

// Python's view of a Buffer. close() lets go of the buffer at once; calls running on other
// threads with the GIL released, and zero-copy views from columns(), hold it until they are done,
// so the memory is unmapped when the last of them ends.
class PyBuffer {
 public:
  // options: see options_from_dict. shm_name: create the buffer in this shared-memory region
  // (mode shm_mode; shm_keep leaves the name when the buffer is closed).
  PyBuffer(const std::vector<FieldDescription>& fields, const py::dict& options,
           const std::optional<std::string>& shm_name, std::uint32_t shm_mode, bool shm_keep);
  // Attaches to the shared buffer `name`, waiting up to `timeout` seconds for its creator;
  // refuses one another user owns unless `allow_other_owner`.
  PyBuffer(const std::string& name, double timeout, bool allow_other_owner = false);

  // Called with Python's vectorcall convention (args[0..nargs) positional, then one value per
  // name in the kwnames tuple): no argument tuple or keyword dict is built per call.
  std::uint64_t add(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
  std::uint64_t add_batch(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
  py::dict sample(py::handle batch_size, std::optional<double> beta);
  py::dict sample_into(const py::dict& out, std::optional<double> beta);
  std::size_t update_priorities(const py::handle& indices, const py::handle& td_errors,
                                const py::handle& priorities);
  // Read-only views of the stored rows, in slot order; `owner` (the Python object wrapping this)
  // is kept alive by them.
  py::dict columns() const;
  py::dict fields() const;
  py::array priorities(const py::handle& indices);
  py::tuple priority_mass();
  py::dict check_consistency();

  // Removes the shared name if this buffer created it (and was not asked to keep it) and lets go
  // of the buffer; every later call raises ValueError. Idempotent.
  void close();
  [[nodiscard]] bool closed() const noexcept { return buffer_ == nullptr; }
  // The shared-memory name, or None for a private buffer (also after close()).
  [[nodiscard]] std::optional<std::string> shm_name() const;

  // The buffer; raises ValueError once closed. For calls that keep the GIL.
  Buffer& buffer() const;
  // The buffer, kept alive for a call that releases the GIL (close() may run meanwhile).
  [[nodiscard]] std::shared_ptr<Buffer> hold() const;

 private:
  void init_info();
  // Positional and keyword arguments in schema order; every field exactly once.
  void bind_fields(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                   std::array<py::handle, kMaxFields>& values) const;
  std::size_t field_index(py::handle key, const char* context) const;
  py::array checked_output(py::handle value, const std::string& name, const py::dtype& dtype,
                           std::span<const py::ssize_t> row_shape,
                           std::optional<py::ssize_t> rows) const;

  std::shared_ptr<Buffer> buffer_;
  std::string shm_name_;
  std::vector<FieldInfo> info_;
  py::dtype indices_dtype_;
  py::str indices_name_;
  py::dtype weights_dtype_;
  py::str weights_name_;
  SampleBlocks blocks_;
};

}  // namespace replay_buffer::python
