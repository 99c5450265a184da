#include "replay_buffer/region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__)
#include <dirent.h>
#include <sys/statvfs.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/process.hpp"

namespace replay_buffer {
namespace {

std::string posix_name(std::string_view name) {
  validate_shared_name(name);
  std::string path(1, '/');
  path.append(name);
  return path;
}

[[noreturn]] void throw_open_error(int err, std::string_view name, const char* doing) {
  const std::string quoted = "'" + std::string(name) + "'";
  switch (err) {
    case EEXIST:
      throw SharedMemoryError(err, std::string(name),
                              "a shared buffer named " + quoted +
                                  " already exists (attach to it, "
                                  "or remove it with `replay-buffer shm rm " +
                                  std::string(name) + "`)");
    case ENOENT:
      throw SharedMemoryError(err, std::string(name), "no shared buffer named " + quoted);
    case EACCES:
    case EPERM:
      throw SharedMemoryError(err, std::string(name),
                              "permission denied: cannot " + std::string(doing) +
                                  " shared buffer " + quoted +
                                  " (its creator chose who may: shm_mode)");
    default:
      throw SharedMemoryError(
          err, std::string(name),
          "cannot " + std::string(doing) + " shared buffer " + quoted + ": " + std::strerror(err));
  }
}

void check_fits(std::size_t bytes, const char* what) {
  if (bytes == 0) throw CapacityError("cannot map an empty region");
  const std::size_t physical = physical_memory_bytes();
  if (physical != 0 && bytes > physical) {
    throw CapacityError(std::string(what) + " needs " + std::to_string(bytes) +
                        " bytes but this machine has " + std::to_string(physical) +
                        " bytes of physical memory");
  }
}

void advise_huge_pages([[maybe_unused]] void* base, [[maybe_unused]] std::size_t bytes) noexcept {
#ifdef MADV_HUGEPAGE
  // Sampling touches rows at random: with 2 MiB pages most of those touches stop missing the TLB.
  // Only a hint (Linux; for shared memory only if shmem_enabled allows); where the kernel
  // declines, nothing changes.
  ::madvise(base, bytes, MADV_HUGEPAGE);
#endif
}

// Commits every page of the shared-memory object `fd` now (Linux): tmpfs otherwise accepts any
// size and kills the process with SIGBUS when a page it cannot supply is first written, which
// another buffer or program filling /dev/shm after this check could cause. Returns 0, or the
// error (ENOSPC: /dev/shm cannot hold it). Where the file system cannot preallocate (or off
// Linux) pages stay lazily committed, and 0 is returned.
int commit_pages([[maybe_unused]] int fd, [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(__linux__)
  int err = 0;
  do {
    err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  } while (err == EINTR);
  if (err == EINVAL || err == EOPNOTSUPP) return 0;
  return err;
#else
  return 0;
#endif
}

CapacityError shm_full(std::string_view name, std::size_t bytes, const std::string& free) {
  return CapacityError("shared buffer '" + std::string(name) + "' needs " + std::to_string(bytes) +
                       " bytes but /dev/shm has " + free +
                       " (in Docker, raise its size with --shm-size, e.g. docker run "
                       "--shm-size=2g; or make the buffer smaller)");
}

// Whether the shared-memory name `path` ("/" + name) refers to the object (device, inode) now.
bool names_object(const char* path, std::uint64_t device, std::uint64_t inode) noexcept {
  struct stat st {};
#if defined(__linux__)
  // Needs no permission on the object itself (its mode may not let even its owner read it).
  char file[sizeof("/dev/shm") + kMaxSharedNameLength + 1] = "/dev/shm";
  const std::size_t length = ::strnlen(path, kMaxSharedNameLength + 1);
  std::memcpy(file + sizeof("/dev/shm") - 1, path, length);
  file[sizeof("/dev/shm") - 1 + length] = '\0';
  if (::stat(file, &st) != 0) return false;
#else
  const int fd = ::shm_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return false;  // gone, or unreadable: not provably ours, so left alone
  const bool stated = ::fstat(fd, &st) == 0;
  ::close(fd);
  if (!stated) return false;
#endif
  return static_cast<std::uint64_t>(st.st_dev) == device &&
         static_cast<std::uint64_t>(st.st_ino) == inode;
}

}  // namespace

std::size_t physical_memory_bytes() noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_size);
}

void validate_shared_name(std::string_view name) {
  if (name.empty()) throw std::invalid_argument("a shared buffer name must not be empty");
  if (name.size() > kMaxSharedNameLength) {
    throw std::invalid_argument("shared buffer name '" + std::string(name) + "' is " +
                                std::to_string(name.size()) + " characters long; at most " +
                                std::to_string(kMaxSharedNameLength) + " are allowed");
  }
  const bool valid_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
  if (!valid_chars || name.front() == '.') {
    throw std::invalid_argument("shared buffer name '" + std::string(name) +
                                "' must use only letters, digits, '_', '-' and '.', and not "
                                "start with '.'");
  }
}

Region Region::allocate_private(std::size_t bytes) {
  check_fits(bytes, "buffer");
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    throw CapacityError("cannot map " + std::to_string(bytes) + " bytes: " + std::strerror(err));
  }
  advise_huge_pages(base, bytes);
  return Region(static_cast<std::byte*>(base), bytes);
}

