// Fast, seedable random numbers for sampling: xoshiro256++ seeded through SplitMix64, and
// Lemire's nearly divisionless method for unbiased integers in [0, n).
#pragma once

#include <cstdint>

namespace replay_buffer {

// GCC and Clang on every 64-bit target have it; the marker keeps -Wpedantic quiet.
__extension__ using Uint128 = unsigned __int128;

[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Not thread-safe: one generator per thread or per call.
class Xoshiro256pp {
 public:
  // Seeds the four state words from SplitMix64, as the xoshiro authors recommend.
  constexpr explicit Xoshiro256pp(std::uint64_t seed) noexcept {
    for (auto& word : s_) word = splitmix64(seed);
  }

  // A generator for the `stream`-th independent sequence of `seed`: the same (seed, stream) always
  // gives the same numbers.
  [[nodiscard]] static constexpr Xoshiro256pp for_stream(std::uint64_t seed,
                                                         std::uint64_t stream) noexcept {
    std::uint64_t mixed = seed;
    const std::uint64_t first = splitmix64(mixed);
    return Xoshiro256pp(first ^ (stream * 0xD1342543DE82EF95ULL + 0x2545F4914F6CDD1DULL));
  }

  constexpr std::uint64_t operator()() noexcept {
    const std::uint64_t result = rotl(s_[0] + s_[3], 23) + s_[0];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n), unbiased; n must be > 0.
  constexpr std::uint64_t below(std::uint64_t n) noexcept {
    auto m = static_cast<Uint128>((*this)()) * n;
    auto low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = -n % n;
      while (low < threshold) {
        m = static_cast<Uint128>((*this)()) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

  // Uniform in [0, 1) with 53 random bits.
  constexpr double uniform() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }
  std::uint64_t s_[4]{};
};

}  // namespace replay_buffer
