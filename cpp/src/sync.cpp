#include "replay_buffer/sync.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "replay_buffer/process.hpp"

namespace replay_buffer::sync {
namespace {

[[maybe_unused]] void check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(rc));
}

// How long a lock or slot holder may keep it before a waiter asks the OS whether it still runs.
// Holders keep them for microseconds; the question costs a few system calls.
constexpr auto kLivenessInterval = std::chrono::milliseconds(1);

[[maybe_unused]] constexpr int kSpinsBeforeSleeping = 200;

}  // namespace

bool PidLock::lock() noexcept {
  const auto me = static_cast<std::uint64_t>(process::current_pid());
  auto word = std::atomic_ref<std::uint64_t>(owner_);
  Backoff backoff;
  std::uint64_t watched = 0;  // the holder being timed
  auto since = std::chrono::steady_clock::time_point{};
  for (;;) {
    std::uint64_t holder = 0;
    if (word.compare_exchange_weak(holder, me, std::memory_order_acquire,
                                   std::memory_order_relaxed)) {
      return false;
    }
    if (holder == 0) continue;  // spurious failure
    if (backoff.spins() >= Backoff::kSpins) {
      const auto now = std::chrono::steady_clock::now();
      if (holder != watched) {
        watched = holder;
        since = now;
      } else if (now - since >= kLivenessInterval) {
        if (holder != me && process::liveness({.pid = static_cast<std::int64_t>(holder)}) ==
                                process::Liveness::kDead) {
          if (word.compare_exchange_strong(holder, me, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
            return true;
          }
        }
        since = now;
      }
    }
    backoff.wait();
  }
}

void PidLock::unlock() noexcept {
  std::atomic_ref<std::uint64_t>(owner_).store(0, std::memory_order_release);
}

std::int64_t PidLock::holder() const noexcept {
  return static_cast<std::int64_t>(
      std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(owner_))
          .load(std::memory_order_relaxed));
}

#if REPLAY_BUFFER_ROBUST_MUTEX

void RegionMutex::init() {
  pthread_mutexattr_t attr;
  check(pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
  check(pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED),
        "pthread_mutexattr_setpshared");
  check(pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust");
  const int rc = pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
  check(rc, "pthread_mutex_init");
}

bool RegionMutex::lock() {
  // Holders keep the lock for microseconds: spinning briefly first spares most waiters a futex
  // sleep and wake-up, which cost more than the critical section.
  int rc = EBUSY;
  for (int spin = 0; spin < kSpinsBeforeSleeping && rc == EBUSY; ++spin) {
    rc = pthread_mutex_trylock(&mutex_);
    if (rc == EBUSY) cpu_relax();
  }
  if (rc == EBUSY) rc = pthread_mutex_lock(&mutex_);
  if (rc == EOWNERDEAD) {
    check(pthread_mutex_consistent(&mutex_), "pthread_mutex_consistent");
    return true;
  }
  check(rc, "pthread_mutex_lock");
  return false;
}

void RegionMutex::unlock() noexcept { pthread_mutex_unlock(&mutex_); }

#else

void RegionMutex::init() { mutex_.init(); }

bool RegionMutex::lock() { return mutex_.lock(); }

void RegionMutex::unlock() noexcept { mutex_.unlock(); }

#endif

}  // namespace replay_buffer::sync
