"""The package's import structure: no cycles, every module importable on its own, and the socket
client usable without the compiled extension."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from service_support import ThreadedServer

import replay_buffer
from replay_buffer import BufferConfig, CapacityError, EmptyBufferError, ReplayBuffer, errors

from conftest import cartpole

PACKAGE = Path(__file__).resolve().parents[1] / "replay_buffer"


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Which package modules each module imports, anywhere in it (functions and TYPE_CHECKING
    blocks included: a cycle there is a cycle in the design)."""
    known = modules()
    # The compiled extension is a module too (a leaf: it imports only replay_buffer.errors).
    extensions = {f"replay_buffer.{stub.stem}" for stub in PACKAGE.glob("*.pyi")}
    names = {*known, *extensions}
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in known and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert "replay_buffer.service.connection" in graph  # the graph is the package's
    assert "replay_buffer.service.protocol" in graph["replay_buffer.service.codec"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_library_does_not_import_its_tools():
    graph = import_graph()
    for name, targets in graph.items():
        if not name.startswith(("replay_buffer.tools", "replay_buffer.__main__")):
            assert not {t for t in targets if t.startswith("replay_buffer.tools")}, name


@pytest.mark.parametrize("module", sorted(set(modules()) - {"replay_buffer.__main__"}))
def test_every_module_imports_first_in_a_fresh_interpreter(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_extension_raises_the_pure_python_exceptions():
    assert replay_buffer.EmptyBufferError is errors.EmptyBufferError
    with pytest.raises(EmptyBufferError) as raised:
        cartpole().sample(1)
    assert type(raised.value) is errors.EmptyBufferError
    with pytest.raises(CapacityError) as raised:
        ReplayBuffer(BufferConfig(capacity=2**50, seed=0), obs_shape=(84, 84, 4), action_dim=2)
    assert type(raised.value) is errors.CapacityError


CLIENT_WITHOUT_EXTENSION = """
import asyncio
import sys

sys.modules["replay_buffer._core"] = None  # as on a machine where it cannot be built or loaded

import numpy as np

import replay_buffer
import replay_buffer.aio
import replay_buffer.service.client
from replay_buffer import EmptyBufferError

url = sys.argv[1]
with replay_buffer.connect(url) as client:
    try:
        client.sample(1)
    except EmptyBufferError as exc:
        print("empty:", exc)
    obs = np.arange(4, dtype=np.float32)
    client.add(obs, 1, 0.5, obs, False)
    client.add_batch(
        obs=np.ones((3, 4), np.float32), action=np.zeros(3, np.int64),
        reward=np.ones(3, np.float32), next_obs=np.ones((3, 4), np.float32),
        done=np.zeros(3, bool),
    )
    print("size:", client.size(), "sampled:", len(client.sample(8)["reward"]))


async def main():
    async with await replay_buffer.aio.connect(url) as client:
        print("async size:", await client.size())
    with replay_buffer.service.client.connect(url) as client:
        print("module client size:", client.size())


asyncio.run(main())
try:
    replay_buffer.ReplayBuffer
except ImportError as exc:
    print("no ReplayBuffer:", exc)
print("extension loaded:", "replay_buffer.buffer" in sys.modules)
"""


def test_the_socket_client_works_without_the_extension():
    server = ThreadedServer(cartpole())
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CLIENT_WITHOUT_EXTENSION), server.unix_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "empty: cannot sample from an empty buffer"
    assert lines[1:4] == ["size: 4 sampled: 8", "async size: 4", "module client size: 4"]
    assert lines[4].startswith("no ReplayBuffer: replay_buffer.ReplayBuffer needs the compiled")
    assert "replay_buffer.connect, works without it" in lines[4]
    assert lines[5] == "extension loaded: False"
