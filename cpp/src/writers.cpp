#include "replay_buffer/writers.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {
namespace {

constexpr std::uint64_t kPidMask = 0xFFFF'FFFFu;
// Set in an entry's details_of when its holder took the entry's lock.
constexpr std::uint64_t kLockedFlag = std::uint64_t{1} << 63;

enum class LockState : std::uint8_t { kHeld, kFree, kUnknown };

// Whether some open file description holds a lock on `byte` of `fd`'s file (other than fd's own
// description, which must hold none).
LockState probe_lock([[maybe_unused]] int fd, [[maybe_unused]] std::uint64_t byte) noexcept {
#if defined(F_OFD_GETLK)
  if (fd < 0) return LockState::kUnknown;
  struct flock query {};
  query.l_type = F_WRLCK;
  query.l_whence = SEEK_SET;
  query.l_start = static_cast<off_t>(byte);
  query.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &query) != 0) return LockState::kUnknown;
  return query.l_type == F_UNLCK ? LockState::kFree : LockState::kHeld;
#else
  return LockState::kUnknown;
#endif
}

std::atomic_ref<std::uint64_t> ref(const std::uint64_t& word) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(word));
}

constexpr std::uint32_t incarnation_in(std::uint64_t state) noexcept {
  return static_cast<std::uint32_t>(state >> 32);
}
constexpr std::int64_t pid_in(std::uint64_t state) noexcept {
  return static_cast<std::int64_t>(state & kPidMask);
}
constexpr std::uint64_t state_of(std::uint32_t incarnation, std::int64_t pid) noexcept {
  return std::uint64_t{incarnation} << 32 | (static_cast<std::uint64_t>(pid) & kPidMask);
}

}  // namespace

WriterRegistry::Holder WriterRegistry::holder(const WriterEntry& entry) const noexcept {
  // A claimer publishes its details after its state word, so they are read between two reads of
  // the state word and kept only if they belong to the incarnation that word names.
  for (;;) {
    const std::uint64_t state = ref(entry.state).load(std::memory_order_acquire);
    const std::uint64_t details_of = ref(entry.details_of).load(std::memory_order_acquire);
    // Acquire loads (not a fence, which ThreadSanitizer cannot see): the reload of the state word
    // below cannot move before them, and a details_of of this incarnation brings the details
    // stored before it.
    const std::uint64_t start_time = ref(entry.start_time).load(std::memory_order_acquire);
    const std::uint64_t pid_namespace = ref(entry.pid_namespace).load(std::memory_order_acquire);
    if (ref(entry.state).load(std::memory_order_acquire) != state) continue;
    Holder holder{state, {.pid = pid_in(state)}, false};
    if ((details_of & ~kLockedFlag) == incarnation_in(state)) {
      holder.identity.start_time = start_time;
      holder.identity.pid_namespace = pid_namespace;
      holder.locked = (details_of & kLockedFlag) != 0;
    }
    return holder;
  }
}

bool WriterRegistry::try_claim(std::size_t index, std::uint64_t expected,
                               const process::Identity& me, ClaimLock* lock,
                               sync::WriterId& id) noexcept {
  WriterEntry& entry = entries_[index];
  const std::uint32_t incarnation = incarnation_in(expected);
  const std::uint32_t next = incarnation >= kMaxIncarnation ? 1 : incarnation + 1;
  if (!ref(entry.state)
           .compare_exchange_strong(expected, state_of(next, me.pid), std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
    return false;
  }
  // Locked before the details say so: whoever reads the flag finds the lock taken (until this
  // process exits or execs). A byte still locked by a holder that has not closed its
  // descriptor yet leaves this claim unlocked, judged by its pid.
  const bool locked = lock != nullptr && lock->lock(lock_byte(index));
  // Release stores: ordered after the claim for anyone who reads these details (see holder()).
  ref(entry.start_time).store(me.start_time, std::memory_order_release);
  ref(entry.pid_namespace).store(me.pid_namespace, std::memory_order_release);
  ref(entry.details_of).store(next | (locked ? kLockedFlag : 0), std::memory_order_release);
  id = static_cast<sync::WriterId>(next) << kIndexBits | static_cast<sync::WriterId>(index);
  return true;
}

sync::WriterId WriterRegistry::claim(ClaimLock* lock) {
  const process::Identity me = process::self();
  if (lock != nullptr && !lock->open(region_fd_)) lock = nullptr;
  sync::WriterId id = 0;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const std::uint64_t state = ref(entries_[i].state).load(std::memory_order_acquire);
    if (pid_in(state) == 0 && try_claim(i, state, me, lock, id)) return id;
  }
  // None free: take the entry of a process that died without releasing it.
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Holder h = holder(entries_[i]);
    if (h.identity.pid == 0 || judge(i, h) == process::Liveness::kDead) {
      if (try_claim(i, h.state, me, lock, id)) return id;
    }
  }
  throw CapacityError("all " + std::to_string(entries_.size()) +
                      " writer entries of this shared buffer belong to live processes");
}

void WriterRegistry::release(sync::WriterId id) noexcept {
  const std::size_t index = index_of(id);
  if (index >= entries_.size()) return;
  std::uint64_t expected = state_of(incarnation_of(id), process::current_pid());
  ref(entries_[index].state)
      .compare_exchange_strong(expected, state_of(incarnation_of(id), 0), std::memory_order_acq_rel,
                               std::memory_order_relaxed);
}

bool WriterRegistry::known_dead(sync::WriterId id) const noexcept {
  const std::size_t index = index_of(id);
  if (index >= entries_.size()) return true;
  const std::uint64_t state = ref(entries_[index].state).load(std::memory_order_acquire);
  return incarnation_in(state) != incarnation_of(id) || pid_in(state) == 0;
}

