// One contiguous, page-aligned block of memory that holds a whole buffer.
//
// Every part of a buffer (header, counters, sequence words, columns) lives in one region and is
// addressed by offsets from its start, so the same buffer code runs on private memory and on a
// named POSIX shared-memory object that other processes map too.
//
// Shared regions have names: up to kMaxSharedNameLength characters from [A-Za-z0-9._-], not
// starting with '.'. The POSIX name is "/" + name; on Linux the object shows up as
// /dev/shm/<name>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace replay_buffer {

#if defined(__APPLE__)
// macOS limits POSIX shared-memory names to 31 bytes, the leading '/' included.
inline constexpr std::size_t kMaxSharedNameLength = 30;
#else
inline constexpr std::size_t kMaxSharedNameLength = 200;
#endif

// Whether this OS lets a process list the shared-memory objects that exist (Linux: /dev/shm).
// macOS offers no way to: there a name must be known to be inspected or removed.
#if defined(__linux__)
inline constexpr bool kCanListShared = true;
#else
inline constexpr bool kCanListShared = false;
#endif

class Region {
 public:
  enum class Access : std::uint8_t { kReadWrite, kReadOnly };
  // Whose regions attach_shared accepts: only those owned by this process's effective uid (so a
  // user who pre-created the name cannot read or inject transitions), or anyone's (an explicit
  // opt-in for sharing across users, and for read-only inspection).
  enum class Owner : std::uint8_t { kSelf, kAnyone };

  // Maps `bytes` of zero-filled private memory. Pages are committed lazily by the OS as they are
  // first written. Throws CapacityError when `bytes` exceeds this machine's physical memory or the
  // mapping fails. Thread-safe (no shared state).
  [[nodiscard]] static Region allocate_private(std::size_t bytes);

  // Creates the shared-memory object `name` holding `bytes` zero bytes, with permissions exactly
  // `mode` (the umask does not narrow them), and maps it. The region removes the name when it is
  // destroyed, in the process that created it only (not in a child that inherited it through
  // fork), unless keep_name() was called, and only while the name still refers to this object
  // (not to one someone else created under the same name since). On Linux every page is
  // committed here (posix_fallocate), so the region exists whole or not at all: writing to it
  // later can never die with SIGBUS because /dev/shm filled up. Elsewhere pages are committed
  // lazily (macOS backs shared memory with ordinary memory, not a size-limited tmpfs). Throws
  // std::invalid_argument for an invalid name; SharedMemoryError with EEXIST when the name
  // exists, EACCES when it may not be created; CapacityError when `bytes` exceeds physical memory
  // or, on Linux, what /dev/shm can hold (its message names /dev/shm and Docker's --shm-size).
  // Thread-safe.
  [[nodiscard]] static Region create_shared(std::string_view name, std::size_t bytes,
                                            std::uint32_t mode = 0600);

  // Maps all of the existing shared-memory object `name` (its size as it is now; a size of 0,
  // which a creator that has not sized it yet leaves, gives an empty region). Throws
  // std::invalid_argument for an invalid name, SharedMemoryError with ENOENT when there is no
  // such object, EACCES when this process may not open it with `access`, and EPERM (naming the
  // owner's uid and this process's) when `owner` is kSelf and another user owns it. Thread-safe.
  [[nodiscard]] static Region attach_shared(std::string_view name,
                                            Access access = Access::kReadWrite,
                                            Owner owner = Owner::kSelf);

  Region(Region&& other) noexcept;
  Region& operator=(Region&& other) noexcept;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region();

  // The mapped bytes. Valid until the region is destroyed or moved from.
  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {base_, size_}; }
  [[nodiscard]] std::byte* data() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  // The shared-memory name; empty for private regions.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] bool is_shared() const noexcept { return !name_.empty(); }
  // Whether destroying the region removes its name (created here, not kept, not yet removed).
  [[nodiscard]] bool owns_name() const noexcept { return owns_name_; }
  // Permission bits and owner of the shared-memory object when it was opened (0 for private).
  [[nodiscard]] std::uint32_t mode() const noexcept { return mode_; }
  [[nodiscard]] std::uint32_t owner_uid() const noexcept { return owner_uid_; }
  // A descriptor of the shared-memory object, open (close-on-exec) for as long as the region is
  // mapped, with the access it was mapped with; -1 for private regions. Valid until the region is
  // destroyed or moved from; never close it. Thread-safe.
  [[nodiscard]] int fd() const noexcept { return fd_; }

  // Removes the name now, if this region owns it and the name still refers to this region's
  // object (its device and inode, recorded at creation); the mapping stays valid and other
  // processes keep theirs, but no process can attach any more. Returns whether it removed it.
  // Not thread-safe (call it from one thread).
  bool unlink_name() noexcept;
  // Leaves the name in place when the region is destroyed. Not thread-safe.
  void keep_name() noexcept { owns_name_ = false; }

 private:
  Region(std::byte* base, std::size_t size) noexcept : base_(base), size_(size) {}
  void release() noexcept;

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::string name_;
  bool owns_name_ = false;
  std::int64_t creator_pid_ = 0;
  std::uint32_t mode_ = 0;
  std::uint32_t owner_uid_ = 0;
  int fd_ = -1;
  // The object's identity (st_dev, st_ino) when created here: unlink_name removes the name only
  // while it still refers to it.
  std::uint64_t device_ = 0;
  std::uint64_t inode_ = 0;
};

// Physical memory of this machine in bytes (0 if the OS does not say).
[[nodiscard]] std::size_t physical_memory_bytes() noexcept;

// Throws std::invalid_argument, saying why, unless `name` is a valid shared-memory name.
void validate_shared_name(std::string_view name);

// Removes the shared-memory object `name`; processes that map it keep their mappings. Throws
// std::invalid_argument for an invalid name and SharedMemoryError (ENOENT, EACCES, ...).
// Thread-safe.
void unlink_shared(std::string_view name);

// The names of every shared-memory object this process can see, sorted (replay buffers and
// anything else). Linux only (kCanListShared); elsewhere throws std::runtime_error saying so.
// Thread-safe.
[[nodiscard]] std::vector<std::string> list_shared();

}  // namespace replay_buffer
