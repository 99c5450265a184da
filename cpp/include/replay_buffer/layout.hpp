// Where each part of a buffer lives inside its region. Offsets only, never pointers, so a region
// means the same thing wherever it is mapped.
//
//   [RegionHeader][FieldRecord x field_count][Counters][WriterEntry x writer_slots]
//   [seq words: u32 x capacity][column 0]...[the selector's part (selectors/*.hpp), if any]
//
// Every part starts on a 64-byte boundary (a cache line; also what SIMD loads like). Only shared
// regions have writer entries (writers.hpp); private ones have writer_slots = 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "replay_buffer/rate_limiter.hpp"
#include "replay_buffer/schema.hpp"
#include "replay_buffer/strategy.hpp"
#include "replay_buffer/sync.hpp"

namespace replay_buffer {

inline constexpr std::size_t kAlignment = 64;
inline constexpr std::uint64_t kRegionMagic = 0x3146425952504c52ULL;  // "RLPRYBF1" little-endian
// The most writer entries a region may have (WriterRegistry::kEntries).
inline constexpr std::size_t kMaxWriterSlots = 1024;

// Version 2 added the writer registry and the creator's identity; version 3 made laps absolute
// (counted from key 0, so a clear moves only the base key) and gave the selector one part.
inline constexpr std::uint32_t kLayoutVersion = 3;

[[nodiscard]] constexpr std::size_t align_up(std::size_t n, std::size_t a = kAlignment) noexcept {
  return (n + a - 1) / a * a;
}

// Fixed-size description of one field, as stored in the region.
struct FieldRecord {
  char name[kMaxFieldNameLength + 1];  // NUL-terminated
  std::uint8_t dtype;
  std::uint8_t ndim;
  std::uint8_t reserved[6];
  std::uint64_t dims[kMaxDims];
  std::uint64_t column_offset;  // from the region's start
  std::uint64_t row_bytes;
  std::uint64_t num_values;  // Field::num_values; 0: none
};

struct alignas(kAlignment) RegionHeader {
  // Written last, with release order, by the region's creator: a process that reads the magic
  // (with acquire order) sees a fully initialised region. 0 while the creator is still at work.
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t field_count;
  std::uint64_t total_bytes;
  std::uint64_t capacity;
  std::uint64_t fields_offset;
  std::uint64_t counters_offset;
  std::uint64_t seq_offset;
  std::uint64_t seed;
  std::uint64_t selector_offset;  // the selector's part; 0 when it keeps nothing in the region
  std::uint64_t selector_bytes;
  std::uint64_t writers_offset;           // 0 for private buffers
  std::uint64_t writer_slots;             // entries in the writer registry; 0 for private buffers
  double alpha;
  double eps;
  std::uint8_t strategy;
  std::uint8_t reserved[7];
  // Who created the region and when: for `replay-buffer shm ls`, which reports regions whose
  // creator died.
  std::uint64_t creator_pid;
  std::uint64_t creator_start_time;
  std::uint64_t creator_pid_namespace;
  std::uint64_t created_unix_ns;
  // Fixed at creation, so every process attached to the region applies the same limits.
  RateLimit rate_limit;
};

// Words changed by every add or sample: each on its own cache line so that writers bumping
// next_key do not invalidate the line samplers read base_key from.
struct Counters {
  alignas(kAlignment) std::uint64_t next_key;       // keys handed out so far (atomic)
  alignas(kAlignment) std::uint64_t base_key;       // next_key at the last clear (atomic)
  alignas(kAlignment) std::uint64_t sample_stream;  // sample calls so far, seeds their RNG (atomic)
  std::uint64_t beta_bits;                          // the current beta, a double's bits (atomic)
  std::uint64_t takeovers;  // slots taken over from writers that died mid-write (atomic)
  alignas(kAlignment) std::uint64_t sampled;  // transitions sampled so far (atomic)
  std::uint64_t sampled_at_clear;             // `sampled` at the last clear (atomic)
};

// One entry of a shared region's writer registry (writers.hpp). Every word is accessed atomically.
struct WriterEntry {
  std::uint64_t state;          // incarnation << 32 | pid; pid 0: free
  std::uint64_t start_time;     // of the holder (process::Identity), valid for `details_of`
  std::uint64_t pid_namespace;  // likewise
  std::uint64_t details_of;     // the incarnation the two words above belong to; bit 63: the
                                // holder locked the entry (writers.hpp)
};

static_assert(std::is_trivially_copyable_v<RegionHeader>);
static_assert(std::is_trivially_copyable_v<FieldRecord>);
static_assert(std::is_trivially_copyable_v<Counters>);
static_assert(std::is_trivially_copyable_v<WriterEntry>);

// The offsets of every part for a schema and capacity. Pure arithmetic: the same inputs give the
// same layout in every process, which is how an attaching process checks a region.
struct Layout {
  std::size_t capacity = 0;
  std::size_t fields_offset = 0;
  std::size_t counters_offset = 0;
  std::size_t writers_offset = 0;
  std::size_t writer_slots = 0;
  std::size_t seq_offset = 0;
  std::vector<std::size_t> column_offsets;
  std::size_t selector_offset = 0;
  std::size_t selector_bytes = 0;
  std::size_t total_bytes = 0;

  // Throws CapacityError when capacity is 0 or the total size overflows. Thread-safe (pure).
  [[nodiscard]] static Layout compute(const Schema& schema, std::size_t capacity,
                                      Strategy strategy = Strategy::kUniform,
                                      std::size_t writer_slots = 0);
};

// What a region's header says, checked: everything needed to use the region.
struct RegionDescription {
  Schema schema;
  std::size_t capacity;
  Strategy strategy;
  std::uint64_t seed;
  double alpha;
  double eps;
  Layout layout;
  std::uint64_t creator_pid;
  std::uint64_t creator_start_time;
  std::uint64_t creator_pid_namespace;
  std::uint64_t created_unix_ns;
};

// Writes the header and field records of a fresh region, all but the magic: the caller
// initialises the rest of the region, then calls publish_region_header. Not thread-safe.
void write_region_header(std::span<std::byte> region, const Schema& schema, const Layout& layout,
                         std::size_t capacity, Strategy strategy, std::uint64_t seed, double alpha,
                         double eps);

// Stores the magic with release order: the region is complete. Not thread-safe.
void publish_region_header(std::span<std::byte> region) noexcept;

// The magic as the region holds it now (acquire order): kRegionMagic once initialised, 0 while
// its creator is still at work. Thread- and process-safe.
[[nodiscard]] std::uint64_t region_magic(std::span<const std::byte> region) noexcept;

// Checks every part of a region's header against the region's size and against the layout its
// own schema and capacity give, and returns what it describes. Throws InvalidRegionError naming
// `name` and what is wrong (wrong magic, another layout version, truncated or resized, a corrupt
// field record, offsets that do not match) without reading past the region. Thread-safe (reads
// only the header and field records, which never change after publication).
[[nodiscard]] RegionDescription read_region_header(std::span<const std::byte> region,
                                                   std::string_view name);

}  // namespace replay_buffer
