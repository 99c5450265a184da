"""``replay-buffer shm ls|info|rm``."""

import json
import multiprocessing as mp
from multiprocessing import shared_memory

import numpy as np
import pytest

from replay_buffer import _core
from replay_buffer.tools.cli import main

import shm_support as s

pytestmark = pytest.mark.skipif(not _core.SHM_CAN_LIST, reason="listing needs /dev/shm")


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(["shm", *args])
    return exit_info.value.code, capsys.readouterr().out


@pytest.fixture
def foreign(shm_name):
    """A shared-memory object some other program made."""
    other = shared_memory.SharedMemory(name=shm_name + "f", create=True, size=4096)
    other.buf[:8] = b"otherapp"
    yield other.name.lstrip("/")
    other.close()
    try:
        other.unlink()
    except FileNotFoundError:
        pass


@pytest.fixture
def crashed(shm_name):
    """A shared buffer whose creator was killed."""
    ctx = mp.get_context("fork")
    creator = ctx.Process(target=s.crashing_creator, args=(shm_name + "c", ctx.Event()))
    creator.start()
    creator.join(30)
    yield shm_name + "c"
    try:
        _core.shm_unlink(shm_name + "c")
    except FileNotFoundError:
        pass


def test_ls_lists_buffers_and_their_creators(capsys, shm_name, foreign, crashed):
    with s.make(shm_name, capacity=100, strategy="rank") as buffer:
        buffer.add_batch(**s.rows(np.arange(30)))
        code, out = run(capsys, "ls")
        assert code == 0
        lines = {line.split()[0]: line for line in out.splitlines()}
        assert lines["NAME"].split() == [
            "NAME", "SIZE", "HELD", "STRATEGY", "CREATOR", "WRITERS", "FIELDS"
        ]  # fmt: skip
        ours = lines[shm_name].split()
        assert ours[3:5] == ["30/100", "rank"]
        assert "(alive)" in lines[shm_name] and "obs int64[8]" in lines[shm_name]
        assert "(dead)" in lines[crashed] and "10/64" in lines[crashed]
        assert foreign not in lines  # not a replay buffer: only with --all
        code, out = run(capsys, "ls", "--all")
        assert f"{foreign} " in out and "(not a replay buffer)" in out


def test_info_shows_everything(capsys, shm_name):
    with s.make(shm_name, capacity=64, strategy="prioritized") as buffer:
        buffer.add_batch(**s.rows(np.arange(70)))
        code, out = run(capsys, "info", shm_name)
        assert code == 0
        assert "transitions       64 of 64 (next key 70)" in out
        assert "fields            id int64, obs int64[8], check int64" in out
        assert "mode              600" in out
        code, out = run(capsys, "info", "--json", shm_name)
        info = json.loads(out)
        assert info["capacity"] == 64 and info["strategy"] == "prioritized"
        assert info["fields"]["obs"] == {"shape": [8], "dtype": "int64"}
        assert info["creator_alive"] is True and info["writers_live"] == 1
    code, out = run(capsys, "info", shm_name)
    assert code == 1 and out == f"replay-buffer shm info: no shared buffer named '{shm_name}'\n"


def test_rm_removes_only_what_nobody_owns(capsys, shm_name, foreign, crashed):
    with s.make(shm_name):
        code, out = run(capsys, "rm", shm_name, foreign, crashed)
        assert code == 1
        assert f"not removing '{shm_name}': its creator (pid" in out
        assert f"not removing '{foreign}': not a replay buffer (--force" in out
        assert f"removed {crashed}" in out
        assert _core.shm_list().count(shm_name) == 1
        code, out = run(capsys, "rm", "--force", shm_name, foreign)
        assert code == 0 and out.count("removed") == 2
        assert shm_name not in _core.shm_list() and foreign not in _core.shm_list()
    code, out = run(capsys, "rm", shm_name)
    assert code == 1 and "no shared buffer named" in out


def test_unusable_regions_are_listed_and_removable(capsys, shm_name):
    buffer = s.make(shm_name, keep=True)
    buffer.close()
    with open(f"/dev/shm/{shm_name}", "r+b") as region:
        region.truncate(4096)
    code, out = run(capsys, "ls")
    assert "(unusable:" in out and "truncated" in out
    code, out = run(capsys, "info", shm_name)
    assert code == 1 and "truncated or resized" in out
    code, out = run(capsys, "rm", shm_name)
    assert code == 0 and out == f"removed {shm_name}\n"
