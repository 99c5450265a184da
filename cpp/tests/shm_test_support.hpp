// Helpers for tests of shared buffers: unique region names that are removed afterwards, and
// functions run in child processes (with a deadline, so a hang fails the test instead of the run).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <string>
#include <string_view>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/region.hpp"

namespace replay_buffer::testing {

// A shared-memory name no other test (or test run) uses, removed when it goes out of scope.
class ShmName {
 public:
  ShmName() {
    static std::atomic<int> counter{0};
    name_ = "rbtest_" + std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1));
  }
  ShmName(const ShmName&) = delete;
  ShmName& operator=(const ShmName&) = delete;
  ~ShmName() {
    try {
      unlink_shared(name_);
    } catch (const std::exception&) {
      // Already removed by the code under test: what most tests expect.
    }
  }
  [[nodiscard]] const std::string& str() const noexcept { return name_; }
  operator const std::string&() const noexcept { return name_; }  // NOLINT: brevity in tests
  operator std::string_view() const noexcept { return name_; }    // NOLINT: brevity in tests

 private:
  std::string name_;
};

// Whether /dev/shm/<name> exists (Linux; elsewhere attaches to find out).
inline bool shm_exists(const std::string& name) {
  try {
    (void)Region::attach_shared(name, Region::Access::kReadOnly);
    return true;
  } catch (const SharedMemoryError&) {
    return false;
  }
}

// Runs `body` in a forked child that must finish within `seconds`; returns its exit code (0 when
// body returns normally, 2 when it throws), or 128 + signal when it was killed.
template <typename Body>
int run_in_child(Body&& body, unsigned seconds = 20) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(seconds);
    int code = 0;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// Forks a child that runs `body` and then kills itself with SIGKILL (never exiting normally),
// and waits until it is dead. The child stays a zombie until `reap` is called. Returns its pid.
template <typename Body>
pid_t spawn_and_die(Body&& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    body();
    ::kill(::getpid(), SIGKILL);
    ::_exit(0);
  }
  siginfo_t info{};
  ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT);
  return pid;
}

inline void reap(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
}

}  // namespace replay_buffer::testing
