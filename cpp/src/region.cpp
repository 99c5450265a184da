#include "replay_buffer/region.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "replay_buffer/errors.hpp"

namespace replay_buffer {

std::size_t physical_memory_bytes() noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_size);
}

Region Region::allocate_private(std::size_t bytes) {
  if (bytes == 0) throw CapacityError("cannot map an empty region");
  const std::size_t physical = physical_memory_bytes();
  if (physical != 0 && bytes > physical) {
    throw CapacityError("buffer needs " + std::to_string(bytes) + " bytes but this machine has " +
                        std::to_string(physical) + " bytes of physical memory");
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    throw CapacityError("cannot map " + std::to_string(bytes) + " bytes: " + std::strerror(err));
  }
#ifdef MADV_HUGEPAGE
  // Sampling touches rows at random: with 2 MiB pages most of those touches stop missing the TLB.
  // Only a hint (Linux); where the kernel declines, nothing changes.
  ::madvise(base, bytes, MADV_HUGEPAGE);
#endif
  return Region(static_cast<std::byte*>(base), bytes);
}

Region::Region(Region&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Region& Region::operator=(Region&& other) noexcept {
  if (this != &other) {
    release();
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Region::~Region() { release(); }

void Region::release() noexcept {
  if (base_ != nullptr) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
}

}  // namespace replay_buffer
