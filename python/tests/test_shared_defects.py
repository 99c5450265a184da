"""Shared buffers against a hostile or crowded host.

A full /dev/shm, a name removed and made again by someone else, a region another user owns, and a
corrupt byte in a header: each must give a clear error, never a crash, and never touch what is
not ours.
"""

import mmap
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from replay_buffer import BufferConfig, InvalidRegionError, ReplayBuffer, _core
from replay_buffer.tools import shm as shm_cli

import shm_support as s


def shm_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


# --- a full /dev/shm ------------------------------------------------------------------------

# Runs in a private mount namespace over a 64 MiB tmpfs on /dev/shm (Docker's default size).
FULL_SHM = textwrap.dedent(
    """
    import sys
    import numpy as np
    from replay_buffer import BufferConfig, CapacityError, ReplayBuffer

    ROW = 1024
    FIELDS = {"obs": {"shape": (ROW,), "dtype": np.uint8}}

    def make(name, mib):
        config = BufferConfig(capacity=mib * 1024)
        return ReplayBuffer(config, fields=FIELDS, shm_name=name)

    def fill(buffer):
        rows = np.full((1024, ROW), 7, dtype=np.uint8)
        for _ in range(buffer.capacity() // 1024):
            buffer.add_batch(obs=rows)

    scenario = sys.argv[1]
    first = make("first", 40)
    if scenario == "two-buffers":
        # Each passes a free-space check on its own; together they do not fit.
        try:
            second = make("second", 40)
        except CapacityError as error:
            print("CapacityError:", error, flush=True)
        else:
            fill(second)
    else:
        # Another program fills /dev/shm after the buffer was made.
        try:
            with open("/dev/shm/other-program", "wb") as f:
                for _ in range(30):
                    f.write(b"x" * 2**20)
        except OSError as error:
            print("the other program:", error, flush=True)
    fill(first)
    print("filled", len(first), flush=True)
    """
)


def run_with_small_shm(scenario: str) -> subprocess.CompletedProcess:
    if sys.platform != "linux":
        pytest.skip("/dev/shm is Linux's")
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs over /dev/shm in a private mount namespace")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) (util-linux)")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64m tmpfs /dev/shm"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private /dev/shm here: {probe.stderr.strip()}")
    script = 'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "$0" -c "$1" "$2"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, sys.executable, FULL_SHM, scenario],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_buffer_that_does_not_fit_raises_capacity_error():
    result = run_with_small_shm("two-buffers")
    assert result.returncode == 0, (
        f"exit {result.returncode} (-7 is SIGBUS): {result.stdout}{result.stderr}"
    )
    assert "CapacityError:" in result.stdout, result.stdout
    assert "/dev/shm" in result.stdout and "--shm-size" in result.stdout, result.stdout
    assert f"filled {40 * 1024}" in result.stdout


def test_another_program_filling_dev_shm_never_kills_a_writer():
    result = run_with_small_shm("other-program")
    assert result.returncode == 0, (
        f"exit {result.returncode} (-7 is SIGBUS): {result.stdout}{result.stderr}"
    )
    assert "No space left on device" in result.stdout, result.stdout
    assert f"filled {40 * 1024}" in result.stdout


# --- a name removed and made again ------------------------------------------------------------


def test_the_old_creator_never_removes_a_newer_buffer_of_its_name(shm_name):
    old = s.make(shm_name)
    _core.shm_unlink(shm_name)  # as `replay-buffer shm rm --force` does
    newer = s.make(shm_name, keep=True)
    newer.add_batch(**s.rows([1, 2, 3]))
    old.close()
    assert shm_exists(shm_name)
    with ReplayBuffer.attach(shm_name) as attached:
        assert len(attached) == 3
    newer.close()
    assert shm_exists(shm_name)  # kept, as asked
    # Without a newer object the creator still removes its own name.
    with s.make(shm_name + "x"):
        pass
    assert not shm_exists(shm_name + "x")


# --- a region another user owns --------------------------------------------------------------


def _create_as_nobody_and_keep(name: str) -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            config = BufferConfig(capacity=8)
            ReplayBuffer(config, fields=s.FIELDS, shm_name=name, shm_mode=0o666, shm_keep=True)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_attach_refuses_a_buffer_another_user_owns(shm_name, capsys):
    if os.geteuid() != 0:
        pytest.skip("needs root, to create a region as another user")
    _create_as_nobody_and_keep(shm_name)
    with pytest.raises(PermissionError, match=r"belongs to uid 65534.*this process's uid 0") as e:
        ReplayBuffer.attach(shm_name)
    assert shm_name in str(e.value) and "allow_other_owner=True" in str(e.value)
    with ReplayBuffer.attach(shm_name, allow_other_owner=True) as shared:
        shared.add_batch(**s.rows([5]))
        assert len(shared) == 1
    # Inspection still reads it, read-only.
    assert shm_cli.show_info(shm_name) == 0
    assert "owner uid 65534" in capsys.readouterr().out


def test_attach_allow_other_owner_must_be_a_bool(shm_name):
    with s.make(shm_name), pytest.raises(TypeError, match="allow_other_owner"):
        ReplayBuffer.attach(shm_name, allow_other_owner="yes")


# --- a corrupt byte in a header ---------------------------------------------------------------


def corrupt_field_name(name: str, field: bytes, byte: int) -> None:
    """Overwrite the second byte of field name ``field`` in the region's field records."""
    with open(f"/dev/shm/{name}", "r+b") as f, mmap.mmap(f.fileno(), 4096) as region:
        at = region.find(field + b"\0")
        assert at > 0
        region[at + 1] = byte


@pytest.mark.skipif(sys.platform != "linux", reason="corrupts the region through /dev/shm")
@pytest.mark.parametrize("byte", [0xFF, 0xC3, 0x01, ord(" ")])
def test_a_corrupt_field_name_is_an_invalid_region(shm_name, byte):
    with s.make(shm_name, keep=True) as created:
        created.add_batch(**s.rows([1]))
    corrupt_field_name(shm_name, b"obs", byte)
    with pytest.raises(InvalidRegionError, match="field record 1: name 'o.*' is not a field name"):
        ReplayBuffer.attach(shm_name)


@pytest.mark.skipif(sys.platform != "linux", reason="lists /dev/shm")
def test_one_corrupt_buffer_never_hides_the_others(capsys, shm_name):
    good = shm_name + "good"
    with s.make(shm_name, keep=True), s.make(good) as other:
        other.add_batch(**s.rows(np.arange(3)))
        corrupt_field_name(shm_name, b"obs", 0xFF)
        assert shm_cli.list_buffers() == 0
        out = capsys.readouterr().out
        listed = {line.split()[0]: line for line in out.splitlines()[1:]}
        assert "3/64" in listed[good], out
        assert "(unusable:" in listed[shm_name] and "not a field name" in listed[shm_name], out
        assert "\\xff" in listed[shm_name], out
        assert shm_cli.show_info(shm_name) == 1
        assert "not a field name" in capsys.readouterr().out
        assert shm_cli.show_info(good) == 0
