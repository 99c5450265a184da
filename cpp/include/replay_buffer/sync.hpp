// The synchronisation primitives of the library, all in one place.
//
// Each slot of the ring has a 32-bit sequence word. A writer of lap L (the L-th time the ring
// wraps onto that slot since the last clear) moves the word to writing_by(its writer id) (odd),
// copies the row, then stores published(L) (even). A reader loads the word, copies the row, and
// loads the word again: if both loads saw the same even word, the copy is a whole row of lap L.
// Laps are kept modulo 2^31 and compared with serial-number arithmetic, which is exact while a
// reader's or writer's view is less than 2^30 laps stale.
//
// The odd word names its writer rather than its lap so that, in a buffer shared between
// processes, a writer that finds a slot held for long can look the holder up in the region's
// writer registry and take the slot over if that process died mid-copy (writers.hpp). Nothing
// reads a lap from an odd word: readers only test oddness, writers wait or take over.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>

namespace replay_buffer::sync {

using SeqWord = std::uint32_t;
// Who holds a slot mid-write: 0 in private buffers (every writer is a thread of the one process
// that maps it), an id from the writer registry in shared ones. 31 bits.
using WriterId = std::uint32_t;

inline constexpr WriterId kPrivateWriter = 0;
// The largest id a registry hands out; 0x7FFF'FFFF is kept for kAbandoned.
inline constexpr WriterId kMaxWriterId = 0x7FFF'FFFEu;

// A fresh slot reads as "lap -1 published": older than any lap a writer can hold.
inline constexpr SeqWord kUnwritten = 0xFFFF'FFFEu;
// A slot whose writer died mid-copy, retired by a sampler so that it stops drawing it: odd, so
// readers skip it; the next writer of the slot takes it over at once.
inline constexpr SeqWord kAbandoned = 0xFFFF'FFFFu;

[[nodiscard]] constexpr SeqWord published(std::uint64_t lap) noexcept {
  return static_cast<SeqWord>(lap << 1);
}
[[nodiscard]] constexpr SeqWord writing_by(WriterId writer) noexcept {
  return static_cast<SeqWord>(writer << 1) | 1u;
}
[[nodiscard]] constexpr WriterId writer_of(SeqWord word) noexcept { return word >> 1; }
[[nodiscard]] constexpr bool is_writing(SeqWord word) noexcept { return (word & 1u) != 0; }

// How many laps the row in the published (even) `word` lies behind `lap` (negative: ahead of it).
[[nodiscard]] constexpr std::int64_t laps_behind(SeqWord word, std::uint64_t lap) noexcept {
  const auto diff = static_cast<std::int32_t>(published(lap) - (word & ~1u));
  return diff / 2;
}

[[nodiscard]] inline std::atomic_ref<SeqWord> seq_ref(SeqWord& word) noexcept {
  return std::atomic_ref<SeqWord>(word);
}
[[nodiscard]] inline std::atomic_ref<std::uint64_t> counter_ref(std::uint64_t& word) noexcept {
  return std::atomic_ref<std::uint64_t>(word);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Waits for a short while, then gives up the CPU: for the rare spin on another thread's slot.
class Backoff {
 public:
  void wait() noexcept {
    if (++spins_ < kSpins) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  // Waits so far; a live holder releases within kSpins in all but contended cases.
  [[nodiscard]] unsigned spins() const noexcept { return spins_; }

  static constexpr unsigned kSpins = 64;

 private:
  unsigned spins_ = 0;
};

// A lock word in a region held by a process id: the tree lock where the OS has no robust mutexes
// (macOS). lock() CASes the word from 0 to the caller's pid; a waiter that has waited a
// millisecond asks the OS whether the holder still runs and, if it died, takes the word over
// from it with a CAS and reports that the state it guards needs repair. Threads of one process
// exclude each other too (the word is held, whoever holds it) but are never judged dead. A pid
// reused by a new process after the holder died makes the holder look alive (Linux compares start
// times; other systems cannot), so the lock then waits for that process to end. Compiled and
// tested everywhere; RegionMutex uses it only where robust mutexes are missing.
class PidLock {
 public:
  // Sets the lock free; only the region's creator calls it, once. Not thread-safe.
  void init() noexcept { owner_ = 0; }
  // Blocks until held. Returns true when it was taken over from a holder that died holding it.
  // Thread- and process-safe.
  [[nodiscard]] bool lock() noexcept;
  // Thread- and process-safe; only the holder calls it.
  void unlock() noexcept;
  // The holder's pid, 0 when free. Thread- and process-safe (a snapshot).
  [[nodiscard]] std::int64_t holder() const noexcept;

 private:
  std::uint64_t owner_ = 0;  // atomic: the holder's pid, 0 when free
};

#if defined(__linux__)
#define REPLAY_BUFFER_ROBUST_MUTEX 1
#else
#define REPLAY_BUFFER_ROBUST_MUTEX 0
#endif

// A mutex that lives inside a region, so every process mapping the region shares it. A holder that
// dies does not leave it locked forever: the next locker gets it and is told, so it can repair
// what the dead holder was changing. A process-shared robust pthread mutex where the OS has them
// (Linux), a PidLock elsewhere (macOS).
class RegionMutex {
 public:
  // Sets up the mutex in place; only the region's creator calls it, once. Not thread-safe.
  void init();
  // Blocks until held. Returns true when the previous holder died holding it: the caller now
  // holds it and must repair the state it guards. Thread- and process-safe.
  [[nodiscard]] bool lock();
  // Thread- and process-safe; only the holder calls it.
  void unlock() noexcept;

 private:
#if REPLAY_BUFFER_ROBUST_MUTEX
  pthread_mutex_t mutex_;
#else
  PidLock mutex_;
#endif
};

// Holds a RegionMutex for a scope; runs `repair` first when the previous holder had died.
class RegionLock {
 public:
  template <typename Repair>
  RegionLock(RegionMutex& mutex, Repair&& repair) : mutex_(mutex) {
    if (mutex_.lock()) repair();
  }
  RegionLock(const RegionLock&) = delete;
  RegionLock& operator=(const RegionLock&) = delete;
  ~RegionLock() { mutex_.unlock(); }

 private:
  RegionMutex& mutex_;
};

// The fences of the sequence-word protocol, in one place. On hardware, a writer marks a slot
// with a compare-exchange (acquire: it must not see the previous writer's payload stores before
// its claim) followed by a release fence (the odd word must be visible before any byte of the
// new row: on ARM, stores may otherwise be reordered ahead of it); a reader, after copying a
// row, issues an acquire fence (its payload loads must complete before it reloads the word) and
// reloads the word relaxed. The release fence pairs with the reader's acquire fence through the
// payload bytes (C++ fence-fence synchronisation, [atomics.fences]): a reader that saw any byte
// of the new row sees the odd word or a later one on its reload, and discards the copy.
//
// ThreadSanitizer does not model fences (g++ says so with -Wtsan). In TSan builds the same
// orderings are expressed with operations it does model — a sequentially consistent
// compare-exchange, and a read-don't-modify-write (fetch_add of 0) for the reader's reload, which
// reads the latest value in the word's modification order — so TSan checks the protocol with
// orderings at least as strong. They cost a locked instruction per row, so release builds keep
// the fences (docs/architecture.md, "Memory orderings").
#if defined(__SANITIZE_THREAD__)
#define REPLAY_BUFFER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define REPLAY_BUFFER_TSAN 1
#endif
#endif

// Moves `word` from `expected` to `mine` (odd) to claim its slot; on failure `expected` holds the
// word's value. Thread- and process-safe.
[[nodiscard]] inline bool claim_word(std::atomic_ref<SeqWord> word, SeqWord& expected,
                                     SeqWord mine) noexcept {
#if defined(REPLAY_BUFFER_TSAN)
  return word.compare_exchange_strong(expected, mine, std::memory_order_seq_cst);
#else
  if (!word.compare_exchange_strong(expected, mine, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
    return false;
  }
  std::atomic_thread_fence(std::memory_order_release);
  return true;
#endif
}

// After copying a row: whether `word` still holds `before`, i.e. the copy is whole. Thread- and
// process-safe.
[[nodiscard]] inline bool unchanged_after_copy(std::atomic_ref<SeqWord> word,
                                               SeqWord before) noexcept {
#if defined(REPLAY_BUFFER_TSAN)
  return word.fetch_add(0, std::memory_order_seq_cst) == before;
#else
  std::atomic_thread_fence(std::memory_order_acquire);
  return word.load(std::memory_order_relaxed) == before;
#endif
}

// The two copies that race by design: a reader copying a row a writer may be overwriting, and
// that writer's copy. The sequence word check discards every copy that overlapped a write, so the
// race never reaches a caller; it is confined to these functions, which the ThreadSanitizer
// suppression file (cpp/tests/tsan.supp) names, and to nothing else.
//
// Small rows (a reward, an action, a CartPole observation) are copied with a fixed-size memcpy the
// compiler turns into one or two moves; a libc call costs more than the copy.
[[gnu::always_inline]] inline void seqlock_copy(std::byte* dst, const std::byte* src,
                                                std::size_t n) noexcept {
  switch (n) {
    case 1:
      std::memcpy(dst, src, 1);
      return;
    case 4:
      std::memcpy(dst, src, 4);
      return;
    case 8:
      std::memcpy(dst, src, 8);
      return;
    case 16:
      std::memcpy(dst, src, 16);
      return;
    case 32:
      std::memcpy(dst, src, 32);
      return;
    default:
      std::memcpy(dst, src, n);
  }
}

}  // namespace replay_buffer::sync
