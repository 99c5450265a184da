// The specification's typed API: ReplayBuffer<Observation, Action> over Transition structs, a thin
// front over the schema-based Buffer (which C++ users can also use directly).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "replay_buffer/buffer.hpp"
#include "replay_buffer/dtype.hpp"
#include "replay_buffer/errors.hpp"
#include "replay_buffer/schema.hpp"

namespace replay_buffer {

// The specification's name for Strategy.
using SamplingStrategy = Strategy;

// The specification's configuration; alpha, beta and eps matter to prioritized strategies only.
struct BufferConfig {
  std::size_t capacity = 0;                                // slots; at least 1
  SamplingStrategy strategy = SamplingStrategy::kUniform;  // how samples are drawn
  float alpha = 0.6f;  // priority exponent
  float beta = 0.4f;   // importance-weight exponent (Buffer::set_beta anneals it)
  float eps = 1e-6f;   // added to every |TD error|
  std::uint64_t seed = 0;  // seeds sampling (see BufferOptions::seed)
};

// One transition of the typed front, as ReplayBuffer adds and samples it.
template <typename Observation, typename Action>
struct Transition {
  Observation observation;       // the state acted in
  Action action;                 // what was done
  float reward;                  // what it earned
  Observation next_observation;  // the state it led to
  bool done;                     // whether the episode ended there
};

// How a C++ type is stored: arithmetic types and (nested) std::arrays of them keep their element
// type and shape; any other trivially copyable type is stored as its raw bytes (uint8[sizeof(T)]).
template <typename T>
struct FieldLayout {
  static_assert(std::is_trivially_copyable_v<T>, "fields must be trivially copyable");
  static constexpr DType dtype = DType::kUInt8;  // the element type
  // The field's shape.
  static std::vector<std::size_t> shape() { return {sizeof(T)}; }
};

// An arithmetic type: a scalar of its own dtype.
template <typename T>
requires std::is_arithmetic_v<T>
struct FieldLayout<T> {
  static constexpr DType dtype = dtype_of<T>();  // the element type
  // A scalar: no dimensions.
  static std::vector<std::size_t> shape() { return {}; }
};

template <typename T>
struct IsNumericArray : std::is_arithmetic<T> {};
template <typename T, std::size_t N>
struct IsNumericArray<std::array<T, N>> : IsNumericArray<T> {};

// A (nested) std::array of an arithmetic type: its element's dtype, with N in front of the shape.
template <typename T, std::size_t N>
requires IsNumericArray<T>::value struct FieldLayout<std::array<T, N>> {
  static constexpr DType dtype = FieldLayout<T>::dtype;  // the innermost element type
  // N, then the element's shape.
  static std::vector<std::size_t> shape() {
    std::vector<std::size_t> dims = FieldLayout<T>::shape();
    dims.insert(dims.begin(), N);
    return dims;
  }
};

// The Field called `name` that stores a T (see FieldLayout).
template <typename T>
[[nodiscard]] Field field_for(std::string name) {
  return Field{std::move(name), FieldLayout<T>::dtype, FieldLayout<T>::shape()};
}

// The specification's typed buffer: Transition<Observation, Action> in, vectors of them out. A
// front over Buffer (buffer()), with the same thread-safety: every method, any number of threads.
template <typename Observation, typename Action>
class ReplayBuffer {
 public:
  // What add takes and sample returns.
  using TransitionType = Transition<Observation, Action>;

  // Fields: observation, action, reward (float32), next_observation, done (bool).
  explicit ReplayBuffer(const BufferConfig& config) : buffer_(schema(), options(config)) {}

  // The same, in a new named shared-memory region that other processes attach to (see Buffer).
  ReplayBuffer(const BufferConfig& config, const SharedMemory& shared)
      : buffer_(schema(), options(config), shared) {}

  // Attaches to the shared buffer `name` made by a ReplayBuffer of the same Observation and
  // Action types (in any process). Throws as Buffer::attach, and InvalidRegionError when the
  // region's fields are not this type's. `owner`: as Buffer::attach (another user's region is
  // refused unless Region::Owner::kAnyone).
  [[nodiscard]] static ReplayBuffer attach(std::string_view name,
                                           Region::Owner owner = Region::Owner::kSelf) {
    Buffer buffer = Buffer::attach(name, std::chrono::seconds(2), owner);
    if (buffer.schema() != schema()) {
      throw InvalidRegionError("shared buffer '" + std::string(name) + "' holds fields (" +
                               buffer.schema().field_names() +
                               ") of other types than this ReplayBuffer's");
    }
    return ReplayBuffer(std::move(buffer));
  }

