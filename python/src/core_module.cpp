// The `replay_buffer._core` extension module. Use the replay_buffer package, not this module.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "py_buffer.hpp"
#include "replay_buffer/errors.hpp"

namespace py = pybind11;
namespace rb = replay_buffer;
using rb::python::PyBuffer;

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ core of replay_buffer. Use the replay_buffer package, not this module.";

  // Stored without a destructor that would run after the interpreter is gone.
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> empty_error;
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> capacity_error;
  empty_error.call_once_and_store_result(
      [&] { return py::exception<rb::EmptyBufferError>(m, "EmptyBufferError", PyExc_ValueError); });
  capacity_error.call_once_and_store_result(
      [&] { return py::exception<rb::CapacityError>(m, "CapacityError", PyExc_MemoryError); });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rb::DTypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const rb::EmptyBufferError& e) {
      py::set_error(empty_error.get_stored(), e.what());
    } catch (const rb::CapacityError& e) {
      py::set_error(capacity_error.get_stored(), e.what());
    } catch (const std::out_of_range&) {
      throw;  // pybind11's own translation: IndexError
    } catch (const std::logic_error& e) {
      // invalid_argument and the like, and operations the buffer's configuration does not offer.
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<PyBuffer>(m, "Buffer")
      .def(py::init<const std::vector<rb::python::FieldDescription>&, std::size_t, std::uint64_t,
                    const std::string&, double, double, double>(),
           py::arg("fields"), py::arg("capacity"), py::arg("seed"), py::arg("strategy"),
           py::arg("alpha"), py::arg("beta"), py::arg("eps"))
      .def("add", &PyBuffer::add,
           "Append one transition (positionally in field order, or by field name); returns its "
           "key. Overwrites the oldest when full.")
      .def("add_batch", &PyBuffer::add_batch,
           "Append a batch: one array per field with a leading batch axis; returns the first key.")
      .def("sample", &PyBuffer::sample, py::arg("batch_size"), py::arg("beta") = py::none(),
           "Draw batch_size transitions with replacement (uniformly, or by priority): a dict of "
           "arrays per field, plus 'indices' (int64 keys) and, when prioritized, 'weights' "
           "(float32 importance weights; beta overrides the buffer's for this call).")
      .def("sample_into", &PyBuffer::sample_into, py::arg("out"), py::arg("beta") = py::none(),
           "Like sample, but fill the given arrays (any subset of the fields, 'indices' and, "
           "when prioritized, 'weights') in place; returns out.")
      .def("update_priorities", &PyBuffer::update_priorities, py::arg("indices"),
           py::arg("td_errors") = py::none(), py::kw_only(), py::arg("priorities") = py::none(),
           "Set the priorities of sampled transitions by key: from TD errors, (|td| + eps)^alpha, "
           "or from priorities=, (p + eps)^alpha. Keys of transitions overwritten since are "
           "ignored; returns how many were applied. A key listed twice takes its last value.")
      .def_property(
          "beta", [](PyBuffer& b) { return b.buffer().beta(); },
          [](PyBuffer& b, double beta) { b.buffer().set_beta(beta); },
          "Importance-weight exponent used by sample; set it to anneal.")
      .def_property_readonly(
          "strategy",
          [](PyBuffer& b) { return std::string(rb::strategy_name(b.buffer().strategy())); },
          "'uniform', 'prioritized' or 'rank'.")
      .def(
          "columns",
          [](const py::object& self) { return self.cast<const PyBuffer&>().columns(self); },
          "Read-only zero-copy views of the stored rows, in slot order (key - first key since the "
          "last clear, modulo capacity).")
      .def_property_readonly("fields", &PyBuffer::fields,
                             "{name: {'shape': tuple, 'dtype': numpy.dtype}} for every field.")
      .def(
          "size", [](PyBuffer& b) { return b.buffer().size(); }, "Transitions held.")
      .def("__len__", [](PyBuffer& b) { return b.buffer().size(); })
      .def(
          "capacity", [](PyBuffer& b) { return b.buffer().capacity(); }, "The most it holds.")
      .def(
          "is_full", [](PyBuffer& b) { return b.buffer().is_full(); }, "size() == capacity().")
      .def(
          "next_key", [](PyBuffer& b) { return b.buffer().next_key(); },
          "The key the next add gets (the number of adds ever made).")
      .def(
          "region_bytes", [](PyBuffer& b) { return b.buffer().region_bytes(); },
          "Bytes of memory the buffer occupies, all included.")
      .def(
          "clear", [](PyBuffer& b) { b.buffer().clear(); },
          "Forget every transition; keys keep increasing. Not while other threads add.");
}
