// The exceptions the library throws. Each maps to one Python exception in the binding:
// std::invalid_argument -> ValueError, std::out_of_range -> IndexError,
// DTypeError -> TypeError, EmptyBufferError -> replay_buffer.EmptyBufferError (a ValueError),
// CapacityError -> replay_buffer.CapacityError (a MemoryError),
// SharedMemoryError -> OSError of its errno (FileExistsError, FileNotFoundError, PermissionError),
// InvalidRegionError -> replay_buffer.InvalidRegionError (a ValueError),
// RateLimitTimeout -> TimeoutError, Interrupted -> KeyboardInterrupt, WaitCancelled -> ValueError.
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

// A named shared-memory region that cannot be created, opened or removed. Carries the errno of
// the failed call (EEXIST, ENOENT, EACCES, ...) and the region's name, so callers can tell the
// cases apart.
class SharedMemoryError : public std::runtime_error {
 public:
  SharedMemoryError(int error, std::string name, const std::string& what)
      : std::runtime_error(what), error_(error), name_(std::move(name)) {}

  [[nodiscard]] int error() const noexcept { return error_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  int error_;
  std::string name_;
};

// A region that is not a replay buffer this library can use: wrong magic, another layout
// version, truncated, a corrupt header, never initialised, or contents that fail a consistency
// check.
class InvalidRegionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A wait (for the rate limiter) ended early because the caller asked to stop (Ctrl-C in Python):
// nothing was added or sampled.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A wait for the rate limiter that the buffer's owner cancelled (Buffer::cancel_waits, e.g. a
// server shutting down): nothing was added or sampled.
class WaitCancelled : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// An insert or sample that the rate limiter held back for longer than its timeout.
class RateLimitTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace replay_buffer
