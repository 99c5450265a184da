// The writer registry of a shared buffer: which process each writer id belongs to, so that a
// process waiting on a slot another writer left odd can find out whether that writer died.
//
// A process claims an entry on its first write to a region (and again in the child after a fork)
// and marks the slots it writes with its id: incarnation << 10 | entry index. The incarnation is
// bumped every time the entry is claimed, so an id whose entry has since been freed or claimed by
// another process is known dead without asking the OS. Entries of dead processes are freed by
// whoever finds them dead, and reclaimed by registering processes when no entry is free.
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

class WriterRegistry {
 public:
  static constexpr std::size_t kIndexBits = 10;
  static constexpr std::size_t kEntries = std::size_t{1} << kIndexBits;
  // Incarnations run 1 .. kMaxIncarnation, so an id is never kPrivateWriter nor kAbandoned's.
  static constexpr std::uint32_t kMaxIncarnation = (std::uint32_t{1} << 21) - 2;
  static_assert(kEntries == kMaxWriterSlots);

  // A view of the registry in `entries` (zero-filled in a fresh region: every entry free).
  // Thread-safe construction; the region outlives the view.
  explicit WriterRegistry(std::span<WriterEntry> entries) noexcept : entries_(entries) {}

  // Claims an entry for this process: a free one, else one whose process died. Throws
  // CapacityError when every entry belongs to a live process. Thread- and process-safe.
  [[nodiscard]] sync::WriterId claim();

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
  };
  // The entry's holder, its details read consistently with its state word.
  [[nodiscard]] Holder holder(const WriterEntry& entry) const noexcept;
  // Claims `entry` from state `expected` for this process; false if someone else changed it.
  [[nodiscard]] bool try_claim(std::size_t index, std::uint64_t expected,
                               const process::Identity& me, sync::WriterId& id) noexcept;

  std::span<WriterEntry> entries_;
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
};

}  // namespace replay_buffer
