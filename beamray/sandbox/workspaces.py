"""Sandbox folders on a node: each held by its actor's process, and swept once that process is gone.

A sandbox's folder (workspace and output files) is deleted by ``terminate``, but a sandbox whose actor
died (its node's raylet killed it, the cluster went down, ``kill -9``) never gets there. Every actor holds
an ``flock`` on ``<folder>/.owner`` for as long as its process lives; the kernel drops the lock with the
process, so a folder whose lock can be taken has no owner left. Each new sandbox actor sweeps those of
its node before making its own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time

OWNER_FILE = ".owner"
UNCLAIMED_GRACE_S = 60.0  # a folder without an owner file yet may be one being made right now


def claim(folder: str) -> int:
    """Make ``folder`` and hold it for this process; the returned descriptor keeps the lock (never close it)."""
    os.makedirs(folder, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(folder, OWNER_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def sweep(root: str, prefix: str) -> list[str]:
    """Delete the folders under ``root`` named ``prefix…`` whose owner process is gone; the names deleted."""
    try:
        names = [name for name in os.listdir(root) if name.startswith(prefix)]
    except FileNotFoundError:
        return []
    swept = []
    for name in names:
        folder = os.path.join(root, name)
        if _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(name)
    return swept


def _abandoned(folder: str) -> bool:
    try:
        fd = os.open(os.path.join(folder, OWNER_FILE), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:  # made by a process that had not claimed it yet, or an old layout
        try:
            return time.time() - os.stat(folder).st_mtime > UNCLAIMED_GRACE_S
        except FileNotFoundError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its actor still runs
    finally:
        os.close(fd)
    return True
