// The `replay_buffer._core` extension module. Use the replay_buffer package, not this module.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <thread>

#include "py_buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "replay_buffer/region.hpp"
#include "replay_buffer/selectors/registry.hpp"

namespace py = pybind11;
namespace rb = replay_buffer;
using rb::python::PyBuffer;

namespace {

py::object liveness_value(rb::process::Liveness liveness) {
  switch (liveness) {
    case rb::process::Liveness::kAlive:
      return py::bool_(true);
    case rb::process::Liveness::kDead:
      return py::bool_(false);
    case rb::process::Liveness::kUnknown:
      break;
  }
  return py::none();
}

// What `replay-buffer shm info` shows: the header, the counters, who created it, who writes.
py::dict shm_info(const std::string& name) {
  const rb::SharedBufferInfo info = rb::Buffer::inspect(name);
  const rb::RegionDescription& d = info.description;
  const py::object np_dtype = py::module_::import("numpy").attr("dtype");
  py::dict fields;
  for (const rb::Field& field : d.schema.fields()) {
    py::dict spec;
    spec["shape"] = py::tuple(py::cast(field.shape));
    spec["dtype"] = np_dtype(std::string(rb::dtype_name(field.dtype)));
    fields[py::str(field.name)] = spec;
  }
  py::dict out;
  out["name"] = info.name;
  out["bytes"] = info.bytes;
  out["mode"] = info.mode;
  out["owner_uid"] = info.owner_uid;
  out["layout_version"] = rb::kLayoutVersion;
  out["capacity"] = d.capacity;
  out["strategy"] = std::string(rb::strategy_name(d.strategy));
  out["alpha"] = d.alpha;
  out["beta"] = info.beta;
  out["eps"] = d.eps;
  out["seed"] = d.seed;
  out["fields"] = fields;
  out["size"] = info.size;
  out["next_key"] = info.next_key;
  out["creator_pid"] = d.creator_pid;
  out["creator_alive"] = liveness_value(info.creator);
  out["created"] = static_cast<double>(d.created_unix_ns) / 1e9;
  out["writers_live"] = info.writers.live;
  out["writers_dead"] = info.writers.dead;
  return out;
}

}  // namespace

using VectorcallMethod = std::uint64_t (PyBuffer::*)(PyObject* const*, Py_ssize_t, PyObject*);

// A method called with Python's vectorcall convention, skipping pybind11's dispatcher: add and
// add_batch take any number of positional and keyword fields, and building the argument tuple
// and keyword dict pybind11 needs for that cost as much as the rest of a small add.
template <VectorcallMethod Method>
PyObject* vectorcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  try {
    PyBuffer& buffer = py::handle(self).cast<PyBuffer&>();
    return PyLong_FromUnsignedLongLong((buffer.*Method)(args, nargs, kwnames));
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
}

