"""The ``replay-buffer`` command and its tools: demo, benchmarks, shared-memory housekeeping.

Not part of the library's API: nothing in :mod:`replay_buffer` imports from here.
"""
