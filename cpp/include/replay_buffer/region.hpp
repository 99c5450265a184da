// One contiguous, page-aligned block of memory that holds a whole buffer.
//
// Every part of a buffer (header, counters, sequence words, columns) lives in one region and is
// addressed by offsets from its start, so the same buffer code runs on private memory today and on
// a shared or file-backed mapping without change.
#pragma once

#include <cstddef>
#include <span>

namespace replay_buffer {

class Region {
 public:
  // Maps `bytes` of zero-filled private memory. Pages are committed lazily by the OS as they are
  // first written. Throws CapacityError when `bytes` exceeds this machine's physical memory or the
  // mapping fails. Thread-safe (no shared state).
  [[nodiscard]] static Region allocate_private(std::size_t bytes);

  Region(Region&& other) noexcept;
  Region& operator=(Region&& other) noexcept;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region();

  // The mapped bytes. Valid until the region is destroyed or moved from.
  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {base_, size_}; }
  [[nodiscard]] std::byte* data() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  Region(std::byte* base, std::size_t size) noexcept : base_(base), size_(size) {}
  void release() noexcept;

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

// Physical memory of this machine in bytes (0 if the OS does not say).
[[nodiscard]] std::size_t physical_memory_bytes() noexcept;

}  // namespace replay_buffer