template <VectorcallMethod Method>
void add_vectorcall_method(py::class_<PyBuffer>& cls, const char* name, const char* doc) {
  static PyMethodDef def{
      name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&vectorcall<Method>)),
      METH_FASTCALL | METH_KEYWORDS, doc};
  const auto descriptor = py::reinterpret_steal<py::object>(
      PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &def));
  if (!descriptor) throw py::error_already_set();
  cls.attr(name) = descriptor;
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ core of replay_buffer. Use the replay_buffer package, not this module.";

  // The exception classes are pure Python (replay_buffer.errors), so that code which never loads
  // this module, such as a socket client, raises and catches the very same classes. Stored
  // without a destructor that would run after the interpreter is gone.
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> empty_error;
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> capacity_error;
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> region_error;
  const py::module_ errors = py::module_::import("replay_buffer.errors");
  empty_error.call_once_and_store_result([&] { return errors.attr("EmptyBufferError"); });
  capacity_error.call_once_and_store_result([&] { return errors.attr("CapacityError"); });
  region_error.call_once_and_store_result([&] { return errors.attr("InvalidRegionError"); });
  m.attr("EmptyBufferError") = empty_error.get_stored();
  m.attr("CapacityError") = capacity_error.get_stored();
  m.attr("InvalidRegionError") = region_error.get_stored();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rb::DTypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const rb::EmptyBufferError& e) {
      py::set_error(empty_error.get_stored(), e.what());
    } catch (const rb::CapacityError& e) {
      py::set_error(capacity_error.get_stored(), e.what());
    } catch (const rb::InvalidRegionError& e) {
      py::set_error(region_error.get_stored(), e.what());
    } catch (const rb::RateLimitTimeout& e) {
      PyErr_SetString(PyExc_TimeoutError, e.what());
    } catch (const rb::Interrupted& e) {
      PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
    } catch (const rb::SharedMemoryError& e) {
      // OSError(errno, message) is constructed as its subclass for that errno: FileExistsError,
      // FileNotFoundError, PermissionError.
      PyErr_SetObject(PyExc_OSError, py::make_tuple(e.error(), e.what()).ptr());
    } catch (const std::out_of_range&) {
      throw;  // pybind11's own translation: IndexError
    } catch (const std::logic_error& e) {
      // invalid_argument and the like, and operations the buffer's configuration does not offer.
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  // Ctrl-C while a call waits for the rate limiter (with the GIL released): the core asks this
  // every few milliseconds. Only the main thread receives signals, so only it takes the GIL to
  // run Python's signal handlers; a KeyboardInterrupt they raise ends the wait.
  static const std::thread::id main_thread = std::this_thread::get_id();
  rb::set_interrupt_check([]() -> bool {
    if (std::this_thread::get_id() != main_thread || !Py_IsInitialized()) return false;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    PyErr_Clear();  // raised again as KeyboardInterrupt when the wait unwinds
    return true;
  });

  py::tuple strategies(rb::strategy_names().size());
  for (std::size_t i = 0; i < rb::strategy_names().size(); ++i) {
    strategies[i] = py::str(std::string(rb::strategy_names()[i]));
  }
  m.attr("STRATEGIES") = strategies;
  m.attr("SHM_CAN_LIST") = rb::kCanListShared;
  m.attr("SHM_MAX_NAME_LENGTH") = rb::kMaxSharedNameLength;
  m.def("shm_list", &rb::list_shared,
        "Names of every shared-memory object this process can see (Linux: /dev/shm), replay "
        "buffers or not. Raises RuntimeError where the OS cannot list them (SHM_CAN_LIST).");
  m.def("shm_info", &shm_info, py::arg("name"),
        "What the shared buffer's header and counters say, read through a read-only mapping: "
        "a dict (name, bytes, mode, owner_uid, capacity, strategy, alpha, beta, eps, seed, "
        "fields, size, next_key, creator_pid, creator_alive (None: cannot tell), created, "
        "writers_live, writers_dead). Raises FileNotFoundError, PermissionError, or "
        "InvalidRegionError for a region that is not a usable replay buffer.");
  m.def("shm_unlink", &rb::unlink_shared, py::arg("name"),
        "Remove the shared-memory name; processes that map it keep working.");
  m.attr("REGION_MAGIC") = rb::kRegionMagic;
  m.def(
      "shm_magic",
      [](const std::string& name) {
        const rb::Region region = rb::Region::attach_shared(name, rb::Region::Access::kReadOnly,
                                                            rb::Region::Owner::kAnyone);
        std::uint64_t magic = 0;
        if (region.size() >= sizeof(magic)) std::memcpy(&magic, region.data(), sizeof(magic));
        return magic;
      },
      py::arg("name"),
      "The first 8 bytes of a shared-memory object, read-only: REGION_MAGIC for a replay buffer, "
      "0 for one still being initialised (or anything else that starts with zeros).");

  auto buffer_class = py::class_<PyBuffer>(m, "Buffer");
  buffer_class
      .def(py::init<const std::vector<rb::python::FieldDescription>&, const py::dict&,
                    const std::optional<std::string>&, std::uint32_t, bool>(),
           py::arg("fields"), py::arg("options"), py::arg("shm_name") = py::none(),
           py::arg("shm_mode") = 0600, py::arg("shm_keep") = false)
      .def(py::init<const std::string&, double, bool>(), py::kw_only(), py::arg("attach"),
           py::arg("timeout") = 2.0, py::arg("allow_other_owner") = false)
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
      .def("priority_mass", &PyBuffer::priority_mass,
           "(total, min_positive): the sum of the stored priorities and the smallest positive "
           "one (inf when none), read together; P(i) = p_i / total. 'prioritized' only "
           "(ValueError otherwise).")
      .def("priorities", &PyBuffer::priorities, py::arg("indices"),
           "The stored priority of each key (float64): (|td| + eps)^alpha for 'prioritized', "
           "|td| + eps for 'rank'; NaN for keys whose transition was overwritten since.")
      .def_property(
          "beta", [](PyBuffer& b) { return b.buffer().beta(); },
          [](PyBuffer& b, double beta) { b.buffer().set_beta(beta); },
          "Importance-weight exponent used by sample; set it to anneal.")
      .def_property_readonly(
          "strategy",
          [](PyBuffer& b) { return std::string(rb::strategy_name(b.buffer().strategy())); },
          "'uniform', 'prioritized' or 'rank'.")
      .def_property_readonly(
          "alpha", [](PyBuffer& b) { return b.buffer().alpha(); }, "The priority exponent.")
      .def_property_readonly(
          "eps", [](PyBuffer& b) { return b.buffer().eps(); }, "Added to every |TD error|.")
      .def_property_readonly(
          "seed", [](PyBuffer& b) { return b.buffer().seed(); }, "The sampling seed.")
      .def("columns", &PyBuffer::columns,
           "Read-only zero-copy views of the stored rows, in slot order (slot = key modulo "
           "capacity): every slot written so far, min(next_key(), capacity()) rows — after a "
           "clear() these include cleared rows. They "
           "stay valid after close().")
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
          "sampled", [](PyBuffer& b) { return b.buffer().sampled(); },
          "Transitions sampled so far (every row of every batch), by every process.")
      .def_property_readonly(
          "options", [](PyBuffer& b) { return rb::python::options_to_dict(b.buffer().options()); },
          "Every option the buffer was made with, as BufferConfig.core_options() gives them "
          "(beta as it is now).")
      .def_property_readonly(
          "rate_limit",
          [](PyBuffer& b) {
            const rb::RateLimit& limit = b.buffer().rate_limit();
            return py::make_tuple(limit.min_size_to_sample, limit.samples_per_insert,
                                  limit.error_buffer, limit.timeout_seconds);
          },
          "(min_size_to_sample, samples_per_insert, error_buffer, timeout seconds).")
      .def(
          "region_bytes", [](PyBuffer& b) { return b.buffer().region_bytes(); },
          "Bytes of memory the buffer occupies, all included.")
      .def(
          "clear", [](PyBuffer& b) { b.buffer().clear(); },
          "Forget every transition; keys keep increasing. Safe at any time, also while other "
          "threads or processes add (their rows are kept or cleared by their keys).")
      .def(
          "cancel_waits", [](PyBuffer& b) { b.buffer().cancel_waits(); },
          "End every call of this process waiting for the rate limiter now (ValueError, nothing "
          "added or sampled); later calls wait as usual. close() does it too.")
      .def("check_consistency", &PyBuffer::check_consistency,
           "Check the buffer's invariants (sequence words, writer registry, and the priority "
           "trees against a recomputation, after repairing them if a process died holding their "
           "lock). Returns counts of slots by state; raises InvalidRegionError on a violation.")
      .def("close", &PyBuffer::close,
           "Let go of the buffer: its creator removes the shared name (unless shm_keep). Later "
           "calls raise ValueError; arrays from columns() stay valid. Idempotent.")
      .def_property_readonly("closed", &PyBuffer::closed, "Whether close() was called.")
      .def_property_readonly("shm_name", &PyBuffer::shm_name,
                             "The shared-memory name, or None for a private buffer.");
  add_vectorcall_method<&PyBuffer::add>(
      buffer_class, "add",
      "Append one transition (positionally in field order, or by field name); returns its key. "
      "Overwrites the oldest when full.");
  add_vectorcall_method<&PyBuffer::add_batch>(
      buffer_class, "add_batch",
      "Append a batch: one array per field with a leading batch axis; returns the first key.");
}
