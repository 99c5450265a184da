// The consistency checker: every invariant of a buffer's region, for tests and for users who
// suspect that a crash left damage.
#include <string>
#include <vector>

#include "buffer_state.hpp"
#include "replay_buffer/errors.hpp"

namespace replay_buffer {

ConsistencyReport Buffer::check_consistency() {
  State& state = *state_;
  Ring& ring = state.ring;
  const std::string who = shared_name().empty() ? std::string("buffer")
                                                : "shared buffer '" + shared_name() + "'";
  const auto fail = [&who](const std::string& what) {
    return InvalidRegionError(who + " is inconsistent: " + what);
  };
  ConsistencyReport report;
  WriterRegistry* registry = ring.registry();
  if (registry != nullptr) {
    if (const std::string problem = registry->check(); !problem.empty()) throw fail(problem);
  }
  const std::uint64_t base = ring.base_key();
  const std::size_t capacity = ring.capacity();
  std::vector<sync::SeqWord> words(capacity);
  for (std::size_t slot = 0; slot < capacity; ++slot) {
    words[slot] = ring.word(slot).load(std::memory_order_acquire);
  }
  // Read after the words: every lap they hold was claimed before this load, so none may be newer.
  const std::uint64_t next = next_key();
  if (next < base) {
    throw fail("the key counter (" + std::to_string(next) + ") is behind the first key not " +
               "cleared (" + std::to_string(base) + ")");
  }
  for (std::size_t slot = 0; slot < capacity; ++slot) {
    const sync::SeqWord word = words[slot];
    const std::string where = "slot " + std::to_string(slot) + ": ";
    // Keys claimed for this slot so far: slot, slot + capacity, ... below `next`.
    const std::uint64_t claims = next / capacity + (slot < next % capacity ? 1 : 0);
    if (!sync::is_writing(word)) {
      const std::int64_t key =
          claims == 0 ? -1 : ring.key_in(word, {slot, claims - 1});
      if (word == sync::kUnwritten || key < 0) {
        ++report.unwritten;
      } else if (static_cast<std::uint64_t>(key) >= next) {
        throw fail(where + "holds lap " + std::to_string(word >> 1) + ", but only " +
                   std::to_string(claims) + " laps were claimed");
      } else if (static_cast<std::uint64_t>(key) < base) {
        ++report.unwritten;  // cleared
      } else {
        ++report.readable;
      }
    } else if (word == sync::kAbandoned) {
      ++report.abandoned;
    } else if (registry == nullptr) {
      if (sync::writer_of(word) != sync::kPrivateWriter) {
        throw fail(where + "marked by writer " + std::to_string(sync::writer_of(word)) +
                   " in a private buffer");
      }
      ++report.being_written;
    } else {
      const sync::WriterId holder = sync::writer_of(word);
      if (WriterRegistry::index_of(holder) >= state.layout.writer_slots ||
          WriterRegistry::incarnation_of(holder) == 0 ||
          WriterRegistry::incarnation_of(holder) > WriterRegistry::kMaxIncarnation) {
        throw fail(where + "marked by writer " + std::to_string(holder) +
                   ", which no registry entry can name");
      }
      if (registry->known_dead(holder) || registry->liveness(holder) == process::Liveness::kDead) {
        ++report.abandoned;
      } else {
        ++report.being_written;
      }
    }
  }
  report.takeovers = ring.takeovers();
  state.with_locked([&](auto& locked) {
    report.repaired = locked.repaired();
    report.repairs = locked.repairs();
    if (const std::string problem = locked.check(); !problem.empty()) throw fail(problem);
    // A priority on a slot that holds no live item would make draws fail for ever.
    const LiveKeys live = ring.live_keys();
    for (std::size_t slot = 0; slot < capacity; ++slot) {
      if (!(locked.get(slot) > 0.0)) continue;
      const sync::SeqWord word = ring.word(slot).load(std::memory_order_acquire);
      if (sync::is_writing(word)) continue;
      const std::int64_t key =
          live.end == 0 ? -1 : ring.key_in(word, ring.locate(newest_key_of(slot, live, capacity)));
      if (key < 0 || static_cast<std::uint64_t>(key) < live.base) {
        throw fail("slot " + std::to_string(slot) + " has priority " +
                   std::to_string(locked.get(slot)) + " but holds no live item");
      }
    }
  });
  return report;
}

}  // namespace replay_buffer
