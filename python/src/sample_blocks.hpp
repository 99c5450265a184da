// Memory for sample() results, reused once Python has let go of an earlier batch.
//
// A batch of Atari frames is megabytes; allocating it afresh on every call costs page faults that
// take longer than the copy itself (glibc returns such blocks to the OS on free). The pool keeps a
// few blocks and hands one out again only when nothing outside the pool refers to it: every array
// of a batch is a view holding its block, so a block whose only reference is the pool's own is
// free to overwrite.
#pragma once

#include <pybind11/numpy.h>

#include <cstddef>
#include <vector>

namespace replay_buffer::python {

namespace py = pybind11;

class SampleBlocks {
 public:
  // A block of exactly `bytes` bytes that no Python object other than the pool uses. Needs the GIL.
  py::array acquire(std::size_t bytes) {
    for (const py::array& block : blocks_) {
      if (static_cast<std::size_t>(block.nbytes()) == bytes && Py_REFCNT(block.ptr()) == 1) {
        return block;
      }
    }
    py::array fresh = py::array_t<std::uint8_t>(static_cast<py::ssize_t>(bytes));
    if (blocks_.size() < kMaxBlocks) {
      blocks_.push_back(fresh);
    } else {
      for (py::array& block : blocks_) {
        if (Py_REFCNT(block.ptr()) == 1) {
          block = fresh;  // a free block of another size: a batch size no longer in use
          break;
        }
      }
    }
    return fresh;
  }

 private:
  // Enough for a training loop that holds the previous batch while sampling the next, and for a
  // prefetching thread one batch ahead.
  static constexpr std::size_t kMaxBlocks = 3;
  std::vector<py::array> blocks_;
};

}  // namespace replay_buffer::python
