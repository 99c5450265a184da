#include "replay_buffer/process.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace replay_buffer::process {
namespace {

std::atomic<std::uint32_t> g_fork_generation{1};

// Cached pid: generation << 32 | pid, 0 until first asked.
std::atomic<std::uint64_t> g_cached_pid{0};

// Descriptors from open_fork_private, as fd + 1 (0: an empty place). Guarded by
// g_fork_private_busy, which a fork also holds from its prepare handler until it has returned in
// both processes: so no fork happens between opening one and recording it.
std::atomic<int> g_fork_private[kMaxForkPrivate];
std::atomic<bool> g_fork_private_busy{false};

void lock_fork_private() noexcept {
  while (g_fork_private_busy.exchange(true, std::memory_order_acquire)) {
    while (g_fork_private_busy.load(std::memory_order_relaxed)) {
    }
  }
}
void unlock_fork_private() noexcept { g_fork_private_busy.store(false, std::memory_order_release); }

void on_fork_child() noexcept {
  std::uint32_t next = g_fork_generation.load(std::memory_order_relaxed) + 1;
  if (next == 0) next = 1;
  g_fork_generation.store(next, std::memory_order_relaxed);
  // The copies this child inherited hold its parent's locks: a child must never keep them alive.
  for (std::atomic<int>& place : g_fork_private) {
    const int stored = place.exchange(0, std::memory_order_relaxed);
    if (stored != 0) ::close(stored - 1);
  }
  unlock_fork_private();
}

void install_fork_handler() noexcept {
  static std::once_flag once;
  std::call_once(once,
                 [] { ::pthread_atfork(lock_fork_private, unlock_fork_private, on_fork_child); });
}

// Installed when the library is loaded, so that no fork escapes it.
[[maybe_unused]] const bool g_fork_handler_installed = (install_fork_handler(), true);

struct ProcStat {
  char state = '?';
  std::uint64_t start_time = 0;
};

#if defined(__linux__)
// Fields 3 (state) and 22 (starttime) of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so parsing starts after the last ')'.
bool read_proc_stat(const char* path, ProcStat& out) noexcept {
  std::FILE* file = std::fopen(path, "re");
  if (file == nullptr) return false;
  char buffer[1024];
  const std::size_t n = std::fread(buffer, 1, sizeof(buffer) - 1, file);
  std::fclose(file);
  buffer[n] = '\0';
  const char* p = std::strrchr(buffer, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  out.state = *p;
  // After the state come fields 4..21 (18 of them), then starttime.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  char* end = nullptr;
  out.start_time = std::strtoull(p, &end, 10);
  return end != p;
}

std::uint64_t pid_namespace_of(const char* path) noexcept {
  struct stat st {};
  if (::stat(path, &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}
#endif

}  // namespace

std::uint32_t fork_generation() noexcept {
  return g_fork_generation.load(std::memory_order_relaxed);
}

std::int64_t current_pid() noexcept {
  const std::uint64_t generation = fork_generation();
  const std::uint64_t cached = g_cached_pid.load(std::memory_order_relaxed);
  if ((cached >> 32) == generation) return static_cast<std::int64_t>(cached & 0xFFFF'FFFFu);
  const auto pid = static_cast<std::uint32_t>(::getpid());
  g_cached_pid.store(generation << 32 | pid, std::memory_order_relaxed);
  return pid;
}

Identity self() {
  // Not cached: asked once per registration, and a cache would need a lock that a fork could
  // leave held in the child.
  install_fork_handler();
  Identity id;
  id.pid = current_pid();
#if defined(__linux__)
  ProcStat stat;
  if (read_proc_stat("/proc/self/stat", stat)) id.start_time = stat.start_time;
  id.pid_namespace = pid_namespace_of("/proc/self/ns/pid");
#endif
  return id;
}

int open_fork_private(const char* path, int flags) noexcept {
  install_fork_handler();
  lock_fork_private();
  const int fd = ::open(path, flags | O_CLOEXEC);
  int err = errno;
  if (fd >= 0) {
    bool recorded = false;
    for (std::atomic<int>& place : g_fork_private) {
      if (place.load(std::memory_order_relaxed) == 0) {
        place.store(fd + 1, std::memory_order_relaxed);
        recorded = true;
        break;
      }
    }
    if (!recorded) {
      ::close(fd);
      unlock_fork_private();
      errno = EMFILE;
      return -1;
    }
  }
  unlock_fork_private();
  errno = err;
  return fd;
}

void close_fork_private(int fd) noexcept {
  if (fd < 0) return;
  lock_fork_private();
  for (std::atomic<int>& place : g_fork_private) {
    if (place.load(std::memory_order_relaxed) == fd + 1) {
      place.store(0, std::memory_order_relaxed);
      break;
    }
  }
  // Closed under the lock: a fork now cannot copy a descriptor that is no longer recorded.
  ::close(fd);
  unlock_fork_private();
}

Liveness liveness(const Identity& who) noexcept {
  if (who.pid <= 0 || who.pid > 0x7FFF'FFFF) return Liveness::kDead;
#if defined(__linux__)
  const std::uint64_t own_namespace = pid_namespace_of("/proc/self/ns/pid");
  if (who.pid_namespace != 0 && own_namespace != 0 && who.pid_namespace != own_namespace) {
    return Liveness::kUnknown;
  }
#endif
  const auto pid = static_cast<pid_t>(who.pid);
  if (::kill(pid, 0) != 0 && errno == ESRCH) return Liveness::kDead;
  // It exists (EPERM: it belongs to another user, but exists).
#if defined(__linux__)
  // A SIGKILLed process stays a zombie until its parent reaps it, and kill() still finds it.
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  ProcStat stat;
  if (read_proc_stat(path, stat)) {
    if (stat.state == 'Z' || stat.state == 'X') return Liveness::kDead;
    if (who.start_time != 0 && stat.start_time != who.start_time) return Liveness::kDead;
  }
#endif
  return Liveness::kAlive;
}

}  // namespace replay_buffer::process
