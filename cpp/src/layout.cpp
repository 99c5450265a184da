#include "replay_buffer/layout.hpp"

#include <limits>
#include <string>

#include "replay_buffer/errors.hpp"
#include "replay_buffer/sum_tree.hpp"

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

}  // namespace

Layout Layout::compute(const Schema& schema, std::size_t capacity, Strategy strategy) {
  if (capacity == 0) throw CapacityError("capacity must be at least 1");
  Layout layout;
  std::size_t end = align_up(sizeof(RegionHeader));
  layout.fields_offset = end;
  end = checked_add(end, sizeof(FieldRecord) * schema.size(), capacity);
  layout.counters_offset = end;
  end = checked_add(end, sizeof(Counters), capacity);
  layout.seq_offset = end;
  end = checked_add(end, checked_mul(capacity, sizeof(std::uint32_t), capacity), capacity);
  layout.column_offsets.reserve(schema.size());
  for (const Field& field : schema.fields()) {
    layout.column_offsets.push_back(end);
    end = checked_add(end, checked_mul(capacity, field.row_bytes(), capacity), capacity);
  }
  if (strategy != Strategy::kUniform) {
    layout.priority_control_offset = end;
    end = checked_add(end, sizeof(PriorityControl), capacity);
    layout.tree_offset = end;
    end = checked_add(end, SumTree::bytes_for(capacity), capacity);
  }
  if (strategy == Strategy::kRank) {
    layout.order_offset = end;
    end = checked_add(end, checked_mul(capacity, sizeof(RankEntry), capacity), capacity);
    layout.changed_offset = end;
    end = checked_add(end, capacity, capacity);
  }
  layout.total_bytes = end;
  return layout;
}

}  // namespace replay_buffer
