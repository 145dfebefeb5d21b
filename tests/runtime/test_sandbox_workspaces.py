"""Sandbox folders whose actor process died are swept; live ones and just-made ones are kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from beamray.sandbox import workspaces

HOLDER = """
import sys, time
from beamray.sandbox import workspaces
workspaces.claim(sys.argv[1])
print("claimed", flush=True)
time.sleep(600)
"""


def _hold(folder: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, folder], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "claimed"
    return process


def test_a_folder_whose_owner_was_killed_is_swept_and_a_live_one_is_kept(tmp_path):
    dead, live = str(tmp_path / "sandbox-dead"), str(tmp_path / "sandbox-live")
    killed, alive = _hold(dead), _hold(live)
    try:
        os.makedirs(os.path.join(dead, "workspace"))
        (tmp_path / "sandbox-dead" / "workspace" / "file.txt").write_text("left behind")
        assert workspaces.sweep(str(tmp_path), "sandbox-") == []  # both owners run
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert workspaces.sweep(str(tmp_path), "sandbox-") == ["sandbox-dead"]
        assert not os.path.exists(dead) and os.path.isdir(live)
    finally:
        alive.kill()
        alive.wait()
    assert workspaces.sweep(str(tmp_path), "sandbox-") == ["sandbox-live"]


def test_an_unclaimed_folder_is_kept_until_it_is_old_and_other_names_are_never_touched(tmp_path):
    fresh, stale, other = tmp_path / "sandbox-fresh", tmp_path / "sandbox-stale", tmp_path / "pod-x"
    for folder in (fresh, stale, other):
        folder.mkdir()
    old = time.time() - workspaces.UNCLAIMED_GRACE_S - 5
    for folder in (stale, other):
        os.utime(folder, (old, old))
    assert workspaces.sweep(str(tmp_path), "sandbox-") == ["sandbox-stale"]
    assert fresh.is_dir() and other.is_dir()
    assert workspaces.sweep(str(tmp_path / "missing"), "sandbox-") == []


def test_a_second_claim_on_a_held_folder_fails(tmp_path):
    holder = _hold(str(tmp_path / "sandbox-a"))
    try:
        with pytest.raises(BlockingIOError):
            workspaces.claim(str(tmp_path / "sandbox-a"))
    finally:
        holder.kill()
        holder.wait()
