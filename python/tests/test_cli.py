"""The command line as a newcomer meets it: errors in the words they used, no tracebacks, exit
codes, plain help, --version, pipes closed early; and the buffer options declared once."""

import asyncio
import dataclasses
import os
import re
import socket
import subprocess
import sys
import tempfile

import pytest
from service_support import ThreadedServer

import replay_buffer
from replay_buffer import BufferConfig, aio
from replay_buffer.service import connect
from replay_buffer.service.config import from_dict, tomllib
from replay_buffer.tools import bench, serve, shm
from replay_buffer.tools.cli import main

from conftest import cartpole

needs_toml = pytest.mark.skipif(tomllib is None, reason="TOML needs Python 3.11+ or tomli")
CARTPOLE = ["--obs-shape", "4", "--action-dim", "2"]


def serve_error(capsys, *args: str) -> str:
    """Run ``serve`` with a command line it must refuse; return its one line of error."""
    with pytest.raises(SystemExit) as exit_info:
        serve.main(["--listen", "unix:///nonexistent/x.sock", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("replay-buffer serve: error: ")
    return err


@pytest.mark.parametrize(
    "args, says",
    [
        (["--capacity", "10"], "no schema: give --obs-shape and --action-dim"),
        (["--capacity", "0", *CARTPOLE], "--capacity must be at least 1, got 0"),
        (["--capacity", "10", "--obs-shape", "4"], "--action-dim is required"),
        (CARTPOLE, "--capacity is required"),
        (["--capacity", "10", *CARTPOLE, "--error-buffer", "3"], "--error-buffer needs --samples"),
        (["--capacity", "10", *CARTPOLE, "--alpha", "-1"], "--alpha must be finite and >= 0"),
        (["--capacity", "10", *CARTPOLE, "--action-dim", "0"], "--action-dim must be at least 1"),
        (["--capacity", "10", *CARTPOLE, "--max-batch", "0"], "--max-batch must be a positive"),
        (["--capacity", "10", "--field", "x:float32", *CARTPOLE], "--field NAME:DTYPE"),
        (["--capacity", "10", *CARTPOLE, "--token-file", "/nope"], "--token-file: cannot read"),
        (["--capacity", "x"], "argument --capacity: expected an int, got 'x'"),
        (["--capacity", "1", "--obs-shape", "a,b"], "expected a shape such as 84,84,4"),
        (["--capacity", "1", *CARTPOLE, "--rate-limit-timeout", "x"], "a number or none"),
        (["--capacity", "10", *CARTPOLE, "--shm-name", "a/b"], "shared buffer name 'a/b'"),
        (["--config", "/nonexistent/replay.toml"], "cannot read the config file"),
    ],
)
def test_serve_errors_speak_in_flags(capsys, args, says):
    err = serve_error(capsys, *args)
    assert says in err
    assert "[buffer]" not in err and "[transition]" not in err and "[server]" not in err
    assert "_shape" not in err and not re.search(r"(?<![-\w])[a-z]+_[a-z_]+ (must|is|needs)", err)


@needs_toml
def test_serve_errors_name_the_config_key_when_the_value_came_from_the_file(capsys, tmp_path):
    path = tmp_path / "replay.toml"
    path.write_text(
        "[buffer]\ncapacity = 0\n[transition]\nobs_shape = [4]\n[server]\nmax_batch = 0\n"
    )
    assert "[buffer] capacity must be at least 1" in serve_error(capsys, "--config", str(path))
    err = serve_error(capsys, "--config", str(path), "--capacity", "5")
    assert "--action-dim (or [transition] action_dim) is required" in err
    err = serve_error(capsys, "--config", str(path), "--capacity", "5", "--action-dim", "2")
    assert "[server] max_batch must be a positive int" in err
    path.write_text('[buffer]\ncapacity = "many"\n')
    assert "[buffer] capacity: expected an int, got 'many'" in serve_error(
        capsys, "--config", str(path)
    )
    path.write_text("[buffer]\ncapacity = 5\ncolour = 1\n")
    assert "[buffer]: unknown keys ['colour']" in serve_error(capsys, "--config", str(path))


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "replay_buffer", *args], capture_output=True, text=True, timeout=60
    )


def test_a_missing_config_file_is_one_line_and_a_usage_error():
    result = run_command("serve", "--config", "/nonexistent/replay.toml")
    assert result.returncode == 2
    assert result.stderr == (
        "replay-buffer serve: error: cannot read the config file /nonexistent/replay.toml: No such "
        "file or directory (see replay-buffer serve --help)\n"
    )


