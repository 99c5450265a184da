"""Service addresses: ``unix:///path/to.sock`` and ``tcp://host:port`` URLs."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Address:
    """A parsed service URL.

    Attributes:
        scheme: ``"unix"`` or ``"tcp"``.
        path: The socket file of a Unix address, else ``""``.
        host: The host of a TCP address (without brackets for IPv6), else ``""``.
        port: The port of a TCP address (0: any free port, for listeners), else 0.

    """

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        """Return the address as a URL."""
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def is_loopback(self) -> bool:
        """Whether only this machine can reach the address (a Unix socket, or a loopback IP)."""
        if self.scheme == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(url: str) -> Address:
    """Parse ``unix:///abs/path.sock``, ``unix://relative.sock`` or ``tcp://host:port``.

    Raises:
        ValueError: not one of those forms.

    """
    if not isinstance(url, str):
        raise TypeError(f"address must be a str URL, got {type(url).__name__}")
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not path or "\0" in path:
            raise ValueError(f"{url!r}: a unix:// address needs a socket path")
        return Address("unix", path=path)
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url!r}: the port must be a number in [0, 65535]") from None
        if not parts.hostname or port is None or parts.path or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: expected tcp://host:port")
        return Address("tcp", host=parts.hostname, port=port)
    raise ValueError(f"{url!r}: expected unix:///path/to.sock or tcp://host:port")


def open_socket(address: Address, timeout: float | None) -> socket.socket:
    """Connect a blocking stream socket to ``address`` (TCP with Nagle's delay turned off)."""
    if address.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect_error(url: str, exc: BaseException) -> BaseException:
    """Return ``exc`` as an error of the same type whose message names ``url``.

    ``ConnectionRefusedError: [Errno 111] Connection refused`` does not say where; a client that
    fails to connect says ``cannot connect to tcp://host:port: Connection refused``.
    """
    if url in str(exc):
        return exc
    errno = getattr(exc, "errno", None)
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    try:
        if isinstance(exc, OSError) and errno is not None:
            return type(exc)(errno, f"cannot connect to {url}: {detail}")
        return type(exc)(f"cannot connect to {url}: {detail}")
    except Exception:  # a type that cannot be rebuilt from a message
        return ConnectionError(f"cannot connect to {url}: {detail}")
