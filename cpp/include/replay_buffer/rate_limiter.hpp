// When inserts and samples may proceed: a minimum size before sampling, and optionally a target
// ratio of sampled transitions to inserted ones, held within a tolerance (as Reverb's MinSize and
// SampleToInsertRatio limiters).
//
// With samples_per_insert = r, min_size_to_sample = m and error_buffer = e, let
//   diff = inserts * r - samples,  offset = m * r.
// A sample of n transitions may proceed when size >= m and diff - n >= offset - e; an insert of n
// when inserts + n <= m (filling up to the minimum is never held back) or diff + n * r <=
// offset + e. So over a run, samples ~ r * inserts, never more than e away from it once the
// buffer holds m. Counters are monotonic and shared (they live in the region), so the same rule
// holds across threads and processes.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {

// The limits of one buffer (see the file comment for the rule); a plain value, copied freely.
struct RateLimit {
  // Samples wait until the buffer holds this many transitions; 0 never waits (and sampling an
  // empty buffer raises at once).
  std::uint64_t min_size_to_sample = 0;
  // Target sampled transitions per inserted one; 0 leaves the ratio free.
  double samples_per_insert = 0.0;
  // How far samples may run ahead of or behind samples_per_insert * inserts.
  double error_buffer = 0.0;
  // How long a held-back call waits before it fails; negative waits for ever.
  double timeout_seconds = 60.0;

  // Whether a samples-per-insert ratio is enforced. Thread-safe (const); O(1).
  [[nodiscard]] bool limits_ratio() const noexcept { return samples_per_insert > 0.0; }
  // Whether any call can be held back at all. Thread-safe (const); O(1).
  [[nodiscard]] bool enabled() const noexcept { return min_size_to_sample > 0 || limits_ratio(); }

  // Throws std::invalid_argument for a negative or non-finite ratio, a ratio without room for one
  // insert and one sample (error_buffer < max(1, samples_per_insert)), or a NaN timeout.
  void validate() const {
    if (!std::isfinite(samples_per_insert) || samples_per_insert < 0.0) {
      throw std::invalid_argument("samples_per_insert must be finite and >= 0, got " +
                                  std::to_string(samples_per_insert));
    }
    if (!std::isfinite(error_buffer) || error_buffer < 0.0) {
      throw std::invalid_argument("error_buffer must be finite and >= 0, got " +
                                  std::to_string(error_buffer));
    }
    const double least = samples_per_insert > 1.0 ? samples_per_insert : 1.0;
    if (limits_ratio() && error_buffer < least) {
      throw std::invalid_argument(
          "error_buffer must be at least max(1, samples_per_insert) = " + std::to_string(least) +
          " so that inserts and samples can both "
          "proceed; got " +
          std::to_string(error_buffer));
    }
    if (std::isnan(timeout_seconds)) throw std::invalid_argument("timeout must not be NaN");
  }

  // Whether an insert of `count` may proceed now, given the counters. Thread-safe (const); O(1).
  [[nodiscard]] bool can_insert(std::uint64_t inserts, std::uint64_t samples,
                                std::size_t count) const noexcept {
    if (!limits_ratio() || inserts + count <= min_size_to_sample) return true;
    const double diff =
        static_cast<double>(inserts + count) * samples_per_insert - static_cast<double>(samples);
    return diff <= offset() + error_buffer;
  }

  // Whether a sample of `count` may proceed from a buffer holding `size`, given the counters.
  // Thread-safe (const); O(1).
  [[nodiscard]] bool can_sample(std::size_t size, std::uint64_t inserts, std::uint64_t samples,
                                std::size_t count) const noexcept {
    if (size < min_size_to_sample || size == 0) return false;
    if (!limits_ratio()) return true;
    const double diff =
        static_cast<double>(inserts) * samples_per_insert - static_cast<double>(samples + count);
    return diff >= offset() - error_buffer;
  }

  // Throws std::invalid_argument for a sample of `count` that could never proceed: the tolerance
  // band is 2 * error_buffer wide, and a sample moves the balance by its size.
  void check_sample_batch(std::size_t count) const {
    if (limits_ratio() && static_cast<double>(count) > 2.0 * error_buffer) {
      throw_never("a sample of ", count, static_cast<double>(count), 2.0 * error_buffer);
    }
  }

