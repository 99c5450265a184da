// Buffers in named shared memory: create and attach, lifetime of the name, permissions, header
// validation, and processes (fork) writing and reading one buffer.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "replay_buffer/selectors/priority_state.hpp"
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "shm_test_support.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::out_bytes;
using testing::run_in_child;
using testing::shm_exists;
using testing::ShmName;

Schema schema() { return Schema({{"id", DType::kInt64, {}}, {"obs", DType::kFloat32, {3}}}); }

BufferOptions options(std::size_t capacity = 16, Strategy strategy = Strategy::kUniform) {
  return {.capacity = capacity,
          .seed = 7,
          .strategy = strategy,
          .alpha = 0.7,
          .beta = 0.5,
          .eps = 0.01};
}

void add_ids(Buffer& buffer, std::int64_t first, std::size_t count) {
  std::vector<std::int64_t> ids(count);
  std::iota(ids.begin(), ids.end(), first);
  std::vector<float> obs(count * 3);
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t j = 0; j < 3; ++j) obs[i * 3 + j] = static_cast<float>(ids[i] * 10 + j);
  }
  const std::array<FieldBytes, 2> columns{bytes_of(ids), bytes_of(obs)};
  (void)buffer.add_batch(columns, count);
}

// Samples `n` rows and checks each is whole; returns their ids.
std::vector<std::int64_t> sample_ids(Buffer& buffer, std::size_t n) {
  std::vector<std::int64_t> ids(n);
  std::vector<float> obs(n * 3);
  std::vector<std::uint64_t> keys(n);
  const std::array<FieldOut, 2> out{out_bytes(ids), out_bytes(obs)};
  buffer.sample(n, out, keys);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(obs[i * 3 + j], static_cast<float>(ids[i] * 10 + j)) << "torn row";
    }
  }
  return ids;
}

TEST(SharedBuffer, AttachSeesTheSameBuffer) {
  const ShmName name;
  Buffer creator(schema(), options(16, Strategy::kProportional), SharedMemory{name});
  add_ids(creator, 0, 10);
  Buffer attached = Buffer::attach(name);
  EXPECT_EQ(attached.schema(), creator.schema());
  EXPECT_EQ(attached.capacity(), 16u);
  EXPECT_EQ(attached.strategy(), Strategy::kProportional);
  EXPECT_EQ(attached.seed(), 7u);
  EXPECT_DOUBLE_EQ(attached.alpha(), 0.7);
  EXPECT_DOUBLE_EQ(attached.eps(), 0.01);
  EXPECT_DOUBLE_EQ(attached.beta(), 0.5);
  EXPECT_EQ(attached.size(), 10u);
  EXPECT_EQ(attached.region_bytes(), creator.region_bytes());
  EXPECT_EQ(attached.shared_name(), name.str());
  EXPECT_FALSE(attached.owns_shared_name());
  EXPECT_TRUE(creator.owns_shared_name());
  for (const std::int64_t id : sample_ids(attached, 64)) EXPECT_LT(id, 10);
  // Writes from either side are seen by the other, priorities included.
  add_ids(attached, 10, 2);
  EXPECT_EQ(creator.size(), 12u);
  attached.set_beta(0.9);
  EXPECT_DOUBLE_EQ(creator.beta(), 0.9);
  const std::vector<std::uint64_t> keys{3, 11};
  EXPECT_EQ(attached.update_priorities(keys, std::vector<double>{2.0, 0.5}), 2u);
  std::vector<double> stored(2);
  creator.priorities(keys, stored);
  EXPECT_DOUBLE_EQ(stored[0], std::pow(2.0 + 0.01, 0.7));
  EXPECT_DOUBLE_EQ(stored[1], std::pow(0.5 + 0.01, 0.7));
  (void)creator.check_consistency();
}

TEST(SharedBuffer, RankBuffersAttachToo) {
  const ShmName name;
  Buffer creator(schema(), options(32, Strategy::kRank), SharedMemory{name});
  add_ids(creator, 0, 32);
  Buffer attached = Buffer::attach(name);
  std::vector<std::uint64_t> keys(32);
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<double> td(32);
  std::iota(td.begin(), td.end(), 1.0);
  EXPECT_EQ(attached.update_priorities(keys, td), 32u);
  (void)sample_ids(creator, 256);
  (void)attached.check_consistency();
}

