// The schema-based replay buffer: a fixed-capacity ring of transitions stored column by column in
// one region, with lock-free adds and uniform sampling. The region is this process's private
// memory, or a named shared-memory object that any number of processes map at once (one creates
// it, the others attach); every guarantee below holds across processes as across threads.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "replay_buffer/layout.hpp"
#include "replay_buffer/process.hpp"
#include "replay_buffer/rate_limiter.hpp"
#include "replay_buffer/region.hpp"
#include "replay_buffer/ring.hpp"
#include "replay_buffer/schema.hpp"
#include "replay_buffer/stats.hpp"
#include "replay_buffer/strategy.hpp"
#include "replay_buffer/writers.hpp"

namespace replay_buffer {

// How a Buffer is made: its capacity, seed, sampling strategy and rate limit.
struct BufferOptions {
  std::size_t capacity = 0;  // slots, fixed for the buffer's life; at least 1
  // Seeds sampling: the n-th sample call on a buffer with this seed draws the same slots every
  // time, whichever thread makes it (so one thread sampling alone gets the same batches).
  std::uint64_t seed = 0;
  Strategy strategy = Strategy::kUniform;  // how samples are drawn (strategy.hpp)
  // Prioritized strategies only. alpha: how much priorities count (0 = uniform), fixed for the
  // buffer's life. beta: the importance-weight exponent, changeable at any time. eps: added to
  // every |TD error| so no transition's priority is 0.
  double alpha = 0.6;
  double beta = 0.4;  // see alpha
  double eps = 1e-6;  // see alpha
  // When adds and samples wait for each other (rate_limiter.hpp); off by default.
  RateLimit rate_limit{};
};

// A buffer in a named shared-memory region (region.hpp has the naming rules).
struct SharedMemory {
  std::string name;  // the region's name, without a leading slash
  // Permissions of the shared-memory object; owner-only by default. 0660 shares it with the
  // owner's group.
  std::uint32_t mode = 0600;
  // Leave the name in place when the creating Buffer is destroyed; otherwise it is removed then
  // (processes attached by then keep working; new ones cannot attach).
  bool keep = false;
};

// What a shared buffer's header and counters say, read without joining it as a writer.
struct SharedBufferInfo {
  std::string name;                  // the region's name
  std::size_t bytes = 0;             // the region's size
  std::uint32_t mode = 0;            // its permission bits
  std::uint32_t owner_uid = 0;       // the user that owns it
  RegionDescription description;     // schema, capacity, strategy and creator, from the header
  double beta = 0.0;                 // the importance-weight exponent now
  std::uint64_t next_key = 0;        // keys handed out so far
  std::size_t size = 0;              // transitions held
  process::Liveness creator = process::Liveness::kUnknown;  // whether its creator still runs
  WriterRegistry::Census writers;    // registered writer processes, alive and dead
};

// What a proportional buffer's probabilities are made of: P(i) = p_i / total, and the smallest
// probability is min_positive / total (see Buffer::priority_mass).
struct PriorityMass {
  double total;         // sum of the stored priorities
  double min_positive;  // smallest stored priority > 0; +infinity when every one is 0
};

// What check_consistency found: how many slots are in which state.
struct ConsistencyReport {
  std::size_t readable = 0;       // published rows
  std::size_t being_written = 0;  // held by a live writer
  std::size_t abandoned = 0;      // left mid-write by a writer that died, awaiting the next writer
  std::size_t unwritten = 0;      // never written since the last clear
  bool repaired = false;          // the priority lock's previous holder had died: trees rebuilt
  // Since the region was made: slots taken over from writers that died mid-write, and priority
  // lock acquisitions that found the holder dead and rebuilt the trees.
  std::uint64_t takeovers = 0;
  std::uint64_t repairs = 0;  // see takeovers
};

// The lowest priority bucket of BufferStats::priority_buckets: bucket b counts priorities in
// [2^(b + kPriorityBucketLow), 2^(b + kPriorityBucketLow + 1)).
inline constexpr int kPriorityBucketLow = -24;
// The most live slots BufferStats' priority histogram looks at (evenly spaced).
inline constexpr std::size_t kPrioritySampleSlots = 4096;

// A buffer's figures at one moment (docs/observability.md says what each means). Counts are
// since the region was made, in every process attached to it.
struct BufferStats {
  std::size_t capacity = 0;        // the most items it holds
  std::size_t size = 0;            // items held now
  std::uint64_t inserted = 0;      // items added (keys handed out)
  std::uint64_t insert_calls = 0;  // add and add_batch calls
  std::uint64_t sampled = 0;       // items sampled (rows of every batch returned)
  std::uint64_t sample_calls = 0;  // sample calls that drew
  std::uint64_t insert_waits = 0;  // add calls the rate limiter held (timed-out ones too)
  double insert_wait_seconds = 0.0;  // time add calls spent held by the rate limiter
  std::uint64_t sample_waits = 0;    // sample calls the rate limiter held (timed-out ones too)
  double sample_wait_seconds = 0.0;  // time sample calls spent held by the rate limiter
  // Ages in inserts of sampled items (tracked keys only, see stats.hpp): bucket b counts ages in
  // [2^(b-1), 2^b), bucket 0 age 0.
  std::array<std::uint64_t, kAgeBuckets> age_buckets{};
  std::uint64_t age_sum = 0;  // of the ages counted there
  double age_p50 = 0.0;       // median age; NaN until a tracked item is sampled
  double age_p99 = 0.0;       // 99th percentile age; NaN until a tracked item is sampled
  std::size_t tracking_stride = 0;     // every tracking_stride-th key is tracked
  double unique_sampled = 0.0;         // distinct items ever sampled (estimate)
  double live_sampled_fraction = 0.0;  // of the items held now, the share sampled at least once
  double live_sample_count_mean = 0.0;      // times each item held now was sampled, on average
  std::uint64_t live_sample_count_max = 0;  // the most of the tracked ones (a lower bound)
  bool prioritized = false;    // whether the priority figures below mean anything
  double priority_sum = 0.0;   // exact sum of the stored priorities
  double priority_min = 0.0;   // smallest positive stored priority
  double priority_max = 0.0;   // largest stored priority
  std::size_t priority_sampled_slots = 0;  // live slots the histogram looked at
  double priority_sampled_sum = 0.0;       // of the slots in the histogram
  // Histogram of those slots' priorities (see kPriorityBucketLow); the first and last buckets
  // also take everything below and above, and priority 0 goes to the first.
  std::array<std::uint64_t, 40> priority_buckets{};
  std::size_t writers_live = 0;       // shared buffers: writer entries of live (or unknown) processes
  std::size_t writers_dead = 0;       // shared buffers: writer entries of dead processes
  std::uint64_t takeovers = 0;        // slots taken over from writers that died mid-write
  std::uint64_t repairs = 0;          // priority-lock holders found dead, trees rebuilt
  std::uint64_t created_unix_ns = 0;  // when the region was made
};

// A replay buffer over any Schema: adds, samples, priorities, in private or shared memory. It
// moves bytes (rows in the fields' dtypes); ReplayBuffer<Obs, Act> is the typed front over it.
// Every method may be called from any number of threads and processes at once unless its
// comment says otherwise.
class Buffer {
 public:
  // A buffer in this process's private memory. Throws std::invalid_argument for a bad schema and
  // CapacityError for capacity 0 or a size this machine cannot hold.
  Buffer(Schema schema, BufferOptions options);

