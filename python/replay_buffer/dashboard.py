"""The live dashboard: one static page that polls ``stats.json`` every second.

:class:`replay_buffer.metrics.MonitorServer` serves it at ``/``. The page draws its own small
canvas charts: no charting library, nothing fetched from another host, so it works offline.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def page() -> bytes:
    """Return the dashboard's HTML (scripts and styles inline)."""
    return resources.files("replay_buffer").joinpath("dashboard.html").read_bytes()