TEST(SharedBuffer, NamesAreChecked) {
  for (const std::string bad : {"", "a/b", "/abc", ".hidden", "sp ace", "x\n"}) {
    EXPECT_THROW((void)Buffer(schema(), options(), SharedMemory{bad}), std::invalid_argument)
        << bad;
    EXPECT_THROW((void)Buffer::attach(bad), std::invalid_argument) << bad;
  }
  EXPECT_THROW((void)Buffer(schema(), options(), SharedMemory{std::string(201, 'a')}),
               std::invalid_argument);
}

TEST(SharedBuffer, CreatingAnExistingNameFails) {
  const ShmName name;
  const Buffer first(schema(), options(), SharedMemory{name});
  try {
    const Buffer second(schema(), options(), SharedMemory{name});
    FAIL() << "created twice";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.error(), EEXIST);
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(first.owns_shared_name());  // the failed attempt did not remove the first's name
  EXPECT_TRUE(shm_exists(name));
}

TEST(SharedBuffer, AttachingAMissingNameFails) {
  const ShmName name;
  try {
    (void)Buffer::attach(name);
    FAIL() << "attached to nothing";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.error(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("no shared buffer named"), std::string::npos);
  }
}

TEST(SharedBuffer, TheCreatorRemovesTheNameUnlessKept) {
  const ShmName removed;
  const ShmName kept;
  {
    const Buffer a(schema(), options(), SharedMemory{removed});
    const Buffer b(schema(), options(), SharedMemory{.name = kept, .keep = true});
    EXPECT_TRUE(shm_exists(removed));
    EXPECT_FALSE(b.owns_shared_name());
  }
  EXPECT_FALSE(shm_exists(removed));
  EXPECT_TRUE(shm_exists(kept));
  // A kept region can be attached again later, with its rows.
  Buffer again = Buffer::attach(kept);
  EXPECT_EQ(again.capacity(), 16u);
}

TEST(SharedBuffer, AttachedProcessesOutliveTheName) {
  const ShmName name;
  auto creator = std::make_unique<Buffer>(schema(), options(), SharedMemory{name});
  add_ids(*creator, 0, 5);
  Buffer attached = Buffer::attach(name);
  creator.reset();
  EXPECT_FALSE(shm_exists(name));
  add_ids(attached, 5, 20);
  for (const std::int64_t id : sample_ids(attached, 64)) EXPECT_GE(id, 9);
  EXPECT_THROW((void)Buffer::attach(name), SharedMemoryError);
}

TEST(SharedBuffer, UnlinkNowKeepsTheMapping) {
  const ShmName name;
  Buffer creator(schema(), options(), SharedMemory{name});
  EXPECT_TRUE(creator.unlink_shared_name());
  EXPECT_FALSE(creator.unlink_shared_name());  // once only: the name may be someone else's now
  EXPECT_FALSE(shm_exists(name));
  add_ids(creator, 0, 3);
  EXPECT_EQ(sample_ids(creator, 4).size(), 4u);
}

TEST(SharedBuffer, ModeIsExactlyWhatWasAsked) {
  const ShmName owner_only;
  const ShmName group;
  const Buffer a(schema(), options(), SharedMemory{owner_only});
  const mode_t old_umask = ::umask(077);  // would narrow 0660 to 0600 if shm_open's mode stuck
  const Buffer b(schema(), options(), SharedMemory{.name = group, .mode = 0660});
  ::umask(old_umask);
  EXPECT_EQ(Region::attach_shared(owner_only, Region::Access::kReadOnly).mode(), 0600u);
  EXPECT_EQ(Region::attach_shared(group, Region::Access::kReadOnly).mode(), 0660u);
}

TEST(SharedBuffer, AttachingWithoutPermissionFailsClearly) {
  const ShmName name;
  const Buffer creator(schema(), options(), SharedMemory{name});
  // Root may open anything whatever the mode, so the check runs as an unprivileged user: in a
  // child that gives up root, or in this process when it is not root.
  const int code = run_in_child([&] {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 3;
    try {
      (void)Buffer::attach(name);
    } catch (const SharedMemoryError& e) {
      const bool named = std::string(e.what()).find(name.str()) != std::string::npos;
      return e.error() == EACCES && named ? 0 : 4;
    }
    return 5;
  });
  EXPECT_EQ(code, 0);
}

// Region bytes of `name`, mapped read-write, for corrupting them.
struct Raw {
  explicit Raw(const std::string& name) : region(Region::attach_shared(name)) {}
  RegionHeader& header() { return *reinterpret_cast<RegionHeader*>(region.data()); }
  FieldRecord& record(std::size_t i) {
    return reinterpret_cast<FieldRecord*>(region.data() + header().fields_offset)[i];
  }
  Region region;
};