  // A buffer in a new shared-memory region that other processes attach to by name. Initialises
  // everything before it publishes the header's magic, so an attacher sees all or nothing.
  // Throws as the private constructor, and as Region::create_shared (std::invalid_argument for a
  // bad name, SharedMemoryError EEXIST when the name is taken, CapacityError when /dev/shm is too
  // small). Thread-safe.
  Buffer(Schema schema, BufferOptions options, const SharedMemory& shared);

  // Maps the shared buffer `name` made by another Buffer (in any process) and checks its header
  // in full: magic, layout version, size, field records, and every offset against the layout its
  // schema and capacity give. Schema, capacity, strategy, alpha, eps, seed and beta come from the
  // region. Waits up to `wait` for a creator that is still initialising it. Throws
  // SharedMemoryError (ENOENT: no such buffer, EACCES: not allowed to open it read-write) and
  // InvalidRegionError (not a replay buffer, another layout version, truncated, corrupt, or not
  // initialised within `wait`). Never removes the name. Refuses (SharedMemoryError EPERM) a region
  // another user owns unless `owner` is Region::Owner::kAnyone. Thread-safe.
  [[nodiscard]] static Buffer attach(std::string_view name,
                                     std::chrono::milliseconds wait = std::chrono::seconds(2),
                                     Region::Owner owner = Region::Owner::kSelf);

  // Reads a shared buffer's header and counters through a read-only mapping, without joining it
  // as a writer (so a region one may only read can be inspected, whoever owns it). Throws as
  // attach, but does not wait. Thread-safe.
  [[nodiscard]] static SharedBufferInfo inspect(std::string_view name);

  // Moving hands over the whole state at once (the writer claim is released before the region it
  // lives in is unmapped, whichever buffer goes first).
  Buffer(Buffer&&) noexcept;
  // See the move constructor. Not thread-safe (this buffer is replaced).
  Buffer& operator=(Buffer&&) noexcept;
  ~Buffer();