  // Thread-safe and lock-free (see Buffer::add).
  void add(const TransitionType& t) {
    const std::array<FieldBytes, 5> row{as_bytes(t.observation), as_bytes(t.action),
                                        as_bytes(t.reward), as_bytes(t.next_observation),
                                        as_bytes(t.done)};
    (void)buffer_.add(row);
  }

  // `batch_size` transitions drawn uniformly with replacement. Thread-safe. Throws
  // EmptyBufferError when empty, std::invalid_argument when batch_size is 0.
  [[nodiscard]] std::vector<TransitionType> sample(std::size_t batch_size) {
    return sample(batch_size, {});
  }

  // As sample(batch_size), also writing each transition's key into `indices` (size batch_size)
  // and, for prioritized buffers, its importance weight into `weights` (size batch_size, or
  // empty).
  [[nodiscard]] std::vector<TransitionType> sample(std::size_t batch_size,
                                                   std::span<std::uint64_t> indices,
                                                   std::span<float> weights = {}) {
    if (!indices.empty() && indices.size() != batch_size) {
      throw std::invalid_argument("indices must hold batch_size keys");
    }
    Columns columns(batch_size);
    const std::array<FieldOut, 5> out{std::as_writable_bytes(std::span(columns.observation)),
                                      std::as_writable_bytes(std::span(columns.action)),
                                      std::as_writable_bytes(std::span(columns.reward)),
                                      std::as_writable_bytes(std::span(columns.next_observation)),
                                      std::as_writable_bytes(std::span(columns.done))};
    buffer_.sample(batch_size, out, indices, weights);
    std::vector<TransitionType> batch(batch_size);
    for (std::size_t i = 0; i < batch_size; ++i) {
      batch[i] = TransitionType{columns.observation[i], columns.action[i], columns.reward[i],
                                columns.next_observation[i], columns.done[i] != 0};
    }
    return batch;
  }

  // Sets the priorities (p + eps)^alpha of the transitions with these keys (indices from sample);
  // keys of transitions overwritten since are ignored. Returns how many were applied. Throws
  // (changing nothing) as Buffer::update_priorities. Thread-safe.
  std::size_t update_priorities(const std::vector<std::size_t>& indices,
                                const std::vector<float>& priorities) {
    const std::vector<double> values(priorities.begin(), priorities.end());
    // Copied, not reinterpreted: size_t and uint64_t are distinct types on some platforms (macOS),
    // and reading one through the other would break strict aliasing.
    const std::vector<std::uint64_t> keys(indices.begin(), indices.end());
    return update_priorities(std::span<const std::uint64_t>(keys), values,
                             PriorityKind::kPriority);
  }
  // New priorities for the keys sample wrote: `values` are priorities (kPriority, the default
  // here) or TD errors (kTdError). Returns how many were applied. Thread-safe; O(n log capacity).
  std::size_t update_priorities(std::span<const std::uint64_t> indices,
                                std::span<const double> values,
                                PriorityKind kind = PriorityKind::kPriority) {
    return buffer_.update_priorities(indices, values, kind);
  }

  // Thread-safe.
  [[nodiscard]] std::size_t size() const noexcept { return buffer_.size(); }
  // Slots. Thread-safe; O(1).
  [[nodiscard]] std::size_t capacity() const noexcept { return buffer_.capacity(); }
  // Whether size() == capacity(). Thread-safe; O(1).
  [[nodiscard]] bool is_full() const noexcept { return buffer_.is_full(); }

  // The schema-based buffer underneath, for column access and batched adds.
  [[nodiscard]] Buffer& buffer() noexcept { return buffer_; }

 private:
  explicit ReplayBuffer(Buffer buffer) : buffer_(std::move(buffer)) {}

  static Schema schema() {
    return Schema({field_for<Observation>("observation"), field_for<Action>("action"),
                   field_for<float>("reward"), field_for<Observation>("next_observation"),
                   field_for<bool>("done")});
  }
  static BufferOptions options(const BufferConfig& config) {
    return {.capacity = config.capacity,
            .seed = config.seed,
            .strategy = config.strategy,
            .alpha = config.alpha,
            .beta = config.beta,
            .eps = config.eps};
  }

  struct Columns {
    explicit Columns(std::size_t n)
        : observation(n), action(n), reward(n), next_observation(n), done(n) {}
    std::vector<Observation> observation;
    std::vector<Action> action;
    std::vector<float> reward;
    std::vector<Observation> next_observation;
    std::vector<unsigned char> done;  // not vector<bool>: it has no contiguous storage
  };

  template <typename T>
  static FieldBytes as_bytes(const T& value) noexcept {
    return std::as_bytes(std::span<const T, 1>(&value, 1));
  }

  Buffer buffer_;
};

}  // namespace replay_buffer