  // Throws std::invalid_argument for an insert of `count` after `inserts` that could never
  // proceed. Filling up to min_size_to_sample always may; below it no sample can have happened,
  // so the part past the minimum must fit error_buffer alone; above it, the whole band.
  void check_insert_batch(std::uint64_t inserts, std::size_t count) const {
    if (!limits_ratio() || inserts + count <= min_size_to_sample) return;
    const bool filling = inserts < min_size_to_sample;
    const double moves =
        static_cast<double>(filling ? inserts + count - min_size_to_sample : count) *
        samples_per_insert;
    const double room = filling ? error_buffer : 2.0 * error_buffer;
    if (moves > room) throw_never("an insert of ", count, moves, room);
  }

 private:
  [[noreturn]] static void throw_never(const char* what, std::size_t count, double moves,
                                       double room) {
    throw std::invalid_argument(std::string(what) + std::to_string(count) +
                                " can never satisfy the rate limiter: it moves the sample/insert "
                                "balance by " +
                                std::to_string(moves) + ", more than the " + std::to_string(room) +
                                " error_buffer leaves; raise error_buffer "
                                "or use smaller batches");
  }

  [[nodiscard]] double offset() const noexcept {
    return static_cast<double>(min_size_to_sample) * samples_per_insert;
  }
};

// Asked about every few milliseconds while a call waits for the rate limiter: returns true when
// the wait should end at once (Python sets it to check for Ctrl-C). Null: never interrupted.
using InterruptCheck = bool (*)();

// Sets the process-wide interrupt check (see InterruptCheck). Thread-safe.
void set_interrupt_check(InterruptCheck check) noexcept;
// The current interrupt check, or null. Thread-safe.
[[nodiscard]] InterruptCheck interrupt_check() noexcept;

// What the rate limiter did to one call: whether it held it back (its first attempt failed) and
// for how long.
struct WaitTally {
  bool waited = false;            // whether the first attempt failed and the call waited
  std::uint64_t nanoseconds = 0;  // how long it waited in all
};

// Calls `attempt` until it returns true or `timeout_seconds` pass (negative: no deadline),
// sleeping a little longer each time (50 us up to 1 ms): the condition changes when another
// thread or process inserts or samples, which this one cannot be woken by across processes.
// Returns whether `attempt` succeeded. Throws Interrupted, having changed nothing, when the
// interrupt check asks to stop, and WaitCancelled when `cancels` (if given) moves past the value
// it had when the wait began. Fills `tally` (if given) however the call ends, once the first
// attempt has failed.
template <typename Attempt>
[[nodiscard]] bool retry_until(Attempt&& attempt, double timeout_seconds,
                               const std::atomic<std::uint64_t>* cancels = nullptr,
                               WaitTally* tally = nullptr) {
  using Clock = std::chrono::steady_clock;
  const std::uint64_t cancels_at_start =
      cancels != nullptr ? cancels->load(std::memory_order_acquire) : 0;
  if (attempt()) return true;  // not held: no clock read
  const auto start = Clock::now();
  struct Record {
    WaitTally* tally;
    Clock::time_point start;
    ~Record() {
      if (tally == nullptr) return;
      tally->waited = true;
      tally->nanoseconds = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    }
  } record{tally, start};
  auto next_check = start + std::chrono::milliseconds(20);
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    if (attempt()) return true;
    const auto now = Clock::now();
    if (timeout_seconds >= 0.0 &&
        std::chrono::duration<double>(now - start).count() >= timeout_seconds) {
      return false;
    }
    if (cancels != nullptr && cancels->load(std::memory_order_acquire) != cancels_at_start) {
      throw WaitCancelled("a call waiting for the rate limiter was cancelled (the buffer is being "
                          "closed)");
    }
    if (now >= next_check) {
      next_check = now + std::chrono::milliseconds(20);
      if (const InterruptCheck check = interrupt_check(); check != nullptr && check()) {
        throw Interrupted("interrupted while waiting for the rate limiter");
      }
    }
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(1)) pause *= 2;
  }
}

}  // namespace replay_buffer
