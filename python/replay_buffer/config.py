"""Buffer configuration: capacity, sampling strategy and seed."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

STRATEGIES = ("uniform",)


def _random_seed() -> int:
    return secrets.randbits(64)


@dataclass(frozen=True)
class BufferConfig:
    """How a :class:`~replay_buffer.ReplayBuffer` stores and samples transitions.

    Attributes:
        capacity: How many transitions the ring holds; the oldest is overwritten when full.
        strategy: How ``sample`` draws transitions. ``"uniform"``: uniformly at random, with
            replacement. (Prioritized strategies are not available yet.)
        seed: Seeds sampling. The n-th ``sample`` call of a buffer with a given seed draws the
            same rows every time when one thread samples. Random when not given.

    """

    capacity: int
    strategy: str = "uniform"
    seed: int = field(default_factory=_random_seed)

    def __post_init__(self) -> None:
        """Check every value, so a bad config fails where it is written."""
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError(f"capacity must be an int, got {type(self.capacity).__name__}")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got "
                f"{self.strategy!r} (prioritized replay is not available yet)"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")
