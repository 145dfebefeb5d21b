"""Beam's ``Sandbox`` as a user drives it: ``beamray run app.py`` programs and the lines they print.

Docs: Sandbox › Overview, Process Management, File System Operations, Networking, Snapshots (and issue 14).
The issue's concurrency check (20 sandboxes × 50 execs) is scaled to 6 × 20 for this 2-core machine;
``benchmarks/bench_sandbox.py`` runs the full size.
"""

from __future__ import annotations

import socket
import threading

import httpx

from tests.conformance.conftest import wait_for
from tests.conformance.support import program_lines, run_program


def scenario(user, name: str, *args: str) -> list[str]:
    """``beamray run app.py NAME ARGS…`` in a fresh copy of the ``sandbox_checks`` project."""
    project = user.project("sandbox_checks", folder=f"sandbox_checks_{name}")
    return program_lines(user.beamray("run", "app.py", name, *args, cwd=project).stdout)


def test_issue_example_and_connect_from_a_second_process(user):
    printed = run_program(user, "sandbox_example")
    assert printed[:3] == ["0 3", "hi", "RUNNING"]
    sandbox_id, url = printed[3:5]
    assert sandbox_id.startswith("sandbox-") and url.endswith(f"/pod/container/{sandbox_id}/18080")

    def served() -> httpx.Response | None:  # the server inside may still be starting (502 until it listens)
        response = httpx.get(url + "/a.txt", timeout=10)
        return response if response.status_code == 200 else None
    assert wait_for(served, timeout=30, what="the sandbox's http.server through the gateway").text == "hi"
    # `container exec` runs inside it, as its processes do: its user, its /workspace
    inside = user.beamray("container", "exec", sandbox_id, "--", "sh", "-c", "id -u; pwd; cat a.txt; echo")
    assert inside.stdout.split() == ["65534", "/workspace", "hi"], inside
    # The sandbox outlived its creator; another program reaches it by id, then terminates it.
    assert run_program(user, "sandbox_connect", sandbox_id) == ["hi", "hi", "STOPPED"]


def test_output_streams_while_the_process_runs(user):
    assert scenario(user, "streaming") == [
        "line 0 RUNNING", "line 1 RUNNING", "line 2 RUNNING", "exit 0", "exit 3 out err ['err', 'out']"]


def test_kill_ends_the_whole_process_tree(user):
    assert scenario(user, "kill") == [
        "started (-1, 'RUNNING')", "exit -9 (-9, 'EXITED')", "sleeps left 0"]


def test_only_workspace_is_writable_and_code_runs_unprivileged(user):
    printed = scenario(user, "readonly")
    assert printed[:2] == ["['ok', '65534']", "True"]
    assert printed[2].startswith("refused") and "only paths under /workspace" in printed[2]


def test_block_network_cannot_reach_a_listener_outside(user):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()
    try:
        printed = scenario(user, "network", str(listener.getsockname()[1]))
    finally:
        stop.set()
        listener.close()
    assert printed == ["block_network False exit 0 connected", "block_network True exit 1"]


def test_keep_warm_seconds_expiry_terminates_the_sandbox(user):
    printed = scenario(user, "ttl")
    assert printed[:2] == ["RUNNING", "STOPPED"]
    assert printed[2].startswith("gone sandbox sandbox-") and "expired" in printed[2]


def test_image_from_filesystem_starts_the_next_sandbox_with_its_files(user):
    assert scenario(user, "image") == ["True 0 kept"]


def test_concurrent_sandboxes_see_only_their_own_files(user):
    assert scenario(user, "concurrency", "6", "20") == ["True 6"]


def test_bad_input_gets_clear_errors(user):
    printed = scenario(user, "errors")
    assert printed[0] == "SandboxProcessError Process with pid 99999 not found in this sandbox"
    assert printed[1].startswith("SandboxProcessError exec 'no-such-binary' failed") and "No such file" in printed[1]
    assert printed[2].startswith("SandboxFileSystemError read '/workspace/../etc/shadow'")
    assert "only paths under /workspace" in printed[2] and "/etc/shadow" in printed[2]
    assert "only paths under /workspace" in printed[3]
    assert printed[4].endswith("no such file")
    assert printed[5].endswith("the path leads out of the workspace through a symbolic link")
    assert printed[6].startswith("SandboxConnectionError sandbox sandbox-0000 is not running")
    assert printed[7].startswith("UnsupportedFeatureError Sandbox docker_enabled=True is not supported")
    assert len(printed) == 8