Region Region::create_shared(std::string_view name, std::size_t bytes, std::uint32_t mode) {
  const std::string path = posix_name(name);
  check_fits(bytes, "shared buffer");
#if defined(__linux__)
  // A quick refusal before anything is created; commit_pages below is what guarantees it.
  struct statvfs fs {};
  if (::statvfs("/dev/shm", &fs) == 0) {
    const std::size_t available = static_cast<std::size_t>(fs.f_bavail) * fs.f_frsize;
    if (bytes > available) throw shm_full(name, bytes, std::to_string(available) + " bytes free");
  }
#endif
  const int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                            static_cast<mode_t>(mode & 0777));
  if (fd < 0) throw_open_error(errno, name, "create");
  // From here on a failure removes the name again: nothing half-made is left behind.
  const auto fail = [&](int err, const char* doing) {
    ::close(fd);
    ::shm_unlink(path.c_str());
    throw SharedMemoryError(err, std::string(name),
                            "cannot " + std::string(doing) + " shared buffer '" +
                                std::string(name) + "': " + std::strerror(err));
  };
  // shm_open applies the umask; the caller asked for exactly `mode`.
  if (::fchmod(fd, static_cast<mode_t>(mode & 0777)) != 0) fail(errno, "set the permissions of");
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) fail(errno, "size");
  if (const int err = commit_pages(fd, bytes); err != 0) {
    if (err != ENOSPC) fail(err, "commit the memory of");
    ::close(fd);
    ::shm_unlink(path.c_str());
    throw shm_full(name, bytes, "not that much free");
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) fail(errno, "map");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::munmap(base, bytes);
    fail(err, "inspect");
  }
  advise_huge_pages(base, bytes);
  Region region(static_cast<std::byte*>(base), bytes);
  region.name_ = std::string(name);
  region.owns_name_ = true;
  region.creator_pid_ = process::current_pid();
  region.mode_ = static_cast<std::uint32_t>(st.st_mode & 0777);
  region.owner_uid_ = static_cast<std::uint32_t>(st.st_uid);
  region.fd_ = fd;
  region.device_ = static_cast<std::uint64_t>(st.st_dev);
  region.inode_ = static_cast<std::uint64_t>(st.st_ino);
  return region;
}

Region Region::attach_shared(std::string_view name, Access access, Owner owner) {
  const std::string path = posix_name(name);
  const bool read_only = access == Access::kReadOnly;
  const int fd = ::shm_open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
  if (fd < 0) throw_open_error(errno, name, read_only ? "read" : "open for reading and writing");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_open_error(err, name, "inspect");
  }
  if (owner == Owner::kSelf && st.st_uid != ::geteuid()) {
    ::close(fd);
    throw SharedMemoryError(
        EPERM, std::string(name),
        "shared buffer '" + std::string(name) + "' belongs to uid " + std::to_string(st.st_uid) +
            ", not to this process's uid " + std::to_string(::geteuid()) +
            ": another user could read and inject its transitions. If you trust that user, "
            "attach with allow_other_owner=True (C++: Region::Owner::kAnyone)");
  }
  const auto bytes = static_cast<std::size_t>(st.st_size);
  void* base = nullptr;
  if (bytes > 0) {
    base =
        ::mmap(nullptr, bytes, read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw_open_error(err, name, "map");
    }
    if (!read_only) advise_huge_pages(base, bytes);
  }
  Region region(static_cast<std::byte*>(base), bytes);
  region.name_ = std::string(name);
  region.mode_ = static_cast<std::uint32_t>(st.st_mode & 0777);
  region.owner_uid_ = static_cast<std::uint32_t>(st.st_uid);
  region.fd_ = fd;
  return region;
}

void unlink_shared(std::string_view name) {
  const std::string path = posix_name(name);
  if (::shm_unlink(path.c_str()) != 0) throw_open_error(errno, name, "remove");
}

std::vector<std::string> list_shared() {
#if defined(__linux__)
  std::vector<std::string> names;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) {
    const int err = errno;
    throw std::runtime_error(std::string("cannot list /dev/shm: ") + std::strerror(err));
  }
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN) continue;
    try {
      validate_shared_name(name);
    } catch (const std::invalid_argument&) {
      continue;  // not a name this library could have made ('.', '..', odd characters)
    }
    names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
#else
  throw std::runtime_error(
      "this OS offers no way to list shared-memory objects; give the buffer's name");
#endif
}

Region::Region(Region&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      name_(std::move(other.name_)),
      owns_name_(std::exchange(other.owns_name_, false)),
      creator_pid_(other.creator_pid_),
      mode_(other.mode_),
      owner_uid_(other.owner_uid_),
      fd_(std::exchange(other.fd_, -1)),
      device_(other.device_),
      inode_(other.inode_) {
  other.name_.clear();
}

Region& Region::operator=(Region&& other) noexcept {
  if (this != &other) {
    release();
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    name_ = std::move(other.name_);
    other.name_.clear();
    owns_name_ = std::exchange(other.owns_name_, false);
    creator_pid_ = other.creator_pid_;
    mode_ = other.mode_;
    owner_uid_ = other.owner_uid_;
    fd_ = std::exchange(other.fd_, -1);
    device_ = other.device_;
    inode_ = other.inode_;
  }
  return *this;
}

Region::~Region() { release(); }

bool Region::unlink_name() noexcept {
  // A child that inherited the region through fork() never removes its parent's name.
  if (!owns_name_ || process::current_pid() != creator_pid_) return false;
  owns_name_ = false;
  char path[kMaxSharedNameLength + 2] = "/";
  name_.copy(path + 1, kMaxSharedNameLength);
  // Someone may have removed the name and created another object under it since: that one is
  // not ours to remove. (A removal and re-creation between this check and the unlink can still
  // slip through; POSIX offers no unlink-if-this-object.)
  if (!names_object(path, device_, inode_)) return false;
  return ::shm_unlink(path) == 0;
}

void Region::release() noexcept {
  unlink_name();
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  base_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

}  // namespace replay_buffer
