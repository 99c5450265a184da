#include "replay_buffer/sync.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace replay_buffer::sync {
namespace {

void check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(rc));
}

}  // namespace

void RegionMutex::init() {
  pthread_mutexattr_t attr;
  check(pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
  check(pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED),
        "pthread_mutexattr_setpshared");
#if defined(__linux__)
  check(pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust");
#endif
  const int rc = pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
  check(rc, "pthread_mutex_init");
}

bool RegionMutex::lock() {
  const int rc = pthread_mutex_lock(&mutex_);
#if defined(__linux__)
  if (rc == EOWNERDEAD) {
    check(pthread_mutex_consistent(&mutex_), "pthread_mutex_consistent");
    return true;
  }
#endif
  check(rc, "pthread_mutex_lock");
  return false;
}

void RegionMutex::unlock() noexcept { pthread_mutex_unlock(&mutex_); }

}  // namespace replay_buffer::sync
