// The region locks: PidLock (the fallback where robust mutexes are missing, tested here on every
// OS) and RegionMutex, both surviving a holder that dies holding them.
#include <gtest/gtest.h>

#include "replay_buffer/selectors/priority_state.hpp"
#include <sys/mman.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/sync.hpp"
#include "shm_test_support.hpp"

namespace replay_buffer {
namespace {

using testing::reap;
using testing::ShmName;
using testing::spawn_and_die;

// A T in memory that forked children share.
template <typename T>
class Shared {
 public:
  Shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    value_ = new (p) T{};
  }
  ~Shared() { ::munmap(value_, sizeof(T)); }
  T& operator*() const { return *value_; }
  T* operator->() const { return value_; }

 private:
  T* value_;
};

TEST(PidLock, LocksAndUnlocks) {
  const Shared<sync::PidLock> lock;
  lock->init();
  EXPECT_EQ(lock->holder(), 0);
  EXPECT_FALSE(lock->lock());
  EXPECT_EQ(lock->holder(), ::getpid());
  lock->unlock();
  EXPECT_EQ(lock->holder(), 0);
}

TEST(PidLock, ExcludesThreads) {
  const Shared<sync::PidLock> lock;
  lock->init();
  long counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20'000; ++i) {
        EXPECT_FALSE(lock->lock());  // never "taken over" from a live thread of this process
        counter = counter + 1;
        lock->unlock();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter, 80'000);
}

TEST(PidLock, ExcludesProcesses) {
  const Shared<sync::PidLock> lock;
  const Shared<long> counter;
  lock->init();
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(20);
      for (int i = 0; i < 20'000; ++i) {
        if (lock->lock()) ::_exit(3);
        *counter = *counter + 1;
        lock->unlock();
      }
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (const pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(*counter, 40'000);
}

TEST(PidLock, ADeadHolderIsTakenOver) {
  ::alarm(30);
  const Shared<sync::PidLock> lock;
  lock->init();
  // Still a zombie when the parent asks for the lock, then reaped: both are dead holders.
  for (const bool reaped : {false, true}) {
    const pid_t child = spawn_and_die([&] { (void)lock->lock(); });
    EXPECT_EQ(lock->holder(), child);
    if (reaped) reap(child);
    EXPECT_TRUE(lock->lock()) << "reaped: " << reaped;
    EXPECT_EQ(lock->holder(), ::getpid());
    lock->unlock();
    EXPECT_FALSE(lock->lock());
    lock->unlock();
    if (!reaped) reap(child);
  }
  ::alarm(0);
}

TEST(RegionMutex, ADeadHolderLeavesItUsable) {
  ::alarm(30);
  const Shared<sync::RegionMutex> mutex;
  mutex->init();
  const Shared<int> locked;
  const pid_t child = spawn_and_die([&] {
    (void)mutex->lock();
    *locked = 1;
  });
  EXPECT_EQ(*locked, 1);
  EXPECT_TRUE(mutex->lock());
  mutex->unlock();
  EXPECT_FALSE(mutex->lock());
  mutex->unlock();
  reap(child);
  ::alarm(0);
}

TEST(RegionMutex, TreesAreRepairedAfterTheirLockHolderDied) {
  ::alarm(30);
  const ShmName name;
  Buffer buffer(Schema({{"id", DType::kInt64, {}}}),
                {.capacity = 100, .strategy = Strategy::kProportional}, SharedMemory{name});
  std::vector<std::int64_t> ids(100, 1);
  const std::array<FieldBytes, 1> columns{std::as_bytes(std::span(ids))};
  (void)buffer.add_batch(columns, 100);
  Region raw = Region::attach_shared(name);
  const Layout layout = read_region_header(raw.bytes(), name).layout;
  // The proportional selector's part: [PriorityControl][sum tree].
  auto& control = *reinterpret_cast<PriorityControl*>(raw.data() + layout.selector_offset);
  auto* leaves = reinterpret_cast<double*>(raw.data() + layout.selector_offset +
                                           align_up(sizeof(PriorityControl)));
  const Shared<int> locked;
  // The child dies holding the lock after changing a priority without its sums, as a process
  // killed inside SumTree::set would.
  reap(spawn_and_die([&] {
    (void)control.lock.lock();
    // Leaf 0 of the bottom level: the bottom level's offset is past the root line and the level
    // above it (100 leaves: levels of 100, 13 and 2 values).
    leaves[8 + 8 + 16] = 5.0;
    *locked = 1;
  }));
  EXPECT_EQ(*locked, 1);
  const ConsistencyReport report = buffer.check_consistency();
  EXPECT_TRUE(report.repaired);
  EXPECT_EQ(report.repairs, 1u);
  std::vector<double> stored(1);
  buffer.priorities(std::vector<std::uint64_t>{0}, stored);
  EXPECT_EQ(stored[0], 5.0);
  EXPECT_FALSE(buffer.check_consistency().repaired);
  ::alarm(0);
}

}  // namespace
}  // namespace replay_buffer