  // Immutable after construction: all of these are thread-safe.
  [[nodiscard]] const Schema& schema() const noexcept;
  // Slots. O(1).
  [[nodiscard]] std::size_t capacity() const noexcept;
  // The sampling seed. O(1).
  [[nodiscard]] std::uint64_t seed() const noexcept;
  // The sampling strategy. O(1).
  [[nodiscard]] Strategy strategy() const noexcept;
  // The priority exponent (prioritized strategies). O(1).
  [[nodiscard]] double alpha() const noexcept;
  // Added to every |TD error| (prioritized strategies). O(1).
  [[nodiscard]] double eps() const noexcept;
  // Every option the buffer was made with (beta as it is now). Thread-safe.
  [[nodiscard]] BufferOptions options() const noexcept;
  // Bytes of the whole region: header, sequence words, columns and priority structures.
  [[nodiscard]] std::size_t region_bytes() const noexcept;
  // The shared-memory name; empty for a private buffer.
  [[nodiscard]] const std::string& shared_name() const noexcept;
  // Whether destroying this Buffer removes the shared name: made by this process's constructor,
  // not kept, not removed yet. Not thread-safe against unlink_shared_name/keep_shared_name.
  [[nodiscard]] bool owns_shared_name() const noexcept;
  // Removes the shared name now if this Buffer owns it (see owns_shared_name); the memory stays
  // mapped here and in every attached process. Returns whether it removed it. Call from one
  // thread.
  bool unlink_shared_name() noexcept;
  // Leaves the shared name in place when this Buffer is destroyed. Call from one thread.
  void keep_shared_name() noexcept;

  // Transitions held: adds begun since the last clear, at most capacity. Thread-safe, O(1).
  [[nodiscard]] std::size_t size() const noexcept;
  // Whether size() == capacity(). Thread-safe, O(1).
  [[nodiscard]] bool is_full() const noexcept { return size() == capacity(); }
  // Keys handed out since the buffer was made (the next add gets this key). Thread-safe.
  [[nodiscard]] std::uint64_t next_key() const noexcept;
  // Transitions sampled since the buffer was made (each row of each batch). Thread-safe.
  [[nodiscard]] std::uint64_t sampled() const noexcept;
  // The limits adds and samples wait for; fixed when the buffer is made. Thread-safe.
  [[nodiscard]] const RateLimit& rate_limit() const noexcept;

  // Appends one transition, overwriting the oldest when full, and returns its key.
  // `row[i]` holds field i's bytes (exactly its row_bytes). Throws std::invalid_argument, leaving
  // the buffer unchanged, on a wrong field count or size.
  // With a samples-per-insert rate limit, waits until the add keeps samples within the limit's
  // tolerance, and throws RateLimitTimeout (nothing added) after its timeout.
  // Thread-safe and lock-free; must not overlap clear().
  std::uint64_t add(std::span<const FieldBytes> row);

  // Appends `count` transitions; `columns[i]` holds `count` rows of field i. Returns the first key
  // (the rest follow consecutively). When count exceeds capacity only the last `capacity` rows are
  // kept, as if added one by one. Throws std::invalid_argument (buffer unchanged) on a wrong field
  // count, size, or count == 0, and waits for the rate limit as add() does (std::invalid_argument
  // for a batch the limit could never admit). Thread-safe and lock-free; must not overlap clear().
  std::uint64_t add_batch(std::span<const FieldBytes> columns, std::size_t count);

  // Draws `batch` transitions with replacement (uniformly, or by priority) and copies each whole
  // transition into `out` (out[i]: `batch` rows of field i, or empty to skip it), its key into
  // `keys` (size `batch`, or empty) and, for prioritized buffers, its importance weight
  // (N * P(i))^-beta / max_j (N * P(j))^-beta into `weights` (size `batch`, or empty), with
  // `beta` overriding the buffer's for this call. Throws EmptyBufferError when empty,
  // std::invalid_argument on batch == 0, a wrong field count or size, weights or beta asked of a
  // uniform buffer, or a bad beta. With a rate limit, first waits until the buffer holds
  // min_size_to_sample transitions and the batch keeps samples within the ratio's tolerance, and
  // throws RateLimitTimeout after its timeout (EmptyBufferError is then never thrown).
  // Thread-safe; uniform sampling is lock-free, prioritized takes
  // the priority lock once per batch (copies happen outside it). Only ever returns rows as one
  // add wrote them.
  void sample(std::size_t batch, std::span<const FieldOut> out, std::span<std::uint64_t> keys,
              std::span<float> weights = {}, std::optional<double> beta = std::nullopt);

  // Sets the priorities of the transitions with the given keys from TD errors or priorities
  // (see PriorityKind); a key listed twice ends with its last value. Keys of transitions
  // overwritten (or cleared) since they were sampled are ignored, never applied to the slot's new
  // occupant. Returns how many were applied. Throws, changing nothing, std::invalid_argument for
  // spans of different sizes, a NaN or infinite value or a negative priority, std::out_of_range
  // for a key never handed out, and std::logic_error on a uniform buffer. Thread-safe: one
  // priority lock acquisition per call.
  std::size_t update_priorities(std::span<const std::uint64_t> keys, std::span<const double> values,
                                PriorityKind kind = PriorityKind::kTdError);

