// Everything a Buffer is, in one heap object so that its parts can refer to each other and a
// Buffer moves as one pointer. Private to the library's buffer*.cpp and consistency.cpp.
#pragma once

#include <optional>
#include <utility>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/selectors/registry.hpp"

namespace replay_buffer {

struct Buffer::State {
  // Declaration order is destruction order reversed: the region is unmapped last, after the
  // writer claim that lives in it has been released.
  Schema schema;
  Layout layout;
  Region region;
  WriterClaim writer;
  Ring ring;
  AnySelector selector;
  RegionHeader* header;
  Counters* counters;
  bool prioritized;
  // Moved by Buffer::cancel_waits: calls of this process waiting for the rate limiter then end.
  std::atomic<std::uint64_t> cancels{0};

  State(Schema schema_in, Layout layout_in, Region region_in, const SelectorParams& params)
      : schema(std::move(schema_in)),
        layout(std::move(layout_in)),
        region(std::move(region_in)),
        writer(registry_of(region, layout)),
        ring(region.data(), layout, schema, writer),
        selector(make(layout, region, params)),
        header(reinterpret_cast<RegionHeader*>(region.data())),
        counters(reinterpret_cast<Counters*>(region.data() + layout.counters_offset)),
        prioritized(is_prioritized(strategy())) {}

  [[nodiscard]] Strategy strategy() const noexcept {
    return static_cast<Strategy>(header->strategy);
  }

  // Runs `f(selector.lock())` on the selector the buffer has, one dispatch per call. After a
  // repair (the lock's previous holder died), also retires priorities of slots holding no live
  // item, which a process killed mid-clear can leave behind.
  template <typename F>
  decltype(auto) with_locked(F&& f);

 private:
  static std::optional<WriterRegistry> registry_of(const Region& region, const Layout& layout) {
    if (layout.writer_slots == 0) return std::nullopt;
    return WriterRegistry(
        std::span<WriterEntry>(reinterpret_cast<WriterEntry*>(region.data() + layout.writers_offset),
                               layout.writer_slots),
        region.fd(), layout.writers_offset);
  }
  static AnySelector make(const Layout& layout, const Region& region,
                          const SelectorParams& params) {
    const auto strategy = static_cast<Strategy>(
        reinterpret_cast<const RegionHeader*>(region.data())->strategy);
    return *Selectors::make(strategy, region.data() + layout.selector_offset, layout.capacity,
                            params);
  }
};

// Gives slots that hold no live item (unwritten, cleared, or retired by a dead writer) priority
// 0, so that draws never choose them. Caller holds the selector's lock.
template <typename Locked>
void retire_dead_slots(Locked& locked, const Ring& ring) {
  const LiveKeys live = ring.live_keys();
  for (std::size_t slot = 0; slot < ring.capacity(); ++slot) {
    if (!(locked.get(slot) > 0.0)) continue;
    const sync::SeqWord word = ring.word(slot).load(std::memory_order_acquire);
    if (sync::is_writing(word) && word != sync::kAbandoned) continue;  // a writer will publish it
    const std::uint64_t near = live.end == 0 ? slot : newest_key_of(slot, live, ring.capacity());
    const std::int64_t key = sync::is_writing(word) ? -1 : ring.key_in(word, ring.locate(near));
    if (key < 0 || static_cast<std::uint64_t>(key) < live.base) locked.retire(slot);
  }
}

template <typename F>
decltype(auto) Buffer::State::with_locked(F&& f) {
  return std::visit(
      [&](auto& selector) -> decltype(auto) {
        auto locked = selector.lock();
        if (locked.repaired()) retire_dead_slots(locked, ring);
        return f(locked);
      },
      selector);
}

}  // namespace replay_buffer
