// The writer registry, and what it is for: a writer takes over a slot whose writer process died
// mid-copy, and samplers retire such slots rather than spin on them.
#include "replay_buffer/writers.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/errors.hpp"
#include "shm_test_support.hpp"
#include "test_support.hpp"

namespace replay_buffer {
namespace {

using testing::bytes_of;
using testing::out_bytes;
using testing::reap;
using testing::run_in_child;
using testing::ShmName;
using testing::spawn_and_die;

// Registry entries in memory that forked children share.
class SharedEntries {
 public:
  explicit SharedEntries(std::size_t n) : n_(n) {
    void* p = ::mmap(nullptr, n * sizeof(WriterEntry), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    entries_ = static_cast<WriterEntry*>(p);
  }
  ~SharedEntries() { ::munmap(entries_, n_ * sizeof(WriterEntry)); }
  [[nodiscard]] WriterRegistry registry() const { return WriterRegistry({entries_, n_}); }

 private:
  std::size_t n_;
  WriterEntry* entries_;
};

TEST(WriterRegistry, ClaimReleaseAndIncarnations) {
  const SharedEntries entries(4);
  WriterRegistry registry = entries.registry();
  const sync::WriterId first = registry.claim();
  EXPECT_EQ(WriterRegistry::index_of(first), 0u);
  EXPECT_EQ(WriterRegistry::incarnation_of(first), 1u);
  EXPECT_NE(sync::writing_by(first), sync::kAbandoned);
  EXPECT_FALSE(registry.known_dead(first));
  EXPECT_EQ(registry.liveness(first), process::Liveness::kAlive);
  const sync::WriterId second = registry.claim();
  EXPECT_EQ(WriterRegistry::index_of(second), 1u);
  registry.release(first);
  EXPECT_TRUE(registry.known_dead(first));
  EXPECT_EQ(registry.liveness(first), process::Liveness::kDead);
  // The entry is claimed again under a new incarnation: the old id stays dead.
  const sync::WriterId again = registry.claim();
  EXPECT_EQ(WriterRegistry::index_of(again), 0u);
  EXPECT_EQ(WriterRegistry::incarnation_of(again), 2u);
  EXPECT_TRUE(registry.known_dead(first));
  EXPECT_FALSE(registry.known_dead(again));
  EXPECT_TRUE(registry.check().empty());
}

TEST(WriterRegistry, ADeadProcessIsFoundDeadEvenAsAZombie) {
  const SharedEntries entries(4);
  WriterRegistry registry = entries.registry();
  sync::WriterId* id = static_cast<sync::WriterId*>(::mmap(
      nullptr, sizeof(sync::WriterId), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  const pid_t child = spawn_and_die([&] { *id = registry.claim(); });
  // Not reaped yet: the child is a zombie, which kill(pid, 0) still finds.
  EXPECT_EQ(::kill(child, 0), 0);
  EXPECT_FALSE(registry.known_dead(*id));
  const WriterRegistry::Census before = registry.census();
  EXPECT_EQ(before.dead, 1u);
  EXPECT_EQ(registry.liveness(*id), process::Liveness::kDead);
  EXPECT_TRUE(registry.known_dead(*id));  // freed by the check
  reap(child);
  ::munmap(id, sizeof(sync::WriterId));
}

TEST(WriterRegistry, EntriesOfDeadProcessesAreReclaimedWhenFull) {
  const SharedEntries entries(2);
  WriterRegistry registry = entries.registry();
  for (int i = 0; i < 2; ++i) reap(spawn_and_die([&] { (void)registry.claim(); }));
  const sync::WriterId mine = registry.claim();  // both entries held by dead processes
  EXPECT_FALSE(registry.known_dead(mine));
  (void)registry.claim();
  EXPECT_THROW((void)registry.claim(), CapacityError);  // both held by this live process
}

TEST(WriterClaim, AForkedChildClaimsItsOwnId) {
  const SharedEntries entries(4);
  WriterClaim parent(entries.registry());
  const sync::SeqWord parent_word = parent.word();
  EXPECT_EQ(parent.word(), parent_word);
  const int code = run_in_child([&] {
    const sync::SeqWord child_word = parent.word();  // the inherited claim, in a new process
    if (child_word == parent_word) return 3;
    return 0;  // destructors do not run: the child's entry stays claimed until found dead
  });
  EXPECT_EQ(code, 0);
  WriterRegistry registry = entries.registry();
  EXPECT_FALSE(registry.known_dead(sync::writer_of(parent_word)));
  EXPECT_EQ(registry.census().live, 1u);
  EXPECT_EQ(registry.census().dead, 1u);
  // A child whose claim is destroyed releases only its own entry, never the parent's.
  EXPECT_EQ(run_in_child([&] {
              {
                WriterClaim inherited(std::move(parent));
                (void)inherited.word();
              }
              return 0;
            }),
            0);
  EXPECT_FALSE(registry.known_dead(sync::writer_of(parent_word)));
}

TEST(WriterClaim, PrivateBuffersUseTheSharedPrivateId) {
  WriterClaim claim(std::nullopt);
  EXPECT_EQ(claim.word(), sync::writing_by(sync::kPrivateWriter));
  EXPECT_EQ(claim.registry(), nullptr);
}

// A shared buffer of int64 ids, and a raw view of its region for playing a writer that dies.
struct Fixture {
  explicit Fixture(std::size_t capacity, Strategy strategy = Strategy::kUniform, double eps = 1e-6)
      : buffer(Schema({{"id", DType::kInt64, {}}, {"check", DType::kInt64, {}}}),
               BufferOptions{.capacity = capacity, .seed = 1, .strategy = strategy, .eps = eps},
               SharedMemory{name}),
        raw(Region::attach_shared(name)),
        layout(read_region_header(raw.bytes(), name).layout) {}

  void add(std::int64_t first, std::size_t count) {
    std::vector<std::int64_t> ids(count);
    std::iota(ids.begin(), ids.end(), first);
    std::vector<std::int64_t> checks(count);
    for (std::size_t i = 0; i < count; ++i) checks[i] = ids[i] * 3 + 1;
    const std::array<FieldBytes, 2> columns{bytes_of(ids), bytes_of(checks)};
    (void)buffer.add_batch(columns, count);
  }

  std::vector<std::int64_t> sample(std::size_t n) {
    std::vector<std::int64_t> ids(n);
    std::vector<std::int64_t> checks(n);
    const std::array<FieldOut, 2> out{out_bytes(ids), out_bytes(checks)};
    buffer.sample(n, out, {});
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(checks[i], ids[i] * 3 + 1) << "torn row";
    return ids;
  }

  sync::SeqWord* seq() { return reinterpret_cast<sync::SeqWord*>(raw.data() + layout.seq_offset); }
  WriterRegistry registry() {
    return WriterRegistry(
        {reinterpret_cast<WriterEntry*>(raw.data() + layout.writers_offset), layout.writer_slots});
  }
  // The registry as a Buffer sees it: claims lock their entry through the region's descriptor.
  WriterRegistry locked_registry() {
    return WriterRegistry(
        {reinterpret_cast<WriterEntry*>(raw.data() + layout.writers_offset), layout.writer_slots},
        raw.fd(), layout.writers_offset);
  }

  // A child process claims a writer id as a Buffer does, marks `slots` as mid-write under it,
  // forks `idle_children` children that never write (and sleep), then execs /bin/sleep: its pid
  // and start time stay those of a live process. Returns once the exec happened (or the child
  // ended); the caller kills and reaps the pid returned.
  pid_t exec_writing(std::vector<std::size_t> slots, int idle_children = 0) {
    int done[2];
    // The write end closes at the child's exec (close-on-exec): that is how the caller learns
    // the exec happened. pipe + fcntl rather than Linux's pipe2, so the test builds everywhere.
    if (::pipe(done) != 0 || ::fcntl(done[0], F_SETFD, FD_CLOEXEC) != 0 ||
        ::fcntl(done[1], F_SETFD, FD_CLOEXEC) != 0) {
      throw std::runtime_error("pipe");
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(done[0]);
      ::alarm(60);
      ::setpgid(0, 0);  // one group with its children, for the caller to kill
      WriterClaim claim(locked_registry());
      const sync::SeqWord word = claim.word();
      for (const std::size_t slot : slots) {
        sync::seq_ref(seq()[slot]).store(word, std::memory_order_release);
      }
      for (int i = 0; i < idle_children; ++i) {
        if (::fork() == 0) {
          ::close(done[1]);
          ::alarm(60);
          ::pause();  // holds every descriptor it inherited, as a forked worker would
          ::_exit(0);
        }
      }
      ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(done[1]);
    char byte = 0;
    while (::read(done[0], &byte, 1) < 0 && errno == EINTR) {
    }  // end of file: the exec closed the child's end
    ::close(done[0]);
    return pid;
  }

  // A child process registers as a writer, marks `slots` as mid-write under its id, and dies
  // there (SIGKILL), as a writer killed in the middle of a copy would. Returns its pid, unreaped.
  pid_t die_writing(std::vector<std::size_t> slots) {
    return spawn_and_die([&] {
      const sync::WriterId id = registry().claim();
      for (const std::size_t slot : slots) {
        sync::seq_ref(seq()[slot]).store(sync::writing_by(id), std::memory_order_release);
      }
    });
  }

  ShmName name;
  Buffer buffer;
  Region raw;
  Layout layout;
};

TEST(DeadWriters, TheNextWriterTakesTheSlotOver) {
  ::alarm(30);  // a writer waiting forever on the dead one would hang here
  Fixture f(8);
  f.add(0, 8);
  const pid_t child = f.die_writing({3, 5});
  (void)f.sample(64);  // readers skip the two slots
  // Lap 1 reaches slots 3 and 5: the first wait asks the OS (a zombie is dead) and frees the
  // dead writer's entry, so the second slot is taken over without waiting.
  const auto start = std::chrono::steady_clock::now();
  f.add(8, 8);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, std::chrono::seconds(1));
  const ConsistencyReport report = f.buffer.check_consistency();
  EXPECT_EQ(report.readable, 8u);
  EXPECT_EQ(report.abandoned, 0u);
  EXPECT_EQ(report.takeovers, 2u);
  for (const std::int64_t id : f.sample(256)) EXPECT_GE(id, 8);
  reap(child);
  ::alarm(0);
}

#if defined(__linux__)
// Open-file-description locks (Linux): elsewhere writers are judged by pid alone.
TEST(WriterRegistry, ALockedClaimIsAliveUntilItsDescriptorCloses) {
  ShmName name;
  const Buffer buffer(Schema({{"id", DType::kInt64, {}}}), BufferOptions{.capacity = 4},
                      SharedMemory{name});
  const Region raw = Region::attach_shared(name);
  const Layout layout = read_region_header(raw.bytes(), name).layout;
  WriterRegistry registry(
      {reinterpret_cast<WriterEntry*>(raw.data() + layout.writers_offset), layout.writer_slots},
      raw.fd(), layout.writers_offset);
  ClaimLock lock;
  const sync::WriterId id = registry.claim(&lock);
  // Probed from this very process: the probe's description is not the lock's.
  EXPECT_EQ(registry.liveness(id), process::Liveness::kAlive);
  EXPECT_EQ(registry.census().live, 1u);
  // What exec does to the descriptor: the entry still names this live pid, but it is dead.
  lock.release();
  EXPECT_EQ(registry.census().dead, 1u);
  EXPECT_EQ(registry.liveness(id), process::Liveness::kDead);
  EXPECT_TRUE(registry.known_dead(id));
}

// A writer that execs mid-write keeps its pid and start time: only its lock tells it is gone.
void expect_taken_over_promptly(int idle_children) {
  Fixture f(8);
  f.add(0, 8);
  const pid_t writer = f.exec_writing({3, 5}, idle_children);
  // In a child with a deadline: waiting for the exec'd program (60 s) fails instead of hanging.
  const int code = run_in_child(
      [&] {
        f.add(8, 8);
        return 0;
      },
      15);
  EXPECT_EQ(code, 0) << "the next writer waited for the program the writer exec'd";
  ::kill(-writer, SIGKILL);
  ::kill(writer, SIGKILL);
  reap(writer);
  const ConsistencyReport report = f.buffer.check_consistency();
  EXPECT_EQ(report.readable, 8u);
  EXPECT_EQ(report.takeovers, 2u);
  for (const std::int64_t id : f.sample(64)) EXPECT_GE(id, 8);
}

TEST(DeadWriters, AWriterThatExecsMidWriteIsTakenOver) {
  ::alarm(60);
  expect_taken_over_promptly(0);
  ::alarm(0);
}

TEST(DeadWriters, AWriterInAnotherPidNamespaceIsJudgedByItsLock) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to make a pid namespace";
  ::alarm(60);
  Fixture f(8);
  f.add(0, 8);
  // A writer that dies mid-write in another pid namespace (another container sharing /dev/shm):
  // its pid means nothing here, so only its lock can tell it is gone.
  const int made = run_in_child([&] {
    if (::unshare(CLONE_NEWPID) != 0) return 3;
    const pid_t writer = ::fork();
    if (writer == 0) {
      WriterClaim claim(f.locked_registry());
      const sync::SeqWord word = claim.word();
      for (const std::size_t slot : {2, 6}) {
        sync::seq_ref(f.seq()[slot]).store(word, std::memory_order_release);
      }
      ::_exit(7);  // dies without releasing its claim (it is the namespace's init: no SIGKILL)
    }
    int status = 0;
    ::waitpid(writer, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : 4;
  });
  if (made == 3) GTEST_SKIP() << "cannot make a pid namespace here";
  ASSERT_EQ(made, 0);
  const int code = run_in_child(
      [&] {
        f.add(8, 8);
        return 0;
      },
      15);
  EXPECT_EQ(code, 0) << "the next writer waited for a dead writer of another pid namespace";
  EXPECT_EQ(f.buffer.check_consistency().readable, 8u);
  ::alarm(0);
}

TEST(DeadWriters, ChildrenForkedBeforeTheExecDoNotKeepItsClaimAlive) {
  ::alarm(60);
  // The children inherit the writer's descriptors; the fork closes their copy of its lock's.
  expect_taken_over_promptly(2);
  ::alarm(0);
}
#endif

TEST(DeadWriters, ReapedWritersAreTakenOverToo) {
  ::alarm(30);
  Fixture f(4);
  f.add(0, 4);
  reap(f.die_writing({0, 1, 2, 3}));
  EXPECT_EQ(f.buffer.check_consistency().abandoned, 4u);
  f.add(4, 4);
  EXPECT_EQ(f.buffer.check_consistency().readable, 4u);
  ::alarm(0);
}

TEST(DeadWriters, SamplersGiveUpOnlyWhenNothingIsReadable) {
  ::alarm(30);
  Fixture f(4);
  f.add(0, 4);
  reap(f.die_writing({0, 1, 2, 3}));
  try {
    (void)f.sample(1);
    FAIL() << "sampled a buffer with no readable row";
  } catch (const EmptyBufferError& e) {
    EXPECT_NE(std::string(e.what()).find("half-written"), std::string::npos) << e.what();
  }
  // The sampler retired the slots: the next writer takes each over at once.
  f.add(4, 1);
  EXPECT_EQ(f.sample(16), std::vector<std::int64_t>(16, 4));
  const ConsistencyReport report = f.buffer.check_consistency();
  EXPECT_EQ(report.readable, 1u);
  EXPECT_EQ(report.abandoned, 3u);
  ::alarm(0);
}

TEST(DeadWriters, PrioritizedSamplersStopDrawingAbandonedSlots) {
  ::alarm(30);
  // eps = 0 and the two readable rows at priority 0: the tree draws only the abandoned slots
  // until a sampler retires them (priority 0), then falls back to uniform draws.
  Fixture f(8, Strategy::kProportional, 0.0);
  f.add(0, 8);
  const std::vector<std::uint64_t> keys{6, 7};
  EXPECT_EQ(f.buffer.update_priorities(keys, std::vector<double>{0.0, 0.0}), 2u);
  reap(f.die_writing({0, 1, 2, 3, 4, 5}));
  for (const std::int64_t id : f.sample(64)) EXPECT_TRUE(id == 6 || id == 7) << id;
  const ConsistencyReport report = f.buffer.check_consistency();
  EXPECT_EQ(report.abandoned, 6u);
  std::vector<double> stored(2);
  f.buffer.priorities(keys, stored);
  EXPECT_EQ(stored, (std::vector<double>{0.0, 0.0}));
  // New rows in retired slots get the new-transition priority, not the retired 0.
  f.add(8, 1);
  std::vector<double> fresh(1);
  f.buffer.priorities(std::vector<std::uint64_t>{8}, fresh);
  EXPECT_EQ(fresh[0], 1.0);
  ::alarm(0);
}

}  // namespace
}  // namespace replay_buffer
