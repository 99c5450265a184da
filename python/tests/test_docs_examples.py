"""Every example in README.md and docs/*.md runs as written (doctest-style).

Each document's ```python blocks run in order in one namespace, in a fresh temporary working
directory; top-level ``await`` works, as in ``python -m asyncio``. Its ```bash blocks must hold
only ``replay-buffer ...`` commands, which run in a shell (``replay-buffer serve`` in the
background until the next ``serve`` or the end of the document: the blocks after it talk to that
server). Its ```console blocks are ``$ command`` lines, each followed by the output it prints: the
command must succeed, and each line of the documented output must begin an output line with the
same first word (numbers, pids and dates differ from machine to machine). A block that cannot run
here carries ``<!-- not-tested: REASON -->`` and is reported as skipped with that reason; the
other annotations are in doc_blocks.py. C++ blocks are compiled and run by
scripts/cmake_consumer.sh (README's) or marked.

So that concurrent runs on one machine never collide, three things in the examples are replaced
before they run: the shared-memory name ``learner0`` (by a name unique to this run), ``/tmp/``
(by the temporary directory) and TCP port 7777 (by a free port); ``replay-buffer serve`` without
``--listen`` gets ``--listen tcp://127.0.0.1:PORT``, the documented default with that port.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SHM_PREFIX
from doc_blocks import ROOT, Block, blocks

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash", "console"}
# Languages whose blocks are data or diagrams, not something to run.
NOT_RUN = {"", "json", "toml", "text", "cmake"}
COMMAND_TIMEOUT = 120.0
SERVER_START_TIMEOUT = 30.0
BIN = Path(sys.executable).parent


def every_block() -> list[Block]:
    return [block for document in DOCUMENTS for block in blocks(document)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``replay-buffer serve`` started by a bash block, and its log."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], where: str) -> None:
        self.where = where
        self.process = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:  # every listener is bound before the first "listening on" line
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"{where}: server did not listen within {SERVER_START_TIMEOUT} s")
            if line is None:
                self.process.wait()
                pytest.fail(f"{where}: server exited ({self.process.returncode}):\n{self.output}")
            if "listening on" in line:
                return

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    @property
    def output(self) -> str:
        return "".join(self.log)

    def stop(self) -> None:
        """SIGINT, as Ctrl-C: the documented shutdown, which must exit with status 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.where}: server ignored SIGINT for 30 s:\n{self.output}")
        assert code == 0, f"{self.where}: server exited with {code} on SIGINT:\n{self.output}"


