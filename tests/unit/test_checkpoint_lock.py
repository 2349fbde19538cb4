"""One stream job per CHECKPOINT_DIR: a second one stops with one line naming the first; the
lock goes with its holder, however it ends (real processes, no Spark)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finstream.core.config import Settings
from finstream.core.errors import UserError
from finstream.stores import checkpoints


def settings_in(folder) -> Settings:
    return dataclasses.replace(Settings.load(), checkpoint_dir=str(folder))


def holder(folder) -> subprocess.Popen:
    """Another process holding the folder's lock until killed; returns once it holds it."""
    program = ("import dataclasses, sys, time; from finstream.core.config import Settings; "
               "from finstream.stores import checkpoints; "
               f"s = dataclasses.replace(Settings.load(), checkpoint_dir={str(folder)!r}); "
               "lock = checkpoints.one_job(s); lock.__enter__(); print('held', flush=True); time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_stream_job_on_the_same_checkpoints_is_refused_until_the_first_ends(tmp_path):
    folder = tmp_path / "checkpoints"
    first = holder(folder)
    try:
        started = time.monotonic()
        with pytest.raises(UserError) as refused, checkpoints.one_job(settings_in(folder), seconds=0.5):
            pass
        assert time.monotonic() - started >= 0.5  # it waited for the holder first
        assert str(refused.value) == (f"another stream job (pid {first.pid}) is using the checkpoints in {folder}: "
                                      "stop it, or give this job its own CHECKPOINT_DIR")
        with checkpoints.one_job(settings_in(tmp_path / "elsewhere"), seconds=0):
            pass  # another folder: no conflict
    finally:
        os.kill(first.pid, signal.SIGKILL)  # no clean-up runs: the kernel releases the lock
        first.wait()
    with checkpoints.one_job(settings_in(folder), seconds=0):
        assert (folder / checkpoints.JOB_LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError, match=f"another stream job \\(pid {os.getpid()}\\)"), \
                checkpoints.one_job(settings_in(folder), seconds=0):
            pass  # a second holder in this process is refused too (each opening is its own lock)
    with checkpoints.one_job(settings_in(folder), seconds=0):
        pass  # released on leaving


def test_a_checkpoint_folder_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError) as refused, checkpoints.one_job(settings_in(blocker / "checkpoints")):
        pass
    assert str(refused.value) == (f"cannot write checkpoints to {blocker / 'checkpoints'} ({blocker} is a file, not "
                                  "a folder): set CHECKPOINT_DIR to a folder this user can write")


@pytest.mark.parametrize("what", ["file", "dangling link", "looping link", "kernel folder",
                                  "dangling link as its parent", "file as its parent"])
def test_what_stands_where_the_checkpoint_folder_should_be_is_named(tmp_path, what):
    """mkdir says only "File exists" or "Not a directory" for a file or a broken symbolic link,
    there or at a parent."""
    folder, shown = tmp_path / "checkpoints", {
        "file": "a file, not a folder", "dangling link": f"a symbolic link to {tmp_path / 'gone'}, which does not "
        "exist", "looping link": "a symbolic link that loops", "kernel folder": "No such file or directory",
        "dangling link as its parent": f"{tmp_path / 'parent'} is a symbolic link to {tmp_path / 'gone'}, which "
        "does not exist", "file as its parent": f"{tmp_path / 'parent'} is a file, not a folder"}[what]
    if what == "file":
        folder.write_text("")
    elif what == "dangling link as its parent":
        (tmp_path / "parent").symlink_to(tmp_path / "gone")
        folder = tmp_path / "parent" / "checkpoints"
    elif what == "file as its parent":
        (tmp_path / "parent").write_text("")
        folder = tmp_path / "parent" / "sub" / "checkpoints"
    elif what == "dangling link":
        folder.symlink_to(tmp_path / "gone")
    elif what == "looping link":
        folder.symlink_to(folder)
    else:  # a folder that exists but takes no new file (as one of another user, to root too)
        folder = Path("/proc/self")
    with pytest.raises(UserError) as refused, checkpoints.one_job(settings_in(folder), seconds=0):
        pass
    assert str(refused.value) == (f"cannot write checkpoints to {folder} ({shown}): set CHECKPOINT_DIR to a folder "
                                  "this user can write")


def test_a_lock_file_that_cannot_be_opened_or_holds_no_pid(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / checkpoints.JOB_LOCK_FILE).mkdir(parents=True)  # say, made by hand
    with pytest.raises(UserError) as refused, checkpoints.one_job(settings_in(folder), seconds=0):
        pass
    assert str(refused.value) == (f"cannot open the stream job's lock file {folder / checkpoints.JOB_LOCK_FILE} "
                                  "(Is a directory): remove it if no stream job is running, or set CHECKPOINT_DIR to "
                                  "another folder")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / checkpoints.JOB_LOCK_FILE).symlink_to(tmp_path / "elsewhere")  # dangling: never followed
    with pytest.raises(UserError, match="Too many levels of symbolic links"), \
            checkpoints.one_job(settings_in(linked), seconds=0):
        pass
    assert not (tmp_path / "elsewhere").exists()
    other = tmp_path / "other"
    other.mkdir()
    with open(other / checkpoints.JOB_LOCK_FILE, "wb") as held:  # held by a tool that wrote no pid
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(b"\x00\x1b[31mRED\nline2")
        held.flush()
        with pytest.raises(UserError) as refused, checkpoints.one_job(settings_in(other), seconds=0):
            pass
    assert str(refused.value).startswith("another stream job (its pid unknown) is using the checkpoints in ")
