#include "replay_buffer/layout.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/process.hpp"
#include "replay_buffer/selectors/registry.hpp"

namespace replay_buffer {
namespace {

// a + b, or CapacityError if it does not fit in size_t (after aligning).
std::size_t checked_add(std::size_t a, std::size_t b, std::size_t capacity) {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max() - kAlignment;
  if (b > kMax - a) {
    throw CapacityError("a buffer of capacity " + std::to_string(capacity) +
                        " does not fit in the address space");
  }
  return align_up(a + b);
}

std::size_t checked_mul(std::size_t a, std::size_t b, std::size_t capacity) {
  if (b != 0 && a > std::numeric_limits<std::size_t>::max() / b) {
    throw CapacityError("a buffer of capacity " + std::to_string(capacity) +
                        " does not fit in the address space");
  }
  return a * b;
}

std::atomic_ref<std::uint64_t> magic_ref(std::span<const std::byte> region) noexcept {
  auto* header = reinterpret_cast<RegionHeader*>(const_cast<std::byte*>(region.data()));
  return std::atomic_ref<std::uint64_t>(header->magic);
}

std::string hex(std::uint64_t value) {
  char text[19];
  std::snprintf(text, sizeof(text), "0x%016llx", static_cast<unsigned long long>(value));
  return text;
}

// `text` with every byte outside printable ASCII (and the backslash) as \xNN: region bytes go
// into error messages that must stay valid text (Python decodes them as UTF-8).
std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out.push_back(c);
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

}  // namespace

Layout Layout::compute(const Schema& schema, std::size_t capacity, Strategy strategy,
                       std::size_t writer_slots) {
  if (capacity == 0) throw CapacityError("capacity must be at least 1");
  Layout layout;
  layout.capacity = capacity;
  std::size_t end = align_up(sizeof(RegionHeader));
  layout.fields_offset = end;
  end = checked_add(end, sizeof(FieldRecord) * schema.size(), capacity);
  layout.counters_offset = end;
  end = checked_add(end, sizeof(Counters), capacity);
  if (writer_slots != 0) {
    layout.writers_offset = end;
    layout.writer_slots = writer_slots;
    end = checked_add(end, checked_mul(writer_slots, sizeof(WriterEntry), capacity), capacity);
  }
  layout.seq_offset = end;
  end = checked_add(end, checked_mul(capacity, sizeof(std::uint32_t), capacity), capacity);
  layout.column_offsets.reserve(schema.size());
  for (const Field& field : schema.fields()) {
    layout.column_offsets.push_back(end);
    end = checked_add(end, checked_mul(capacity, field.row_bytes(), capacity), capacity);
  }
  layout.selector_bytes = Selectors::region_bytes(strategy, capacity);
  if (layout.selector_bytes != 0) {
    layout.selector_offset = end;
    end = checked_add(end, layout.selector_bytes, capacity);
  }
  layout.total_bytes = end;
  return layout;
}

void write_region_header(std::span<std::byte> region, const Schema& schema, const Layout& layout,
                         std::size_t capacity, Strategy strategy, std::uint64_t seed, double alpha,
                         double eps) {
  std::byte* base = region.data();
  auto* header = new (base) RegionHeader{};
  header->magic = 0;
  header->layout_version = kLayoutVersion;
  header->field_count = static_cast<std::uint32_t>(schema.size());
  header->total_bytes = layout.total_bytes;
  header->capacity = capacity;
  header->fields_offset = layout.fields_offset;
  header->counters_offset = layout.counters_offset;
  header->seq_offset = layout.seq_offset;
  header->seed = seed;
  header->selector_offset = layout.selector_offset;
  header->selector_bytes = layout.selector_bytes;
  header->writers_offset = layout.writers_offset;
  header->writer_slots = layout.writer_slots;
  header->alpha = alpha;
  header->eps = eps;
  header->strategy = static_cast<std::uint8_t>(strategy);
  const process::Identity creator = process::self();
  header->creator_pid = static_cast<std::uint64_t>(creator.pid);
  header->creator_start_time = creator.start_time;
  header->creator_pid_namespace = creator.pid_namespace;
  header->created_unix_ns =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  auto* records = reinterpret_cast<FieldRecord*>(base + layout.fields_offset);
  for (std::size_t i = 0; i < schema.size(); ++i) {
    const Field& field = schema[i];
    FieldRecord& record = *new (&records[i]) FieldRecord{};
    std::memcpy(record.name, field.name.data(), field.name.size());
    record.dtype = static_cast<std::uint8_t>(field.dtype);
    record.ndim = static_cast<std::uint8_t>(field.shape.size());
    std::copy(field.shape.begin(), field.shape.end(), record.dims);
    record.column_offset = layout.column_offsets[i];
    record.row_bytes = field.row_bytes();
    record.num_values = field.num_values;
  }
  new (base + layout.counters_offset) Counters{};
}

void publish_region_header(std::span<std::byte> region) noexcept {
  magic_ref(region).store(kRegionMagic, std::memory_order_release);
}

std::uint64_t region_magic(std::span<const std::byte> region) noexcept {
  if (region.size() < sizeof(RegionHeader)) return 0;
  return magic_ref(region).load(std::memory_order_acquire);
}

RegionDescription read_region_header(std::span<const std::byte> region, std::string_view name) {
  const std::string who = "shared buffer '" + printable(name) + "'";
  const auto fail = [&who](const std::string& what) -> InvalidRegionError {
    return InvalidRegionError(who + ": " + what);
  };
  if (region.size() < sizeof(RegionHeader)) {
    throw fail("truncated: " + std::to_string(region.size()) + " bytes, less than a header (" +
               std::to_string(sizeof(RegionHeader)) + ")");
  }
  const std::uint64_t magic = region_magic(region);
  if (magic == 0) throw fail("not initialised (its creator has not finished, or died creating it)");
  if (magic != kRegionMagic) {
    throw fail("not a replay buffer region (magic " + hex(magic) + ", expected " +
               hex(kRegionMagic) + ")");
  }
  RegionHeader header;
  std::memcpy(&header, region.data(), sizeof(header));
  if (header.layout_version != kLayoutVersion) {
    throw fail("made with layout version " + std::to_string(header.layout_version) +
               ", but this library reads version " + std::to_string(kLayoutVersion) +
               " (use the same replay_buffer version on both sides)");
  }
  if (header.total_bytes != region.size()) {
    throw fail("truncated or resized: its header says " + std::to_string(header.total_bytes) +
               " bytes, the region has " + std::to_string(region.size()));
  }
  if (header.field_count == 0 || header.field_count > kMaxFields) {
    throw fail("corrupt header: " + std::to_string(header.field_count) + " fields");
  }
  if (header.fields_offset != align_up(sizeof(RegionHeader)) ||
      header.fields_offset + header.field_count * sizeof(FieldRecord) > region.size()) {
    throw fail("corrupt header: field records at offset " + std::to_string(header.fields_offset));
  }
  if (strategy_name(static_cast<Strategy>(header.strategy)) == "invalid") {
    throw fail("corrupt header: unknown strategy " + std::to_string(header.strategy));
  }
  for (const auto& [what, value] : {std::pair{"alpha", header.alpha}, {"eps", header.eps}}) {
    if (!std::isfinite(value) || value < 0.0) {
      throw fail(std::string("corrupt header: ") + what + " is " + std::to_string(value));
    }
  }
  if (header.capacity == 0 || header.capacity > region.size()) {
    throw fail("corrupt header: capacity " + std::to_string(header.capacity));
  }
  if (header.writer_slots > kMaxWriterSlots) {
    throw fail("corrupt header: " + std::to_string(header.writer_slots) + " writer entries");
  }
  std::vector<Field> fields;
  std::vector<std::uint64_t> column_offsets;
  for (std::size_t i = 0; i < header.field_count; ++i) {
    FieldRecord record;
    std::memcpy(&record, region.data() + header.fields_offset + i * sizeof(FieldRecord),
                sizeof(record));
    const std::string where = "field record " + std::to_string(i) + ": ";
    const auto name_end = std::find(std::begin(record.name), std::end(record.name), '\0');
    if (name_end == std::end(record.name)) throw fail(where + "name is not NUL-terminated");
    // Checked before the name goes into any message or string: a corrupt byte must give this
    // error, never text that is not text.
    const std::string_view stored_name(
        std::begin(record.name), static_cast<std::size_t>(name_end - std::begin(record.name)));
    if (!is_valid_field_name(stored_name)) {
      throw fail(where + "name '" + printable(stored_name) + "' is not a field name (1 to " +
                 std::to_string(kMaxFieldNameLength) + " of the characters A-Z a-z 0-9 _ - .)");
    }
    if (!is_valid_dtype(record.dtype)) {
      throw fail(where + "unknown dtype " + std::to_string(record.dtype));
    }
    if (record.ndim > kMaxDims) throw fail(where + std::to_string(record.ndim) + " dimensions");
    Field field{std::string(std::begin(record.name), name_end),
                static_cast<DType>(record.dtype),
                {},
                record.num_values};
    std::uint64_t row_bytes = dtype_size(field.dtype);
    for (std::size_t d = 0; d < record.ndim; ++d) {
      const std::uint64_t dim = record.dims[d];
      if (dim == 0 || dim > region.size() / row_bytes) {
        throw fail(where + "'" + field.name + "' has dimension " + std::to_string(dim));
      }
      row_bytes *= dim;
      field.shape.push_back(static_cast<std::size_t>(dim));
    }
    if (row_bytes != record.row_bytes) {
      throw fail(where + "'" + field.name + "' says rows of " + std::to_string(record.row_bytes) +
                 " bytes, its shape gives " + std::to_string(row_bytes));
    }
    fields.push_back(std::move(field));
    column_offsets.push_back(record.column_offset);
  }
  std::optional<Schema> schema;
  try {
    schema.emplace(std::move(fields));
  } catch (const std::invalid_argument& e) {
    throw fail(std::string("corrupt field records: ") + printable(e.what()));
  }
  const auto strategy = static_cast<Strategy>(header.strategy);
  const auto capacity = static_cast<std::size_t>(header.capacity);
  std::optional<Layout> layout;
  try {
    layout.emplace(Layout::compute(*schema, capacity, strategy,
                                   static_cast<std::size_t>(header.writer_slots)));
  } catch (const CapacityError& e) {
    throw fail(std::string("corrupt header: ") + e.what());
  }
  const auto expect = [&](const char* part, std::uint64_t stored, std::size_t computed) {
    if (stored != computed) {
      throw fail("corrupt header: " + std::string(part) + " at offset " + std::to_string(stored) +
                 ", but its schema and capacity put it at " + std::to_string(computed));
    }
  };
  expect("the counters", header.counters_offset, layout->counters_offset);
  expect("the writer registry", header.writers_offset, layout->writers_offset);
  expect("the sequence words", header.seq_offset, layout->seq_offset);
  for (std::size_t i = 0; i < column_offsets.size(); ++i) {
    expect(("column '" + (*schema)[i].name + "'").c_str(), column_offsets[i],
           layout->column_offsets[i]);
  }
  expect("the selector's part", header.selector_offset, layout->selector_offset);
  expect("the selector's size", header.selector_bytes, layout->selector_bytes);
  expect("the end", header.total_bytes, layout->total_bytes);
  return RegionDescription{.schema = std::move(*schema),
                           .capacity = capacity,
                           .strategy = strategy,
                           .seed = header.seed,
                           .alpha = header.alpha,
                           .eps = header.eps,
                           .layout = std::move(*layout),
                           .creator_pid = header.creator_pid,
                           .creator_start_time = header.creator_start_time,
                           .creator_pid_namespace = header.creator_pid_namespace,
                           .created_unix_ns = header.created_unix_ns};
}

}  // namespace replay_buffer