def test_a_buffer_too_large_for_the_machine_is_one_line_and_a_runtime_error():
    with tempfile.TemporaryDirectory(prefix="rbcli") as tmp:
        result = run_command(
            "serve", "--capacity", str(10**11), "--obs-shape", "84,84,4", "--obs-dtype", "uint8",
            "--action-dim", "6", "--listen", f"unix://{tmp}/rb.sock", "--status-interval", "0",
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "ERROR cannot create the buffer: buffer needs" in result.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"replay-buffer {replay_buffer.__version__}\n"


def every_help_text() -> dict[str, str]:
    top = main.__module__
    texts = {}
    for name, argv in {
        "replay-buffer": ["--help"],
        "demo": ["demo", "--help"],
        "bench": ["bench", "--help"],
        "serve": ["serve", "--help"],
        "shm": ["shm", "--help"],
        "shm ls": ["shm", "ls", "--help"],
        "shm info": ["shm", "info", "--help"],
        "shm rm": ["shm", "rm", "--help"],
    }.items():
        result = run_command(*argv)
        assert result.returncode == 0, (top, result.stderr)
        texts[name] = result.stdout
    return texts


def test_help_is_plain_text():
    texts = every_help_text()
    for name, text in texts.items():
        assert text.startswith("usage: replay-buffer"), name
        markup = re.findall(r"``|:(?:func|class|mod|meth|attr):|\.\. \w+::", text)
        assert not markup, f"{name} --help shows markup {markup}:\n{text}"
    for flag in ("--capacity", "--samples-per-insert", "--rate-limit-timeout"):
        assert flag in texts["serve"]


def test_every_tool_has_a_parser_with_one_line_errors():
    for parser in (serve.build_parser(), shm.build_parser()):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--no-such-flag"])
        assert exit_info.value.code == 2
    assert bench.main.__doc__


def closed_pipe_run(*args: str) -> subprocess.CompletedProcess:
    """Run a command whose stdout is a pipe nobody reads: closed before it writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "replay_buffer", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--capacity", "1000"],
        ["shm", "ls", "--all"],
        # argparse already ignores a failed write of help and version text: quiet either way
        ["--help"],
        ["--version"],
        ["serve", "--help"],
        ["shm", "--help"],
        ["bench", "--help"],
    ],
)
def test_a_closed_stdout_ends_a_command_quietly(args):
    result = closed_pipe_run(*args)
    assert result.stderr == ""
    assert result.returncode == (141 if "--help" not in args and "--version" not in args else 0)


def test_shm_info_into_a_closed_pipe(shm_name):
    with replay_buffer.ReplayBuffer(
        BufferConfig(capacity=10, seed=0), obs_shape=(4,), action_dim=2, shm_name=shm_name
    ):
        result = closed_pipe_run("shm", "info", shm_name)
    assert result.returncode == 141 and result.stderr == ""


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_errors_name_the_address(tmp_path):
    refused = f"tcp://127.0.0.1:{free_tcp_port()}"
    missing = f"unix://{tmp_path}/nobody.sock"
    for url, error in ((refused, ConnectionRefusedError), (missing, FileNotFoundError)):
        with pytest.raises(error, match=f"cannot connect to {re.escape(url)}: "):
            connect(url)
        with pytest.raises(error, match=f"cannot connect to {re.escape(url)}: "):
            replay_buffer.connect(url)
        with pytest.raises(error, match=f"cannot connect to {re.escape(url)}: "):
            asyncio.run(aio.connect(url))


def test_handshake_errors_name_the_address():
    server = ThreadedServer(cartpole(), token=b"secret")
    try:
        url = server.unix_url
        with pytest.raises(PermissionError, match=f"cannot connect to {url}: the server requires"):
            connect(url, token="wrong")
        with pytest.raises(PermissionError, match=f"cannot connect to {url}: the server requires"):
            asyncio.run(aio.connect(url, token="wrong"))
        with connect(url, token="secret") as client:
            assert client.size() == 0
    finally:
        server.stop()


# One declaration of the buffer's options: a value for every BufferConfig field, other than its
# default, as a flag's text and as a config file's value.
OPTION_VALUES = {
    "capacity": ("77", 77, 77),
    "strategy": ("rank", "rank", "rank"),
    "alpha": ("0.7", 0.7, 0.7),
    "beta": ("0.3", 0.3, 0.3),
    "eps": ("0.01", 0.01, 0.01),
    "seed": ("5", 5, 5),
    "min_size_to_sample": ("3", 3, 3),
    "samples_per_insert": ("2", 2.0, 2.0),
    "error_buffer": ("50", "50", 50.0),
    "rate_limit_timeout": ("none", "none", None),
}


def test_every_buffer_option_is_a_flag_and_a_config_key():
    names = [f.name for f in dataclasses.fields(BufferConfig)]
    assert sorted(OPTION_VALUES) == sorted(names)  # a new option: add a value above
    argv = [*CARTPOLE]
    for name, (text, _, _) in OPTION_VALUES.items():
        argv += ["--" + name.replace("_", "-"), text]
    from_flags = serve.config_from_args(serve.build_parser().parse_args(argv)).buffer_config()
    data = {
        "buffer": {name: value for name, (_, value, _) in OPTION_VALUES.items()},
        "transition": {"obs_shape": [4], "action_dim": 2},
    }
    from_file = from_dict(data).buffer_config()
    for name, (_, _, expected) in OPTION_VALUES.items():
        assert getattr(from_flags, name) == expected, name
        assert getattr(from_file, name) == expected, name
        assert getattr(BufferConfig(capacity=1), name) != expected, f"{name}: pick another value"


def test_the_handshake_describes_every_buffer_option():
    config = BufferConfig(capacity=50, strategy="rank", seed=3, samples_per_insert=2.0)
    server = ThreadedServer(replay_buffer.ReplayBuffer(config, obs_shape=(4,), action_dim=2))
    try:
        with connect(server.unix_url) as client:
            described = client.schema.info["config"]
    finally:
        server.stop()
    assert described == dataclasses.asdict(config)
