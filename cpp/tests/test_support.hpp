// Helpers shared by the C++ tests.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "replay_buffer/buffer.hpp"

namespace replay_buffer::testing {

// A bytes view of a value or a vector, for Buffer's byte-level API.
template <typename T>
FieldBytes bytes_of(const T& value) {
  return std::as_bytes(std::span<const T, 1>(&value, 1));
}
template <typename T>
FieldBytes bytes_of(const std::vector<T>& values) {
  return std::as_bytes(std::span<const T>(values));
}
template <typename T>
FieldOut out_bytes(std::vector<T>& values) {
  return std::as_writable_bytes(std::span<T>(values));
}

// Row `slot` of a column as T.
template <typename T>
T column_value(const Buffer& buffer, std::size_t field, std::size_t slot, std::size_t element = 0) {
  T value;
  const std::size_t row_bytes = buffer.schema()[field].row_bytes();
  std::memcpy(&value, buffer.column(field).data() + slot * row_bytes + element * sizeof(T),
              sizeof(T));
  return value;
}

// Whether `observed` counts fit equal expected frequencies: Pearson's chi-square against the
// Wilson-Hilferty approximation of the chi-square quantile at p = 1e-6 (z = 4.753), so a correct
// sampler fails about once in a million runs and the seeds are fixed anyway.
inline bool fits_uniform(std::span<const std::uint64_t> observed) {
  std::uint64_t total = 0;
  for (const std::uint64_t c : observed) total += c;
  const double expected = static_cast<double>(total) / static_cast<double>(observed.size());
  double chi2 = 0.0;
  for (const std::uint64_t c : observed) {
    const double d = static_cast<double>(c) - expected;
    chi2 += d * d / expected;
  }
  const double df = static_cast<double>(observed.size() - 1);
  const double z = 4.753;
  const double t = 1.0 - 2.0 / (9.0 * df) + z * std::sqrt(2.0 / (9.0 * df));
  return chi2 < df * t * t * t;
}

// Whether `observed` counts fit the distribution `probabilities` (which sums to 1): Pearson's
// chi-square at p = 1e-6, with categories expected to see fewer than 5 pooled together so the
// approximation holds.
inline bool fits_distribution(std::span<const std::uint64_t> observed,
                              std::span<const double> probabilities) {
  std::uint64_t total = 0;
  for (const std::uint64_t c : observed) total += c;
  double chi2 = 0.0;
  std::size_t categories = 0;
  double pooled_expected = 0.0;
  double pooled_observed = 0.0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    const double expected = probabilities[i] * static_cast<double>(total);
    if (expected == 0.0) {
      if (observed[i] != 0) return false;  // drawn although impossible
      continue;
    }
    if (expected < 5.0) {
      pooled_expected += expected;
      pooled_observed += static_cast<double>(observed[i]);
      continue;
    }
    const double d = static_cast<double>(observed[i]) - expected;
    chi2 += d * d / expected;
    ++categories;
  }
  if (pooled_expected > 0.0) {
    const double d = pooled_observed - pooled_expected;
    chi2 += d * d / pooled_expected;
    ++categories;
  }
  if (categories < 2) return true;
  const double df = static_cast<double>(categories - 1);
  const double z = 4.753;
  const double t = 1.0 - 2.0 / (9.0 * df) + z * std::sqrt(2.0 / (9.0 * df));
  return chi2 < df * t * t * t;
}

}  // namespace replay_buffer::testing
