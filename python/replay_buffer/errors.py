"""The exceptions replay_buffer raises besides Python's own, in pure Python.

The C++ extension raises these very classes, and the socket clients, which work without the
extension, raise them too for the same errors on the server.
"""

from __future__ import annotations

__all__ = ["CapacityError", "EmptyBufferError", "InvalidRegionError"]


class EmptyBufferError(ValueError):
    """``sample`` on a buffer that holds no transitions (and has no ``min_size_to_sample``)."""


class CapacityError(MemoryError):
    """The buffer would not fit: in memory, in ``/dev/shm``, or in the address space."""


class InvalidRegionError(ValueError):
    """A shared-memory region that is not a usable replay buffer of this version."""
