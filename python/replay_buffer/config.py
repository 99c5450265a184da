"""Buffer configuration: capacity, sampling strategy, rate limits and seed.

:class:`BufferConfig`'s fields are the one declaration of the buffer's options: each carries an
:class:`Option` in its metadata (help text, how to read it from text), from which the ``serve``
command's flags, the config file's ``[buffer]`` keys and the service's description of the buffer
are derived. Adding an option is adding a field here (and its check in ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def strategies() -> tuple[str, ...]:
    """Return the sampling strategies the C++ core offers (``"uniform"``, ``"prioritized"``, ...).

    Read from the core, where each strategy is one selector; without the compiled extension (a
    service client), the names a server's core offers are not known here and any name passes
    this check (the server checks it).
    """
    try:
        from replay_buffer._core import STRATEGIES
    except ImportError:
        return ()
    return tuple(STRATEGIES)


def _random_seed() -> int:
    return secrets.randbits(64)


@dataclass(frozen=True)
class Option:
    """How a :class:`BufferConfig` field is set from text: a command-line flag or a config key.

    Attributes:
        help: One line of plain text saying what it does.
        parse: Turns the text of a flag into the field's value; raises ValueError.
        expects: What ``parse`` accepts, for error messages: ``"an int"``, ...
        choices: Returns the only values allowed, when there is a short list (read when asked:
            the strategies come from the C++ core; empty when it is not there).

    """

    help: str
    parse: Callable[[str], Any]
    expects: str
    choices: Callable[[], tuple[str, ...]] | None = None


def number_or_none(text: str) -> float | None:
    """Read a number, or ``none`` for None."""
    return None if text.strip().lower() == "none" else float(text)


def _option(
    help: str,
    parse: Callable[[str], Any],
    expects: str,
    choices: Callable[[], tuple[str, ...]] | None = None,
) -> dict[str, Option]:
    return {"option": Option(help, parse, expects, choices)}


_INT, _NUMBER, _NUMBER_OR_NONE = (
    (int, "an int"),
    (float, "a number"),
    (number_or_none, "a number or none"),
)


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
        min_size_to_sample: ``sample`` waits until the buffer holds this many transitions
            (0: never waits; sampling an empty buffer raises ``EmptyBufferError``).
        samples_per_insert: Target number of sampled transitions per added one, as Reverb's
            ``SampleToInsertRatio``: once ``min_size_to_sample`` transitions were added, an
            ``add`` that would let inserts run ahead, or a ``sample`` that would let samples run
            ahead, by more than ``error_buffer`` waits. ``None``: no ratio.
        error_buffer: How far samples may stray from ``samples_per_insert`` per insert, in
            sampled transitions; at least max(1, samples_per_insert), and a batch (of samples,
            or of inserts times the ratio) must fit within twice it. Defaults to
            max(1, samples_per_insert) * 64.
        rate_limit_timeout: Seconds a held-back ``add`` or ``sample`` waits before raising
            ``TimeoutError``; ``None`` waits for ever.

    """

    capacity: int = field(
        metadata=_option("how many transitions the ring holds; the oldest is overwritten", *_INT)
    )
    strategy: str = field(
        default="uniform",
        metadata=_option("how sample draws transitions", str, "a strategy name", strategies),
    )
    alpha: float = field(
        default=0.6, metadata=_option("prioritization exponent (0: uniform)", *_NUMBER)
    )
    beta: float = field(
        default=0.4, metadata=_option("importance-weight exponent (settable later)", *_NUMBER)
    )
    eps: float = field(
        default=1e-6, metadata=_option("added to every |TD error| before prioritizing", *_NUMBER)
    )
    seed: int = field(
        default_factory=_random_seed,
        metadata=_option("seeds sampling (default: random)", *_INT),
    )
    min_size_to_sample: int = field(
        default=0,
        metadata=_option("samples wait until the buffer holds this many transitions", *_INT),
    )
    samples_per_insert: float | None = field(
        default=None,
        metadata=_option(
            "rate limit: sampled transitions per inserted one (none: no ratio)", *_NUMBER_OR_NONE
        ),
    )
    error_buffer: float | None = field(
        default=None,
        metadata=_option(
            "rate limit: how far samples may stray from the ratio, in sampled transitions "
            "(none: max(1, samples_per_insert) * 64)",
            *_NUMBER_OR_NONE,
        ),
    )
    rate_limit_timeout: float | None = field(
        default=60.0,
        metadata=_option(
            "seconds a held-back add or sample waits before TimeoutError (none: for ever)",
            *_NUMBER_OR_NONE,
        ),
    )

    def __post_init__(self) -> None:
        """Check every value, so a bad config fails where it is written."""
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError(f"capacity must be an int, got {type(self.capacity).__name__}")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        known = strategies()
        if not isinstance(self.strategy, str):
            raise TypeError(f"strategy must be a str, got {type(self.strategy).__name__}")
        if known and self.strategy not in known:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, known))}, got {self.strategy!r}"
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
        if isinstance(self.min_size_to_sample, bool) or not isinstance(
            self.min_size_to_sample, int
        ):
            raise TypeError("min_size_to_sample must be an int")
        if self.min_size_to_sample < 0:
            raise ValueError(f"min_size_to_sample must be >= 0, got {self.min_size_to_sample}")
        for name in ("samples_per_insert", "error_buffer", "rate_limit_timeout"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.error_buffer is not None and self.samples_per_insert is None:
            raise ValueError("error_buffer needs samples_per_insert")

    def core_options(self) -> dict[str, Any]:
        """Return every option as the C++ core takes them (the binding's one options dict).

        The fields as declared, with the rate-limit ones resolved to numbers: no ratio is 0, the
        default ``error_buffer`` is computed, and waiting for ever is a timeout of -1.
        """
        min_size, ratio, error_buffer, timeout = self.rate_limit()
        resolved = {
            "min_size_to_sample": min_size,
            "samples_per_insert": ratio,
            "error_buffer": error_buffer,
            "rate_limit_timeout": timeout,
        }
        return {f.name: resolved.get(f.name, getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_core_options(cls, options: Mapping[str, Any]) -> BufferConfig:
        """Rebuild a config from :meth:`core_options`' form, as a buffer's ``options`` gives it."""
        values = {f.name: options[f.name] for f in fields(cls)}
        ratio = float(values["samples_per_insert"])
        timeout = float(values["rate_limit_timeout"])
        values["samples_per_insert"] = ratio if ratio > 0 else None
        values["error_buffer"] = float(values["error_buffer"]) if ratio > 0 else None
        values["rate_limit_timeout"] = timeout if timeout >= 0 else None
        return cls(**values)

    def rate_limit(self) -> tuple[int, float, float, float]:
        """Return the limits as the core takes them: (min size, ratio, error buffer, timeout)."""
        ratio = float(self.samples_per_insert or 0.0)
        error_buffer = self.error_buffer
        if error_buffer is None:
            error_buffer = max(1.0, ratio) * 64 if ratio > 0 else 0.0
        timeout = -1.0 if self.rate_limit_timeout is None else float(self.rate_limit_timeout)
        return self.min_size_to_sample, ratio, float(error_buffer), timeout


def options() -> list[tuple[dataclasses.Field[Any], Option]]:
    """Every option of :class:`BufferConfig`, in declaration order, with how to set it."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(BufferConfig)]
