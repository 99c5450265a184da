"""Buffer configuration: capacity, sampling strategy and seed."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

STRATEGIES = ("uniform", "prioritized", "rank")


def _random_seed() -> int:
    return secrets.randbits(64)


@dataclass(frozen=True)
class BufferConfig:
    """How a :class:`~replay_buffer.ReplayBuffer` stores and samples transitions.

    Attributes:
        capacity: How many transitions the ring holds; the oldest is overwritten when full.
        strategy: How ``sample`` draws transitions, always with replacement.
            ``"uniform"``: every transition equally likely.
            ``"prioritized"``: proportional prioritization (Schaul et al. 2016):
            P(i) = p_i / sum_j p_j with p_i = (|TD error_i| + eps) ** alpha, kept in a sum tree.
            ``"rank"``: rank-based prioritization: P(i) proportional to rank(i) ** -alpha, ranks
            by |TD error| + eps.
        alpha: How much priorities count (0 is uniform); fixed for the buffer's life.
        beta: Importance-weight exponent: ``sample`` returns weights
            (N * P(i)) ** -beta / max_j (N * P(j)) ** -beta. Settable later as ``buffer.beta``.
        eps: Added to every |TD error| so that no transition's priority is 0.
        seed: Seeds sampling. The n-th ``sample`` call of a buffer with a given seed draws the
            same rows every time when one thread samples. Random when not given.

    """

    capacity: int
    strategy: str = "uniform"
    alpha: float = 0.6
    beta: float = 0.4
    eps: float = 1e-6
    seed: int = field(default_factory=_random_seed)

    def __post_init__(self) -> None:
        """Check every value, so a bad config fails where it is written."""
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError(f"capacity must be an int, got {type(self.capacity).__name__}")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {self.strategy!r}"
            )
        for name in ("alpha", "beta", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")
