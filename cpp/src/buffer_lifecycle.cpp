// A buffer's lifecycle: making its region (private or shared), attaching to a shared one,
// inspecting one without joining it, and handing the whole state over on a move.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "buffer_state.hpp"
#include "replay_buffer/errors.hpp"

namespace replay_buffer {
namespace {

void check_exponent(const char* name, double value) {
  if (!std::isfinite(value) || value < 0.0) {
    throw std::invalid_argument(std::string(name) + " must be finite and >= 0, got " +
                                std::to_string(value));
  }
}

const BufferOptions& checked(const BufferOptions& options) {
  options.rate_limit.validate();
  check_exponent("alpha", options.alpha);
  check_exponent("beta", options.beta);
  check_exponent("eps", options.eps);
  if (strategy_name(options.strategy) == "invalid") {
    throw std::invalid_argument("unknown sampling strategy");
  }
  return options;
}

std::unique_ptr<Buffer::State> make_state(Schema schema, const BufferOptions& options,
                                          const std::optional<SharedMemory>& shared) {
  checked(options);
  Layout layout = Layout::compute(schema, options.capacity, options.strategy,
                                  shared ? kMaxWriterSlots : 0);
  Region region = shared ? Region::create_shared(shared->name, layout.total_bytes, shared->mode)
                         : Region::allocate_private(layout.total_bytes);
  // A failure from here on destroys the region, which removes a shared name it created.
  write_region_header(region.bytes(), schema, layout, options.capacity, options.strategy,
                      options.seed, options.alpha, options.eps);
  auto* header = reinterpret_cast<RegionHeader*>(region.data());
  header->rate_limit = options.rate_limit;
  auto* seq = reinterpret_cast<sync::SeqWord*>(region.data() + layout.seq_offset);
  std::fill_n(seq, options.capacity, sync::kUnwritten);
  auto state = std::make_unique<Buffer::State>(
      std::move(schema), std::move(layout), std::move(region),
      SelectorParams{.alpha = options.alpha, .eps = options.eps});
  std::visit([](auto& selector) { selector.init_region(); }, state->selector);
  sync::counter_ref(state->counters->beta_bits)
      .store(std::bit_cast<std::uint64_t>(options.beta), std::memory_order_relaxed);
  // Last: a process that attaches and reads the magic sees everything above.
  publish_region_header(state->region.bytes());
  if (shared && shared->keep) state->region.keep_name();
  return state;
}

}  // namespace

Buffer::Buffer(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}

Buffer::Buffer(Schema schema, BufferOptions options)
    : Buffer(make_state(std::move(schema), options, std::nullopt)) {}

Buffer::Buffer(Schema schema, BufferOptions options, const SharedMemory& shared)
    : Buffer(make_state(std::move(schema), options, shared)) {}

Buffer::Buffer(Buffer&&) noexcept = default;
Buffer& Buffer::operator=(Buffer&&) noexcept = default;
Buffer::~Buffer() = default;

Buffer Buffer::attach(std::string_view name, std::chrono::milliseconds wait, Region::Owner owner) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    // Mapped afresh each time: a creator that is still at work may not have sized it yet.
    Region region = Region::attach_shared(name, Region::Access::kReadWrite, owner);
    if (region_magic(region.bytes()) != 0 || std::chrono::steady_clock::now() >= deadline) {
      RegionDescription description = read_region_header(region.bytes(), name);
      auto* header = reinterpret_cast<RegionHeader*>(region.data());
      try {
        header->rate_limit.validate();
      } catch (const std::invalid_argument& e) {
        throw InvalidRegionError("shared buffer '" + std::string(name) +
                                 "': the rate limit is corrupt: " + e.what());
      }
      return Buffer(std::make_unique<State>(
          std::move(description.schema), std::move(description.layout), std::move(region),
          SelectorParams{.alpha = description.alpha, .eps = description.eps}));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(10));
  }
}

SharedBufferInfo Buffer::inspect(std::string_view name) {
  const Region region =
      Region::attach_shared(name, Region::Access::kReadOnly, Region::Owner::kAnyone);
  RegionDescription description = read_region_header(region.bytes(), name);
  const std::byte* base = region.data();
  auto& counters = *reinterpret_cast<Counters*>(const_cast<std::byte*>(base) +
                                                description.layout.counters_offset);
  const std::uint64_t next = sync::counter_ref(counters.next_key).load(std::memory_order_acquire);
  const std::uint64_t first = sync::counter_ref(counters.base_key).load(std::memory_order_acquire);
  const double beta =
      std::bit_cast<double>(sync::counter_ref(counters.beta_bits).load(std::memory_order_relaxed));
  const process::Liveness creator =
      process::liveness({.pid = static_cast<std::int64_t>(description.creator_pid),
                         .start_time = description.creator_start_time,
                         .pid_namespace = description.creator_pid_namespace});
  WriterRegistry::Census writers;
  if (description.layout.writer_slots != 0) {
    auto* entries = reinterpret_cast<WriterEntry*>(const_cast<std::byte*>(base) +
                                                   description.layout.writers_offset);
    writers = WriterRegistry(std::span<WriterEntry>(entries, description.layout.writer_slots),
                             region.fd(), description.layout.writers_offset)
                  .census();
  }
  const std::size_t capacity = description.capacity;
  return SharedBufferInfo{
      .name = std::string(name),
      .bytes = region.size(),
      .mode = region.mode(),
      .owner_uid = region.owner_uid(),
      .description = std::move(description),
      .beta = beta,
      .next_key = next,
      .size = static_cast<std::size_t>(
          std::min<std::uint64_t>(next >= first ? next - first : 0, capacity)),
      .creator = creator,
      .writers = writers,
  };
}

const Schema& Buffer::schema() const noexcept { return state_->schema; }
std::size_t Buffer::capacity() const noexcept { return state_->layout.capacity; }
std::uint64_t Buffer::seed() const noexcept { return state_->header->seed; }
Strategy Buffer::strategy() const noexcept { return state_->strategy(); }
double Buffer::alpha() const noexcept { return state_->header->alpha; }
double Buffer::eps() const noexcept { return state_->header->eps; }
std::size_t Buffer::region_bytes() const noexcept { return state_->region.size(); }
const std::string& Buffer::shared_name() const noexcept { return state_->region.name(); }
bool Buffer::owns_shared_name() const noexcept { return state_->region.owns_name(); }
bool Buffer::unlink_shared_name() noexcept { return state_->region.unlink_name(); }
void Buffer::keep_shared_name() noexcept { state_->region.keep_name(); }
const RateLimit& Buffer::rate_limit() const noexcept { return state_->header->rate_limit; }

BufferOptions Buffer::options() const noexcept {
  return BufferOptions{.capacity = capacity(),
                       .seed = seed(),
                       .strategy = strategy(),
                       .alpha = alpha(),
                       .beta = beta(),
                       .eps = eps(),
                       .rate_limit = rate_limit()};
}

}  // namespace replay_buffer
