"""Exclusive locks between processes on one machine (or one NFS mount): `flock` on a lock file.

A lock is released by the kernel when its holder exits, however it exits (SIGKILL included),
so a lock file left behind holds nothing."""

from __future__ import annotations

import fcntl
import time

POLL_SECONDS = 0.05


def acquire(descriptor: int, seconds: float) -> bool:
    """Takes an exclusive lock on an open file, waiting at most `seconds` for its holder.

    Args:
        descriptor: the lock file, opened read-write where it can be (`flock` over NFS needs a
            file open for writing).
        seconds: how long to wait for another process to release it (0: try once).

    Returns:
        True once held (until the descriptor is closed); False when another process held it
        all that time.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
