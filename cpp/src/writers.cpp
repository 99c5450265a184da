#include "replay_buffer/writers.hpp"

#include <string>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {
namespace {

constexpr std::uint64_t kPidMask = 0xFFFF'FFFFu;

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
    const std::uint64_t start_time = ref(entry.start_time).load(std::memory_order_relaxed);
    const std::uint64_t pid_namespace = ref(entry.pid_namespace).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (ref(entry.state).load(std::memory_order_relaxed) != state) continue;
    Holder holder{state, {.pid = pid_in(state)}};
    if (details_of == incarnation_in(state)) {
      holder.identity.start_time = start_time;
      holder.identity.pid_namespace = pid_namespace;
    }
    return holder;
  }
}

bool WriterRegistry::try_claim(std::size_t index, std::uint64_t expected,
                               const process::Identity& me, sync::WriterId& id) noexcept {
  WriterEntry& entry = entries_[index];
  const std::uint32_t incarnation = incarnation_in(expected);
  const std::uint32_t next = incarnation >= kMaxIncarnation ? 1 : incarnation + 1;
  if (!ref(entry.state)
           .compare_exchange_strong(expected, state_of(next, me.pid), std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
    return false;
  }
  // Ordered after the claim for anyone who reads these details (see holder()).
  std::atomic_thread_fence(std::memory_order_release);
  ref(entry.start_time).store(me.start_time, std::memory_order_relaxed);
  ref(entry.pid_namespace).store(me.pid_namespace, std::memory_order_relaxed);
  ref(entry.details_of).store(next, std::memory_order_release);
  id = static_cast<sync::WriterId>(next) << kIndexBits | static_cast<sync::WriterId>(index);
  return true;
}

sync::WriterId WriterRegistry::claim() {
  const process::Identity me = process::self();
  sync::WriterId id = 0;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const std::uint64_t state = ref(entries_[i].state).load(std::memory_order_acquire);
    if (pid_in(state) == 0 && try_claim(i, state, me, id)) return id;
  }
  // None free: take the entry of a process that died without releasing it.
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Holder h = holder(entries_[i]);
    if (h.identity.pid == 0 || process::liveness(h.identity) == process::Liveness::kDead) {
      if (try_claim(i, h.state, me, id)) return id;
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
  const process::Liveness result = process::liveness(h.identity);
  if (result == process::Liveness::kDead) {
    // Freed with its incarnation kept, so the id stays known dead and the entry is free to claim.
    std::uint64_t expected = h.state;
    ref(entries_[index].state)
        .compare_exchange_strong(expected, state_of(incarnation_in(h.state), 0),
                                 std::memory_order_acq_rel, std::memory_order_relaxed);
  }
  return result;
}

WriterRegistry::Census WriterRegistry::census() const noexcept {
  Census census;
  for (const WriterEntry& entry : entries_) {
    const Holder h = holder(entry);
    if (h.identity.pid == 0) continue;
    if (process::liveness(h.identity) == process::Liveness::kDead) {
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

WriterClaim::WriterClaim(WriterClaim&& other) noexcept
    : registry_(other.registry_), claimed_(other.claimed_.exchange(0)) {}

WriterClaim& WriterClaim::operator=(WriterClaim&& other) noexcept {
  if (this != &other) {
    release_own();
    registry_ = other.registry_;
    claimed_.store(other.claimed_.exchange(0));
  }
  return *this;
}

WriterClaim::~WriterClaim() { release_own(); }

void WriterClaim::release_own() noexcept {
  const std::uint64_t claimed = claimed_.exchange(0, std::memory_order_acq_rel);
  if (registry_ && claimed != 0 && (claimed >> 32) == process::fork_generation()) {
    registry_->release(static_cast<sync::WriterId>(claimed));
  }
}

sync::SeqWord WriterClaim::claim_slow(std::uint64_t seen) {
  const std::uint64_t generation = process::fork_generation();
  const sync::WriterId id = registry_->claim();
  const std::uint64_t desired = generation << 32 | id;
  std::uint64_t expected = seen;
  for (;;) {
    if (claimed_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel)) {
      return sync::writing_by(id);
    }
    if ((expected >> 32) == generation) {
      // Another thread of this process claimed first: use its id, give ours back.
      registry_->release(id);
      return sync::writing_by(static_cast<sync::WriterId>(expected));
    }
    // `expected` is an id the parent claimed before a fork: replace it.
  }
}

}  // namespace replay_buffer
