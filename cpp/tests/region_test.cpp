// Shared regions against the host: pages committed at creation, the creator's name removal that
// must spare a newer object of the same name, regions owned by other users, and corrupt bytes
// in a header that must give an error, never a crash or text that is not text.
#include "replay_buffer/region.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "replay_buffer/layout.hpp"
#include "shm_test_support.hpp"

namespace replay_buffer {
namespace {

using testing::run_in_child;
using testing::shm_exists;
using testing::ShmName;

Schema schema() { return Schema({{"id", DType::kInt64, {}}, {"obs", DType::kFloat32, {3}}}); }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

#if defined(__linux__)
TEST(Region, CreationCommitsEveryPage) {
  // Lazily committed pages are what let a full /dev/shm kill a writer with SIGBUS later.
  const ShmName name;
  constexpr std::size_t kBytes = std::size_t{8} << 20;
  const Region region = Region::create_shared(name, kBytes);
  struct stat st {};
  ASSERT_EQ(::fstat(region.fd(), &st), 0);
  EXPECT_GE(static_cast<std::size_t>(st.st_blocks) * 512, kBytes);
}
#endif

TEST(Region, TheCreatorSparesANewerObjectOfItsName) {
  const ShmName name;
  {
    Region old_creator = Region::create_shared(name, 4096);
    ASSERT_TRUE(old_creator.owns_name());
    // Someone removes the name (`replay-buffer shm rm --force`) and creates a new region there.
    unlink_shared(name);
    Region newer = Region::create_shared(name, 4096);
    newer.keep_name();
    EXPECT_FALSE(old_creator.unlink_name());
    EXPECT_TRUE(shm_exists(name));
  }
  EXPECT_TRUE(shm_exists(name));  // and neither did destroying the old creator
  // Its own name it still removes.
  const ShmName other;
  {
    const Region creator = Region::create_shared(other, 4096);
  }
  EXPECT_FALSE(shm_exists(other));
}

TEST(Region, ABufferSparesANewerBufferOfItsName) {
  const ShmName name;
  {
    Buffer old_creator(schema(), {.capacity = 8}, SharedMemory{name});
    unlink_shared(name);
    const Buffer newer(schema(), {.capacity = 8}, SharedMemory{.name = name, .keep = true});
  }
  EXPECT_NO_THROW((void)Buffer::attach(name, std::chrono::milliseconds(0)));
}

// As uid 65534 (nobody), creates `name` with mode 0666 and leaves it, as a local user squatting a
// name root's processes will attach to would. Returns the child's exit code.
int create_as_nobody(const std::string& name) {
  return run_in_child([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 3;
    Buffer squatter(schema(), {.capacity = 8}, SharedMemory{.name = name, .mode = 0666});
    squatter.keep_shared_name();
    return 0;
  });
}

TEST(Region, AttachRefusesAnotherUsersRegion) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to create a region as another user";
  const ShmName name;
  ASSERT_EQ(create_as_nobody(name), 0);
  try {
    (void)Buffer::attach(name, std::chrono::milliseconds(0));
    FAIL() << "attached to a region uid 65534 owns";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.error(), EPERM);
    const std::string what = e.what();
    EXPECT_TRUE(contains(what, "belongs to uid 65534")) << what;
    EXPECT_TRUE(contains(what, "this process's uid 0")) << what;
    EXPECT_TRUE(contains(what, name.str())) << what;
    EXPECT_TRUE(contains(what, "allow_other_owner")) << what;
  }
  EXPECT_THROW((void)Region::attach_shared(name, Region::Access::kReadOnly), SharedMemoryError);
  // An explicit opt-in shares it; inspection reads it whoever owns it.
  Buffer shared = Buffer::attach(name, std::chrono::milliseconds(0), Region::Owner::kAnyone);
  EXPECT_EQ(shared.capacity(), 8u);
  EXPECT_EQ(Buffer::inspect(name).owner_uid, 65534u);
}

TEST(Region, AnotherUserCannotJoinWithoutOptingIn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to switch to another user";
  const ShmName name;
  const Buffer creator(schema(), {.capacity = 8}, SharedMemory{.name = name, .mode = 0666});
  const int code = run_in_child([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 3;
    try {
      (void)Buffer::attach(name, std::chrono::milliseconds(0));
      return 4;
    } catch (const SharedMemoryError& e) {
      if (e.error() != EPERM || !contains(e.what(), "belongs to uid 0")) return 5;
    }
    (void)Buffer::attach(name, std::chrono::milliseconds(0), Region::Owner::kAnyone);
    return 0;
  });
  EXPECT_EQ(code, 0);
}

// Whether every byte of `text` is printable ASCII.
bool printable(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte >= 0x20 && byte < 0x7f;
  });
}

TEST(Region, CorruptNameBytesGiveAPrintableError) {
  for (const char bad : {'\xff', '\x01', ' ', '\xc3'}) {
    const ShmName name;
    const Buffer creator(schema(), {.capacity = 8}, SharedMemory{name});
    Region raw = Region::attach_shared(name);
    const auto& header = *reinterpret_cast<const RegionHeader*>(raw.data());
    auto* record = reinterpret_cast<FieldRecord*>(raw.data() + header.fields_offset);
    record[1].name[1] = bad;  // "obs" -> "o?s"
    for (int how = 0; how < 2; ++how) {
      try {
        if (how == 0) {
          (void)Buffer::attach(name, std::chrono::milliseconds(0));
        } else {
          (void)Buffer::inspect(name);
        }
        ADD_FAILURE() << "accepted a field name with byte " << int(bad);
      } catch (const InvalidRegionError& e) {
        const std::string what = e.what();
        EXPECT_TRUE(printable(what)) << what;
        EXPECT_TRUE(contains(what, "field record 1: name 'o")) << what;
        EXPECT_TRUE(contains(what, "is not a field name")) << what;
      }
    }
  }
}

}  // namespace
}  // namespace replay_buffer
