// Which process this is, and whether another one still runs: what a shared buffer needs to tell a
// writer that died from one that is merely slow.
//
// A process is named by its pid and, on Linux, by its start time (so that a new process that was
// given a dead one's pid is not mistaken for it) and its pid namespace (a pid means nothing in
// another namespace, e.g. another container sharing /dev/shm: such processes are never judged).
// Elsewhere only the pid is known, and pid reuse is a documented limitation.
#pragma once

#include <cstdint>

namespace replay_buffer::process {

struct Identity {
  std::int64_t pid = 0;
  std::uint64_t start_time = 0;     // Linux: clock ticks after boot when it started; 0: unknown
  std::uint64_t pid_namespace = 0;  // Linux: inode of its pid namespace; 0: unknown
};

// This process. Computed once, and again in the child after a fork. Thread-safe.
[[nodiscard]] Identity self();

// This process's pid, cached (a relaxed load and compare in the common case). Thread-safe.
[[nodiscard]] std::int64_t current_pid() noexcept;

// Changes in the child of every fork(): whatever this process registered somewhere shared
// compares it with the value it registered under to notice it now runs in a different process.
// Cheaper than getpid(). Thread-safe; never 0.
[[nodiscard]] std::uint32_t fork_generation() noexcept;

// Opens `path` (close-on-exec) as a descriptor that children of fork() do not keep: the child
// of every later fork closes its copy at once (a pthread_atfork handler), and forks wait while
// one is being opened, so no child ever holds it. What a process locks through such a descriptor
// (an open-file-description lock) is therefore released when this process exits or execs, even
// if children it forked live on. Returns the descriptor, or -1 with errno set (EMFILE too when
// kMaxForkPrivate are open). Thread-safe.
inline constexpr int kMaxForkPrivate = 256;
[[nodiscard]] int open_fork_private(const char* path, int flags) noexcept;
// Closes a descriptor from open_fork_private, in the process that opened it (a forked child's
// copy is already closed: never call this there). Thread-safe.
void close_fork_private(int fd) noexcept;

enum class Liveness : std::uint8_t {
  kAlive,
  kDead,     // gone, a zombie (Linux), or its pid now belongs to a process started later (Linux)
  kUnknown,  // in another pid namespace: cannot be judged from here; callers treat it as alive
};

// Whether the process `who` still runs: kill(pid, 0), then on Linux /proc/<pid>/stat for the
// zombie state and the start time. Thread-safe; a few system calls, so only for slow paths.
[[nodiscard]] Liveness liveness(const Identity& who) noexcept;

}  // namespace replay_buffer::process