  // The importance-weight exponent used by sample when none is given. Thread-safe.
  [[nodiscard]] double beta() const noexcept;
  // Throws std::invalid_argument unless beta is finite and >= 0. Thread-safe.
  void set_beta(double beta);

  // Writes the stored priority of each key into `out` (same size as keys): (|delta| + eps)^alpha
  // for proportional buffers, |delta| + eps for rank-based ones, and NaN for a key whose
  // transition was overwritten, cleared, or is being written. Throws std::invalid_argument for
  // spans of different sizes, std::out_of_range for a key never handed out and std::logic_error
  // on a uniform buffer. Thread-safe: one priority lock acquisition.
  void priorities(std::span<const std::uint64_t> keys, std::span<double> out);

  // The sum of the stored priorities and the smallest positive one, read together under the
  // priority lock, so that callers drawing across several buffers (docs/distributed.md) can give
  // each its share of a batch and compute weights from global figures. Throws std::logic_error
  // unless the strategy is proportional: rank-based probabilities do not compose across buffers.
  // Thread-safe: one priority lock acquisition, O(1).
  [[nodiscard]] PriorityMass priority_mass();

  // Ends every call of this process (through this Buffer) that is waiting for the rate limiter
  // now, with WaitCancelled, having added or sampled nothing; later calls wait as usual. For an
  // owner shutting down (a server's close). Thread-safe, O(1).
  void cancel_waits() noexcept;

  // Forgets every transition; keys keep increasing. One atomic store of the base key (plus, for
  // prioritized buffers, resetting the priorities under the priority lock), so a process killed
  // at any instant of it leaves a consistent buffer. Adds that overlap it keep their rows if
  // their keys were handed out after it, and lose them otherwise; samples that overlap it see the
  // buffer as it was before or after. Thread- and process-safe.
  void clear();

  // The buffer's figures (stats.cpp's counters folded, the priority trees' roots and a bounded
  // sample of their leaves, the writer census). Thread- and process-safe; O(stripes + tracked
  // words + kPrioritySampleSlots), one priority lock acquisition for prioritized buffers, and
  // for shared buffers one liveness question to the OS per writer entry.
  [[nodiscard]] BufferStats stats();

  // Checks the buffer's invariants (consistency.cpp): counters in order, every sequence word a
  // published lap no newer than the keys handed out, or the mark of a registered (or dead)
  // writer; a well-formed writer registry; and, under the priority lock (after the repair a dead
  // holder calls for), sum, min and max trees exactly equal to a recomputation from the
  // priorities, no priority on a slot that holds no live item, and a well-formed rank order.
  // Returns what it counted; throws InvalidRegionError describing the first violation.
  // Thread-safe; O(capacity). Meant for tests, and for users who suspect a crash left damage.
  ConsistencyReport check_consistency();

  // The whole stored column of field i: capacity rows in slot order (slot = key mod capacity),
  // including rows of cleared and never-written slots. Rows may be mid-write while other threads
  // add. Thread-safe.
  [[nodiscard]] std::span<const std::byte> column(std::size_t field) const noexcept;

  // Everything a buffer is (region, ring, selector): opaque, defined in the library's sources.
  struct State;

 private:
  explicit Buffer(std::unique_ptr<State> state) noexcept;
  // Claims `count` keys through the rate limit, counting the call and any wait in the stats.
  std::uint64_t claim(std::size_t count);
  // Counts `count` sampled items, after the rate limit admits them.
  void admit_sample(std::size_t count);
  void check_inputs(std::span<const FieldBytes> columns, std::size_t rows) const;
  void check_outputs(std::span<const FieldOut> out, std::span<const std::uint64_t> keys,
                     std::size_t batch) const;
  // Writes the rows of `columns` as keys first_key... (claimed), marking slots with `mine`; rows
  // the same batch overwrites are skipped.
  void write_claimed(std::span<const FieldBytes> columns, std::uint64_t first_key,
                     std::size_t count, sync::SeqWord mine);
  template <typename Locked>
  void sample_with(Locked&& lock_selector, std::size_t batch, CopyPlan plan,
                   std::span<std::uint64_t> keys, std::span<float> weights, double beta);
  // A sampler's slow path, after failing to read rows many times over: retires slots that dead
  // writers left mid-write or that hold no live item (so prioritized draws stop choosing them)
  // and throws EmptyBufferError when no row is readable and no live writer is writing one.
  void reclaim(const LiveKeys& live);

  std::unique_ptr<State> state_;
};

}  // namespace replay_buffer