class DocumentRun:
    """One document's examples: a namespace, an event loop, a working directory, a server."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.namespace: dict[str, object] = {"__name__": "__main__"}
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "REPLAY_BUFFER_TOKEN": os.environ.get("REPLAY_BUFFER_TOKEN", "docs-example-token"),
        }

    def substitute(self, text: str) -> str:
        text = re.sub(r"\blearner0\b", f"{SHM_PREFIX}learner0", text)
        text = text.replace("/tmp/", f"{self.workdir}/")
        return re.sub(r"(127\.0\.0\.1|\[::1\]):7777\b", rf"\g<1>:{self.port}", text)

    def run(self, block: Block) -> None:
        if block.directive == "setup":
            self.python(self.substitute(block.argument), f"{block.where} (setup)")
        if block.directive == "file":
            (self.workdir / block.argument).write_text(self.substitute(block.code))
        elif block.lang == "python":
            self.python(self.substitute(block.code), block.where)
        elif block.lang == "bash":
            for command in shell_commands(block):
                self.command(self.substitute(command), block.where)
        elif block.lang == "console":
            for command, expected in console_commands(block):
                output = self.command(self.substitute(command), block.where)
                for line in self.substitute(expected).splitlines():
                    first = line.split()[0]
                    assert any(o.split()[:1] == [first] for o in output.splitlines()), (
                        f"{block.where}: `{command}` printed no line starting with {first!r} "
                        f"(documented: {line!r}):\n{output}"
                    )

    def python(self, code: str, where: str) -> None:
        compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(compiled, self.namespace)
        if inspect.iscoroutine(result):
            self.loop.run_until_complete(result)

    def command(self, command: str, where: str) -> str:
        argv = shlex.split(command, comments=True)
        if argv[:2] == ["replay-buffer", "serve"]:
            if "--listen" not in argv and "--config" not in argv:
                command += f" --listen tcp://127.0.0.1:{self.port}"
            self.stop_server()
            self.server = Server(command, self.workdir, self.env, where)
            return ""
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, (
            f"{where}: `{command}` exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
        return result.stdout

    def stop_server(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()

    def close(self) -> None:
        """Close what the examples left open (creators remove their shm names); stop the server."""
        try:
            for value in list(self.namespace.values()):
                close = getattr(value, "close", None)
                if inspect.ismodule(value) or inspect.isclass(value) or not callable(close):
                    continue
                if getattr(value, "closed", False) is True:
                    continue
                result = close()
                if inspect.isawaitable(result):
                    self.loop.run_until_complete(result)
            self.namespace.clear()
        finally:
            self.loop.close()
            self.stop_server()


def logical_lines(code: str) -> Iterator[str]:
    """Lines with backslash continuations joined."""
    pending = ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            yield pending + line
            pending = ""
    if pending:
        yield pending


def shell_commands(block: Block) -> list[str]:
    commands = [
        line.strip()
        for line in logical_lines(block.code)
        if line.strip() and not line.strip().startswith("#")
    ]
    for command in commands:
        assert command.startswith("replay-buffer "), (
            f"{block.where}: `{command}` is not a `replay-buffer ...` command; run it elsewhere "
            "or mark the block <!-- not-tested: REASON -->"
        )
    return commands


def console_commands(block: Block) -> list[tuple[str, str]]:
    """(command, documented output) for each ``$ `` line."""
    pairs: list[tuple[str, str]] = []
    for line in logical_lines(block.code):
        if line.startswith("$ "):
            pairs.append((line[2:].strip(), ""))
        elif pairs:
            pairs[-1] = (pairs[-1][0], pairs[-1][1] + line + "\n")
        elif line.strip():
            pytest.fail(f"{block.where}: console block output before any `$ ` command")
    for command, _ in pairs:
        assert command.startswith("replay-buffer "), (
            f"{block.where}: `{command}` is not a `replay-buffer ...` command; mark the block "
            "<!-- not-tested: REASON -->"
        )
    return pairs


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = Path(os.path.realpath(tmp_path))
    monkeypatch.chdir(workdir)
    run = DocumentRun(workdir)
    monkeypatch.setenv("REPLAY_BUFFER_TOKEN", run.env["REPLAY_BUFFER_TOKEN"])
    try:
        for block in blocks(document):
            if block.directive == "not-tested" or (
                block.lang not in RUN and block.directive != "file"
            ):
                continue
            run.run(block)
    finally:
        run.close()


NOT_TESTED = [block for block in every_block() if block.directive == "not-tested"]


@pytest.mark.parametrize("block", NOT_TESTED, ids=lambda b: b.where)
def test_not_tested_block(block: Block) -> None:
    """Listed as skipped, with the reason the documentation gives next to the block."""
    pytest.skip(f"{block.where} not tested: {block.argument}")


def test_annotations_are_well_formed() -> None:
    for block in every_block():
        if block.directive == "not-tested":
            assert len(block.argument) >= 10, f"{block.where}: say why the block is not tested"
        if block.directive == "file":
            assert block.lang in NOT_RUN and "/" not in block.argument, block.where
        if block.directive == "setup":
            assert block.lang in RUN | {"cpp"}, f"{block.where}: setup on a {block.lang!r} block"
        known = RUN | NOT_RUN | {"cpp"}
        assert block.lang in known, f"{block.where}: unknown block language {block.lang!r}"
        if block.lang == "" and any(line.startswith("$ ") for line in block.code.splitlines()):
            pytest.fail(f"{block.where}: a shell transcript: tag it ```console so it is run")


def test_cpp_blocks_are_compiled_or_marked() -> None:
    """scripts/cmake_consumer.sh compiles and runs README's C++ blocks; any other must be marked."""
    for block in every_block():
        if block.lang == "cpp" and block.path.name != "README.md":
            assert block.directive == "not-tested", (
                f"{block.where}: only README's C++ blocks are compiled (scripts/cmake_consumer.sh)"
            )