process::Liveness WriterRegistry::liveness(sync::WriterId id) noexcept {
  const std::size_t index = index_of(id);
  if (index >= entries_.size()) return process::Liveness::kDead;
  const Holder h = holder(entries_[index]);
  if (incarnation_in(h.state) != incarnation_of(id) || h.identity.pid == 0) {
    return process::Liveness::kDead;
  }
  const process::Liveness result = judge(index, h);
  if (result == process::Liveness::kDead) {
    // Freed with its incarnation kept, so the id stays known dead and the entry is free to claim.
    std::uint64_t expected = h.state;
    ref(entries_[index].state)
        .compare_exchange_strong(expected, state_of(incarnation_in(h.state), 0),
                                 std::memory_order_acq_rel, std::memory_order_relaxed);
  }
  return result;
}

process::Liveness WriterRegistry::judge(std::size_t index, const Holder& h) const noexcept {
  if (h.locked) {
    switch (probe_lock(region_fd_, lock_byte(index))) {
      case LockState::kFree:
        return process::Liveness::kDead;  // exited, or exec'd: the lock went with its descriptor
      case LockState::kHeld:
        // Held: alive, even in another pid namespace, unless its pid says it died (a descriptor
        // kept open by something other than the holder must not keep a dead holder alive).
        return process::liveness(h.identity) == process::Liveness::kDead
                   ? process::Liveness::kDead
                   : process::Liveness::kAlive;
      case LockState::kUnknown:
        break;
    }
  }
  return process::liveness(h.identity);
}

WriterRegistry::Census WriterRegistry::census() const noexcept {
  Census census;
  for (const WriterEntry& entry : entries_) {
    const Holder h = holder(entry);
    if (h.identity.pid == 0) continue;
    if (judge(static_cast<std::size_t>(&entry - entries_.data()), h) == process::Liveness::kDead) {
      ++census.dead;
    } else {
      ++census.live;
    }
  }
  return census;
}

std::string WriterRegistry::check() const {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const std::uint64_t state = ref(entries_[i].state).load(std::memory_order_acquire);
    if (incarnation_in(state) > kMaxIncarnation) {
      return "writer entry " + std::to_string(i) + " has incarnation " +
             std::to_string(incarnation_in(state)) + " (at most " +
             std::to_string(kMaxIncarnation) + ")";
    }
    if (pid_in(state) > 0x7FFF'FFFF) {
      return "writer entry " + std::to_string(i) + " has pid " + std::to_string(pid_in(state));
    }
  }
  return {};
}

ClaimLock::ClaimLock(ClaimLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), generation_(other.generation_) {}

ClaimLock& ClaimLock::operator=(ClaimLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    generation_ = other.generation_;
  }
  return *this;
}

bool ClaimLock::open([[maybe_unused]] int region_fd) noexcept {
  release();
#if defined(__linux__) && defined(F_OFD_SETLK)
  if (region_fd < 0) return false;
  // A new open file description (dup() would share the region's): its lock is this claim's alone.
  char path[48];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", region_fd);
  fd_ = process::open_fork_private(path, O_RDWR);
  generation_ = process::fork_generation();
  return fd_ >= 0;
#else
  return false;
#endif
}

bool ClaimLock::lock([[maybe_unused]] std::uint64_t byte) noexcept {
#if defined(F_OFD_SETLK)
  if (fd_ < 0) return false;
  struct flock request {};
  request.l_type = F_WRLCK;
  request.l_whence = SEEK_SET;
  request.l_start = static_cast<off_t>(byte);
  request.l_len = 1;
  return ::fcntl(fd_, F_OFD_SETLK, &request) == 0;
#else
  return false;
#endif
}

void ClaimLock::release() noexcept {
  // In a forked child the descriptor was closed by the fork (and its number may be reused).
  if (fd_ >= 0 && generation_ == process::fork_generation()) process::close_fork_private(fd_);
  fd_ = -1;
}

WriterClaim::WriterClaim(WriterClaim&& other) noexcept
    : registry_(other.registry_),
      claimed_(other.claimed_.exchange(0)),
      lock_(std::move(other.lock_)) {}

WriterClaim& WriterClaim::operator=(WriterClaim&& other) noexcept {
  if (this != &other) {
    release_own();
    registry_ = other.registry_;
    claimed_.store(other.claimed_.exchange(0));
    lock_ = std::move(other.lock_);
  }
  return *this;
}

WriterClaim::~WriterClaim() { release_own(); }

void WriterClaim::release_own() noexcept {
  const std::uint64_t claimed = claimed_.exchange(0, std::memory_order_acq_rel);
  // The lock first: the entry, once free, may be claimed and locked by another process at once.
  lock_.release();
  if (registry_ && claimed != 0 && (claimed >> 32) == process::fork_generation()) {
    registry_->release(static_cast<sync::WriterId>(claimed));
  }
}

sync::SeqWord WriterClaim::claim_slow(std::uint64_t seen) {
  const std::uint64_t generation = process::fork_generation();
  ClaimLock lock;
  const sync::WriterId id = registry_->claim(&lock);
  const std::uint64_t desired = generation << 32 | id;
  std::uint64_t expected = seen;
  for (;;) {
    if (claimed_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel)) {
      // Replaces a parent's lock (closed in this child by the fork) or nothing.
      lock_ = std::move(lock);
      return sync::writing_by(id);
    }
    if ((expected >> 32) == generation) {
      // Another thread of this process claimed first: use its id, give ours back.
      lock.release();
      registry_->release(id);
      return sync::writing_by(static_cast<sync::WriterId>(expected));
    }
    // `expected` is an id the parent claimed before a fork: replace it.
  }
}

}  // namespace replay_buffer
