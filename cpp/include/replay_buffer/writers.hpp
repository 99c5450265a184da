// The writer registry of a shared buffer: which process each writer id belongs to, so that a
// process waiting on a slot another writer left odd can find out whether that writer died.
//
// A process claims an entry on its first write to a region (and again in the child after a fork)
// and marks the slots it writes with its id: incarnation << 10 | entry index. The incarnation is
// bumped every time the entry is claimed, so an id whose entry has since been freed or claimed by
// another process is known dead without asking the OS. Entries of dead processes are freed by
// whoever finds them dead, and reclaimed by registering processes when no entry is free.
//
// Liveness: on Linux a claim also takes an open-file-description lock (F_OFD_SETLK) on its
// entry's first byte, through a descriptor of the region that only the claiming process holds
// (close-on-exec, closed in forked children: process::open_fork_private). Exit and exec close it,
// which drops the lock, so a writer that exec'd mid-add is found dead although its pid and start
// time still match, and a writer in another pid namespace (another container sharing /dev/shm)
// can be judged too: held lock, alive; free lock, dead. The pid check (process::liveness) still
// runs for held locks, so a lock kept alive some other way never makes a dead process look alive.
// Where the lock cannot be taken (no OFD locks: macOS; no /proc) the entry says so and only the
// pid check is made. A process must not close descriptors it did not open (closefrom and the
// like) while it writes to a shared buffer: its writes would look abandoned.
//
// Limits: kEntries processes writing at once per region; incarnations repeat after 2^21 claims
// of one entry (an id that old is long gone from every slot); pid reuse is caught on Linux only
// (process.hpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/process.hpp"
#include "replay_buffer/sync.hpp"

namespace replay_buffer {

// A claim's lock: a descriptor of the region, open only in the process that claimed (never in its
// forked children), holding an OFD lock on the claimed entry's byte. Closed, and the lock
// dropped, when destroyed in that process, or by exit or exec. Not thread-safe.
class ClaimLock {
 public:
  ClaimLock() noexcept = default;
  ClaimLock(ClaimLock&& other) noexcept;
  ClaimLock& operator=(ClaimLock&& other) noexcept;
  ClaimLock(const ClaimLock&) = delete;
  ClaimLock& operator=(const ClaimLock&) = delete;
  ~ClaimLock() { release(); }

  // Opens a new open file description of the object `region_fd` refers to (Linux: through
  // /proc/self/fd). False where that is impossible. O(1).
  [[nodiscard]] bool open(int region_fd) noexcept;
  // Takes an exclusive OFD lock on byte `byte` without waiting; false if open() failed, another
  // description holds it, or the OS has no OFD locks. O(1).
  [[nodiscard]] bool lock(std::uint64_t byte) noexcept;
  // Closes the descriptor (dropping the lock) if this process opened it. O(1).
  void release() noexcept;

 private:
  int fd_ = -1;
  std::uint32_t generation_ = 0;  // process::fork_generation() when opened
};

class WriterRegistry {
 public:
  static constexpr std::size_t kIndexBits = 10;
  static constexpr std::size_t kEntries = std::size_t{1} << kIndexBits;
  // Incarnations run 1 .. kMaxIncarnation, so an id is never kPrivateWriter nor kAbandoned's.
  static constexpr std::uint32_t kMaxIncarnation = (std::uint32_t{1} << 21) - 2;
  static_assert(kEntries == kMaxWriterSlots);

  // A view of the registry in `entries` (zero-filled in a fresh region: every entry free).
  // `region_fd` (Region::fd(), -1 for none) is the region the entries live in, at
  // `entries_offset`: claims lock, and liveness probes, the byte of the region where each entry
  // starts. Without it only pids are checked. Thread-safe construction; the region (and its
  // descriptor) outlives the view.
  explicit WriterRegistry(std::span<WriterEntry> entries, int region_fd = -1,
                          std::uint64_t entries_offset = 0) noexcept
      : entries_(entries), region_fd_(region_fd), entries_offset_(entries_offset) {}

  // Claims an entry for this process: a free one, else one whose process died. Throws
  // CapacityError when every entry belongs to a live process. Without `lock` (or without a
  // region descriptor) the claim is judged by its pid alone; with it, `lock` holds the entry's
  // lock where the OS allows, and must be released before the id. Thread- and process-safe.
  [[nodiscard]] sync::WriterId claim(ClaimLock* lock = nullptr);

