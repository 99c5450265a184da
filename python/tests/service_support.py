"""Helpers for the service tests: a real server process, and a server running in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from replay_buffer.service import protocol as p
from replay_buffer.service.server import ReplayServer

CARTPOLE = ["--capacity", "1000", "--seed", "0", "--obs-shape", "4", "--action-dim", "2"]


class ServerProcess:
    """``python -m replay_buffer.tools.serve`` on a Unix socket and a loopback TCP port."""

    def __init__(self, *args: str, env: dict | None = None, schema=CARTPOLE) -> None:
        # Unix socket paths are limited to ~100 bytes, so not under pytest's long tmp_path.
        self.dir = tempfile.mkdtemp(prefix="rbsvc")
        self.path = os.path.join(self.dir, "rb.sock")
        self.unix_url = f"unix://{self.path}"
        command = [
            sys.executable, "-m", "replay_buffer.tools.serve", *schema,
            "--listen", self.unix_url, "--listen", "tcp://127.0.0.1:0",
            "--status-interval", "0", *args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.log: list[str] = []
        self.tcp_url = self._wait_listening()
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    def _wait_listening(self) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.log.append(line)
            found = re.search(r"listening on (tcp://\S+)", line)
            if found:
                return found.group(1)
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the server, wait for it, and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._drain.join(5)
            shutil.rmtree(self.dir, ignore_errors=True)


class ThreadedServer:
    """A :class:`ReplayServer` for a buffer of this process, its event loop in a thread."""

    def __init__(self, buffer, **options) -> None:
        self.dir = tempfile.mkdtemp(prefix="rbsvc")
        self.path = os.path.join(self.dir, "rb.sock")
        self.unix_url = f"unix://{self.path}"
        self.loop = asyncio.new_event_loop()
        self.server = ReplayServer(buffer, [self.unix_url], status_interval=0, **options)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(20)

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self.server.close(grace=5), self.loop)
        future.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_connect(path: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def frame(msg_type: int, payload: bytes = b"", request_id: int = 1) -> bytes:
    return p.pack_header(msg_type, request_id, len(payload)) + payload


def hello_frame(token: str | None = None) -> bytes:
    body = {"client": "test"} if token is None else {"client": "test", "token": token}
    return frame(p.MsgType.HELLO, p.encode_json(body), request_id=0)


def read_frame(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """Read one whole frame, or None if the server closed the connection first."""
    header = _read_exact(sock, p.HEADER_SIZE)
    if header is None:
        return None
    msg_type, request_id, length = p.unpack_header(header)
    assert length <= p.Limits().max_frame_bytes
    payload = _read_exact(sock, length)
    if payload is None:
        return None
    return msg_type, request_id, payload


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data
    return None
