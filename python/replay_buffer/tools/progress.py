"""Progress bars for long commands: tqdm on a terminal, nothing otherwise.

tqdm is optional (``pip install 'replay_buffer[progress]'``); without it, or when stderr is not a
terminal (a log file, CI), :func:`bar` returns a bar that draws nothing.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Bar(Protocol):
    """What the commands use of a progress bar."""

    def update(self, n: int = 1) -> Any:  # noqa: D102
        ...

    def set_description(self, desc: str) -> Any:  # noqa: D102
        ...

    def close(self) -> Any:  # noqa: D102
        ...


class _Silent:
    """A bar that draws nothing."""

    def update(self, n: int = 1) -> None:  # noqa: D102
        pass

    def set_description(self, desc: str) -> None:  # noqa: D102
        pass

    def close(self) -> None:  # noqa: D102
        pass


def bar(total: int, description: str, unit: str = "step") -> Bar:
    """Return a progress bar on stderr counting to ``total``; silent off a terminal or without tqdm.

    The bar disappears when closed, so tables printed afterwards stand alone.
    """
    if not sys.stderr.isatty():
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr)