  // Frees the entry of `id` if this process still holds it. Thread- and process-safe.
  void release(sync::WriterId id) noexcept;

  // Whether the writer `id` is known dead without asking the OS: its entry was freed or claimed
  // again since. Thread- and process-safe; two atomic loads.
  [[nodiscard]] bool known_dead(sync::WriterId id) const noexcept;

  // Whether the process of writer `id` still runs, asking the OS (process::liveness). An entry
  // found dead is freed, so later questions about it are answered by known_dead. Thread- and
  // process-safe; a few system calls.
  [[nodiscard]] process::Liveness liveness(sync::WriterId id) noexcept;

  // Entries held by processes that are alive (or cannot be judged), and the total. Asks the OS
  // about each; for `replay-buffer shm info`. Thread- and process-safe.
  struct Census {
    std::size_t live = 0;
    std::size_t dead = 0;
  };
  [[nodiscard]] Census census() const noexcept;

  // A description of the first malformed entry, or empty. Thread- and process-safe.
  [[nodiscard]] std::string check() const;

  [[nodiscard]] static constexpr std::size_t index_of(sync::WriterId id) noexcept {
    return id & (kEntries - 1);
  }
  [[nodiscard]] static constexpr std::uint32_t incarnation_of(sync::WriterId id) noexcept {
    return id >> kIndexBits;
  }

 private:
  struct Holder {
    std::uint64_t state;  // the entry's state word when read
    process::Identity identity;
    bool locked;  // the holder took the entry's lock (judge it by the lock first)
  };
  // The entry's holder, its details read consistently with its state word.
  [[nodiscard]] Holder holder(const WriterEntry& entry) const noexcept;
  // Claims `entry` from state `expected` for this process, locking it through `lock` if given;
  // false if someone else changed it.
  [[nodiscard]] bool try_claim(std::size_t index, std::uint64_t expected,
                               const process::Identity& me, ClaimLock* lock,
                               sync::WriterId& id) noexcept;
  // Whether the holder of entry `index` still runs: by its lock, then by its pid.
  [[nodiscard]] process::Liveness judge(std::size_t index, const Holder& holder) const noexcept;
  [[nodiscard]] std::uint64_t lock_byte(std::size_t index) const noexcept {
    return entries_offset_ + index * sizeof(WriterEntry);
  }

  std::span<WriterEntry> entries_;
  int region_fd_ = -1;
  std::uint64_t entries_offset_ = 0;
};

// This process's claim on a registry: made on its first write, and made again in the child after
// a fork (the parent's id stays the parent's). Released when destroyed in the process that made it.
class WriterClaim {
 public:
  // No registry: a private buffer, whose writers all use kPrivateWriter.
  explicit WriterClaim(std::optional<WriterRegistry> registry) noexcept : registry_(registry) {}
  WriterClaim(WriterClaim&& other) noexcept;
  WriterClaim& operator=(WriterClaim&& other) noexcept;
  WriterClaim(const WriterClaim&) = delete;
  WriterClaim& operator=(const WriterClaim&) = delete;
  ~WriterClaim();

  // The odd word this process marks the slots it writes with. Claims an entry on first use in a
  // process (CapacityError when the registry is full). Thread-safe; lock-free after the first call.
  [[nodiscard]] sync::SeqWord word() {
    if (!registry_) return sync::writing_by(sync::kPrivateWriter);
    const std::uint64_t claimed = claimed_.load(std::memory_order_acquire);
    if ((claimed >> 32) == process::fork_generation()) [[likely]] {
      return sync::writing_by(static_cast<sync::WriterId>(claimed));
    }
    return claim_slow(claimed);
  }

  // The registry, for shared buffers. Thread-safe.
  [[nodiscard]] WriterRegistry* registry() noexcept { return registry_ ? &*registry_ : nullptr; }

 private:
  sync::SeqWord claim_slow(std::uint64_t seen);
  // Gives this process's entry back, if it holds one.
  void release_own() noexcept;

  std::optional<WriterRegistry> registry_;
  // fork generation << 32 | writer id; 0 before the first claim. The generation is never 0.
  std::atomic<std::uint64_t> claimed_{0};
  // The lock of the claim in claimed_; written only by the thread whose claim won.
  ClaimLock lock_;
};

}  // namespace replay_buffer