void expect_invalid(const std::string& name, const std::string& message) {
  try {
    (void)Buffer::attach(name, std::chrono::milliseconds(0));
    ADD_FAILURE() << "attached to a region that should fail with: " << message;
  } catch (const InvalidRegionError& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
  // inspect() reads the header the same way.
  EXPECT_THROW((void)Buffer::inspect(name), InvalidRegionError);
}

TEST(SharedBuffer, CorruptHeadersAreRefused) {
  const std::vector<std::pair<std::string, std::function<void(Raw&)>>> cases{
      {"not a replay buffer region", [](Raw& r) { r.header().magic = 0x1234; }},
      {"layout version 1", [](Raw& r) { r.header().layout_version = 1; }},
      {"truncated or resized", [](Raw& r) { r.header().total_bytes += 64; }},
      {"0 fields", [](Raw& r) { r.header().field_count = 0; }},
      {"unknown strategy", [](Raw& r) { r.header().strategy = 9; }},
      {"alpha is", [](Raw& r) { r.header().alpha = -1.0; }},
      {"capacity 0", [](Raw& r) { r.header().capacity = 0; }},
      {"writer entries", [](Raw& r) { r.header().writer_slots = 5000; }},
      {"the writer registry at offset", [](Raw& r) { r.header().writers_offset += 64; }},
      {"NUL-terminated",
       [](Raw& r) { std::memset(r.record(0).name, 'x', sizeof(FieldRecord::name)); }},
      {"unknown dtype", [](Raw& r) { r.record(1).dtype = 99; }},
      {"9 dimensions", [](Raw& r) { r.record(1).ndim = 9; }},
      {"has dimension 0", [](Raw& r) { r.record(1).dims[0] = 0; }},
      {"says rows of", [](Raw& r) { r.record(1).row_bytes = 4; }},
      {"column 'obs' at offset", [](Raw& r) { r.record(1).column_offset += 64; }},
      {"appears twice", [](Raw& r) { std::strcpy(r.record(1).name, "id"); }},
      {"the sequence words at offset", [](Raw& r) { r.header().seq_offset = 0; }},
  };
  for (const auto& [message, corrupt] : cases) {
    const ShmName name;
    const Buffer creator(schema(), options(), SharedMemory{name});
    Raw raw(name);
    corrupt(raw);
    SCOPED_TRACE(message);
    expect_invalid(name, message);
  }
}

TEST(SharedBuffer, TruncatedRegionsAreRefused) {
  const ShmName name;
  const Buffer creator(schema(), options(1000), SharedMemory{name});
  const int fd = ::shm_open(("/" + name.str()).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  ::close(fd);
  expect_invalid(name, "truncated or resized");
  // Shorter than a header.
  const int fd2 = ::shm_open(("/" + name.str()).c_str(), O_RDWR, 0);
  ASSERT_EQ(::ftruncate(fd2, 100), 0);
  ::close(fd2);
  try {
    (void)Buffer::attach(name, std::chrono::milliseconds(0));
    ADD_FAILURE() << "attached to 100 bytes";
  } catch (const InvalidRegionError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated: 100 bytes"), std::string::npos) << e.what();
  }
}

TEST(SharedBuffer, UninitialisedRegionsTimeOut) {
  const ShmName name;
  const Region raw = Region::create_shared(name, 1 << 16);
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)Buffer::attach(name, std::chrono::milliseconds(50));
    ADD_FAILURE() << "attached to zeros";
  } catch (const InvalidRegionError& e) {
    EXPECT_NE(std::string(e.what()).find("not initialised"), std::string::npos) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}

TEST(SharedBuffer, AttachWaitsForTheMagic) {
  // A region whose creator is still at work: everything written but the magic, which comes
  // later. The attacher must wait for it, then see the whole region.
  const ShmName name;
  const ShmName model_name;
  Buffer model(schema(), options(), SharedMemory{model_name});
  add_ids(model, 0, 4);
  Region raw = Region::create_shared(name, model.region_bytes());
  const Region model_bytes = Region::attach_shared(model_name);
  std::memcpy(raw.data() + 8, model_bytes.data() + 8, model.region_bytes() - 8);
  std::thread creator([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    publish_region_header(raw.bytes());
  });
  Buffer attached = Buffer::attach(name, std::chrono::seconds(5));
  creator.join();
  EXPECT_EQ(attached.size(), 4u);
  for (const std::int64_t id : sample_ids(attached, 16)) EXPECT_LT(id, 4);
}

TEST(SharedBuffer, InspectReadsWithoutJoining) {
  const ShmName name;
  Buffer creator(schema(), options(8, Strategy::kProportional), SharedMemory{name});
  add_ids(creator, 0, 11);
  const SharedBufferInfo info = Buffer::inspect(name);
  EXPECT_EQ(info.name, name.str());
  EXPECT_EQ(info.bytes, creator.region_bytes());
  EXPECT_EQ(info.mode, 0600u);
  EXPECT_EQ(info.description.capacity, 8u);
  EXPECT_EQ(info.description.schema, schema());
  EXPECT_EQ(info.size, 8u);
  EXPECT_EQ(info.next_key, 11u);
  EXPECT_DOUBLE_EQ(info.beta, 0.5);
  EXPECT_EQ(info.creator, process::Liveness::kAlive);
  EXPECT_EQ(info.description.creator_pid, static_cast<std::uint64_t>(::getpid()));
  EXPECT_EQ(info.writers.live, 1u);  // this process, registered by its first add
  EXPECT_EQ(info.writers.dead, 0u);
}

TEST(SharedBuffer, ForkedChildrenWriteAndTheParentReads) {
  const ShmName name;
  Buffer creator(schema(), options(64), SharedMemory{name});
  add_ids(creator, 0, 1);  // registers this process as a writer before the fork
  // One child uses the Buffer it inherited, one attaches by name; both add 20 rows.
  EXPECT_EQ(run_in_child([&] {
              add_ids(creator, 100, 20);
              return 0;
            }),
            0);
  EXPECT_EQ(run_in_child([&] {
              Buffer attached = Buffer::attach(name);
              add_ids(attached, 200, 20);
              return 0;
            }),
            0);
  EXPECT_EQ(creator.size(), 41u);
  EXPECT_TRUE(shm_exists(name));  // the children never removed the parent's name
  const ConsistencyReport report = creator.check_consistency();
  EXPECT_EQ(report.readable, 41u);
  EXPECT_EQ(report.abandoned, 0u);
  // The inheriting child registered under its own id and exited without releasing it (it
  // _exit()ed); the one that attached released its entry when its Buffer was destroyed.
  const SharedBufferInfo info = Buffer::inspect(name);
  EXPECT_EQ(info.writers.live, 1u);
  EXPECT_EQ(info.writers.dead, 1u);
}

TEST(SharedBuffer, ConsistencyCheckFindsACorruptTree) {
  const ShmName name;
  Buffer creator(schema(), options(100, Strategy::kProportional), SharedMemory{name});
  add_ids(creator, 0, 100);
  (void)creator.check_consistency();
  Raw raw(name);
  // The proportional selector's part: [PriorityControl][sum tree].
  auto* tree = reinterpret_cast<double*>(raw.region.data() + raw.header().selector_offset +
                                         align_up(sizeof(PriorityControl)));
  tree[0] += 1.0;  // the total
  try {
    (void)creator.check_consistency();
    FAIL() << "a wrong total passed";
  } catch (const InvalidRegionError& e) {
    EXPECT_NE(std::string(e.what()).find("sum tree: total"), std::string::npos) << e.what();
  }
  tree[0] -= 1.0;
  auto* seq = reinterpret_cast<std::uint32_t*>(raw.region.data() + raw.header().seq_offset);
  seq[5] = sync::published(7);  // a lap nobody claimed
  EXPECT_THROW((void)creator.check_consistency(), InvalidRegionError);
}

// Move assignment used to unmap the old region before releasing the writer claim that lives in
// it (a use after unmap that ASan reports). Now the whole state goes at once, in order.
TEST(SharedBuffer, MoveAssignmentReleasesTheClaimBeforeUnmapping) {
  const ShmName first;
  const ShmName second;
  Buffer a(schema(), options(), SharedMemory{first, 0600, true});
  Buffer b(schema(), options(), SharedMemory{second, 0600, true});
  add_ids(a, 0, 4);  // both have claimed writer entries
  add_ids(b, 0, 4);
  a = std::move(b);
  EXPECT_EQ(a.shared_name(), second.str());
  EXPECT_EQ(Buffer::inspect(first).writers.live, 0u);  // a's old claim was released
  add_ids(a, 4, 4);
  EXPECT_EQ(a.size(), 8u);
}

}  // namespace
}  // namespace replay_buffer
