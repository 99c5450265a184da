// The exceptions the library throws. Each maps to one Python exception in the binding:
// std::invalid_argument -> ValueError, std::out_of_range -> IndexError,
// DTypeError -> TypeError, EmptyBufferError -> replay_buffer.EmptyBufferError (a ValueError),
// CapacityError -> replay_buffer.CapacityError (a MemoryError).
#pragma once

#include <new>
#include <stdexcept>
#include <string>

namespace replay_buffer {

// A value of the wrong element type (e.g. a float array for an int field).
class DTypeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Sampling from a buffer that holds nothing.
class EmptyBufferError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A buffer larger than this machine can hold, or whose size overflows.
class CapacityError : public std::length_error {
 public:
  using std::length_error::length_error;
};

}  // namespace replay_buffer