# -- the engine's pieces on their own (no cluster): the agent in bubblewrap, and the workspace path rules ----

def test_agent_runs_isolated_processes_and_kills_their_tree(tmp_path):
    import os
    import time

    import pytest

    from beamray.sandbox import isolation
    from beamray.sandbox.errors import SandboxProcessError
    from beamray.sandbox.processes import Agent

    if isolation.probe().mode != "bubblewrap":
        pytest.skip(isolation.probe().detail)
    workspace, out = tmp_path / "workspace", tmp_path / "out"
    for folder in (workspace, out):
        folder.mkdir()
        isolation.give_to_sandbox_user(str(folder))
    env = {"PATH": isolation.sandbox_path_env(), "HOME": "/workspace"}
    agent = Agent(isolation.agent_command(str(workspace), str(out), block_network=True, env=env), str(out),
                  str(workspace), env)
    try:
        pid = agent.exec(["sh", "-c", "id -u; echo hi > /workspace/a; touch /usr/x"], "/workspace", {}, None)
        assert agent.wait(pid, 10) == 1  # the write to /usr failed
        assert agent.read(pid, "stdout", 0, 0) == (f"{isolation.SANDBOX_UID}\n".encode(), True)
        assert b"Read-only file system" in agent.read(pid, "stderr", 0, 0)[0]
        assert (workspace / "a").read_text() == "hi\n"
        tree = agent.exec(["sh", "-c", "sleep 60 & sleep 60 & wait"], "/workspace", {}, None)
        time.sleep(0.2)
        agent.kill(tree)
        assert agent.wait(tree, 10) == -9
        with pytest.raises(SandboxProcessError, match="No such file"):
            agent.exec(["no-such-binary"], "/workspace", {}, None)
        with pytest.raises(SandboxProcessError, match="pid 12345 not found"):
            agent.get(12345)
    finally:
        agent.stop()
    assert not agent.alive()
    assert os.listdir(out)  # outputs were files the actor read


def test_workspace_paths_stay_inside_the_workspace(tmp_path):
    import pytest

    from beamray.sandbox.errors import SandboxFileSystemError
    from beamray.sandbox.fs import Files

    files = Files(str(tmp_path), "sandbox-test")
    files.write_bytes("/workspace/d/a.txt", b"x", 0o600)
    assert files.read_bytes("d/a.txt") == b"x" and files.stat("d/a.txt")["permissions"] == 0o600
    assert [info["name"] for info in files.list("/workspace")] == ["d"]
    for bad in ("/etc/passwd", "/workspace/../etc/passwd", "../x", "", "/workspacex/a"):
        with pytest.raises(SandboxFileSystemError, match="only paths under /workspace|non-empty"):
            files.read_bytes(bad)
    (tmp_path / "link").symlink_to("/etc/hostname")
    with pytest.raises(SandboxFileSystemError, match="symbolic link"):
        files.read_bytes("link")
    files.write_bytes("code.py", b"old = 1\nold()\n", 0o644)
    found = files.find("/workspace", r"old")
    assert found[0]["path"] == "/workspace/code.py" and len(found[0]["matches"]) == 2
    assert files.replace("/workspace", "old", "new", False) == 1
    assert files.read_bytes("code.py") == b"new = 1\nnew()\n"
    with pytest.raises(SandboxFileSystemError, match="is a directory"):
        files.delete("d", "file")
    files.delete("d", "any")
    assert not (tmp_path / "d").exists()


def test_sandbox_arguments_are_checked_when_built():
    import pytest

    from beamray import Sandbox
    from beamray.exceptions import UnsupportedFeatureError

    sandbox = Sandbox(cpu="500m", memory="1Gi", keep_warm_seconds=-1)
    assert (sandbox.cpu, sandbox.memory, sandbox.keep_warm_seconds) == (0.5, 1024, -1.0)
    for kwargs, named in (({"allow_list": ["pypi.org"]}, "allow_list"), ({"docker_enabled": True}, "docker_enabled"),
                          ({"use_vm": True}, "use_vm"), ({"pool": "p"}, "pool")):
        with pytest.raises(UnsupportedFeatureError, match=named):
            Sandbox(**kwargs)
    with pytest.raises(ValueError, match="keep_warm_seconds must be -1"):
        Sandbox(keep_warm_seconds=0)
    with pytest.raises(ValueError, match="CPU value out of range"):
        Sandbox(cpu=0.01)
    with pytest.raises(UnsupportedFeatureError, match="CRIU"):
        Sandbox().create_from_memory_snapshot("snap")
