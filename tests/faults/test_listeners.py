"""Listeners and auth: the embedded head never runs without token auth, and nothing of its process tree
listens beyond loopback except what Ray gives no setting for (the allow-list below, each entry saying why).

psutil does not come with Ray here, so listening sockets are read from /proc (Linux).
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from beamray import cluster, head, ray_private

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

# (process title prefix, host): listeners Ray binds beyond loopback with no documented setting to move them.
ALLOWED = {
    # Each Serve replica's inter-deployment gRPC server: Ray 2.60 hard-codes add_port_to_grpc_server(server,
    # "[::]:0") in serve/_private/replica.py (no env var, gRPCOptions field or serve.start option binds it
    # elsewhere; ray-project/ray#64544). It carries Ray's token interceptor: unauthenticated calls are
    # refused (checked below).
    ("ray::ServeReplica:", "::"),
    ("ray::ServeReplica:", "0.0.0.0"),
}


# --- token auth is forced ---------------------------------------------------------------------------

class _FakeHead:
    """Stands in for ``ray start``: records what the head would have been started with."""

    started: list["_FakeHead"] = []

    def __init__(self, command: list[str], **kwargs) -> None:
        self.command, self.env, self.pid = command, kwargs["env"], os.getpid()
        _FakeHead.started.append(self)

    def poll(self) -> None:
        return None


def start_without_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> _FakeHead:
    """``head.start_embedded`` in a fresh home with ``ray start`` replaced: what it would run, and with what."""
    for name in ("BEAMRAY_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "BEAMRAY_SECRETS",
                 "BEAMRAY_STORE", "BEAMRAY_STORAGE_URL", "BEAMRAY_LOCAL_RESOURCES", "BEAMRAY_LOCAL_GPUS",
                 "BEAMRAY_SERVE_INGRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BEAMRAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    inherited = os.environ.get("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_MODE", inherited or "")  # the head sets it here: put back after the test
    if inherited is None:
        del os.environ["RAY_AUTH_MODE"]
    for name in ("BEAMRAY_LOCAL_PORT", "BEAMRAY_HTTP_PORT"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            monkeypatch.setenv(name, str(sock.getsockname()[1]))
    monkeypatch.setattr(subprocess, "Popen", _FakeHead)
    monkeypatch.setattr(head, "_wait_ready", lambda process, log_path, timeout: None)
    _FakeHead.started.clear()
    head.start_embedded()
    (started,) = _FakeHead.started
    return started


@pytest.mark.parametrize("inherited", ["disabled", "none", ""])
def test_an_inherited_auth_mode_never_turns_the_embedded_heads_auth_off(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], inherited: str) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", inherited)
    monkeypatch.setattr(ray_private, "reload_auth_config", lambda: None)
    started = start_without_ray(monkeypatch, tmp_path)
    assert started.env["RAY_AUTH_MODE"] == "token"
    assert len((tmp_path / "user" / ".ray" / "auth_token").read_text()) == 64  # the token it needs
    cluster.prepare_ray_environment(embedded=True)  # then this process connects to it (said only once)
    assert os.environ["RAY_AUTH_MODE"] == "token"
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"=> RAY_AUTH_MODE={inherited} overridden: the embedded cluster always uses token auth"]


def test_the_head_binds_loopback_by_its_documented_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    started = start_without_ray(monkeypatch, tmp_path)
    assert "--node-ip-address=127.0.0.1" in started.command and "--dashboard-host=127.0.0.1" in started.command
    assert started.env["RAY_AUTH_MODE"] == "token"
    assert capsys.readouterr().err == ""  # nothing overridden, nothing said


def test_a_driver_of_the_embedded_head_uses_token_auth_whatever_it_inherited(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    reloads = []
    monkeypatch.setattr(ray_private, "reload_auth_config", lambda: reloads.append(1))
    importlib.import_module("ray")  # imported already: its cached auth config must be refreshed

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster.prepare_ray_environment()  # a configured cluster: the user's choice stands
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and reloads == []
    cluster.prepare_ray_environment(embedded=True)
    assert os.environ["RAY_AUTH_MODE"] == "token" and reloads == [1]
    assert "RAY_AUTH_MODE=disabled overridden" in capsys.readouterr().err


# --- what listens -----------------------------------------------------------------------------------

def _process_tree(root: int) -> set[int]:
    """``root`` and its descendants (and anything left in its session: the head is a session leader)."""
    parents, sessions = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)], sessions[int(entry.name)] = int(fields[1]), int(fields[3])
    tree = {root} | {pid for pid, session in sessions.items() if session == root}
    while True:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        if not children:
            return tree
        tree |= children


def _socket_owners(pids: set[int]) -> dict[int, int]:
    """Socket inode → the pid holding it."""
    owners = {}
    for pid in pids:
        try:
            fds = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[len("socket:["):-1])] = pid
    return owners


def _host(hex_address: str, family: int) -> str:
    raw = bytes.fromhex(hex_address)
    words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]  # /proc prints each 32-bit word host-endian
    return socket.inet_ntop(family, b"".join(words) if sys.byteorder == "little" else raw)


def listeners(root: int) -> list[tuple[str, int, int]]:
    """(host, port, pid) of every listening TCP socket of ``root``'s process tree."""
    owners = _socket_owners(_process_tree(root))
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[9]) in owners:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((_host(address, family), int(port, 16), owners[int(fields[9])]))
    return found


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _refuses_calls_without_the_token(port: int) -> bool:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/ray.serve.ASGIService/HandleRequest", request_serializer=lambda x: x,
                                   response_deserializer=lambda x: x)
        try:
            call(b"", timeout=10)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


@pytest.mark.cluster
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc (Linux)")
def test_nothing_listens_beyond_loopback_but_the_allow_list(ray_cluster: dict) -> None:
    from beamray import config, deploy
    from tests.apps import web_app

    deploy.ensure_serve()
    record = deploy.deploy(web_app.multiply.parent.spec_for(web_app.multiply.func, "listener-audit"), code_root=REPO)
    try:
        found = listeners(ray_cluster["pid"])
        titles = {pid: _title(pid) for _, _, pid in found}
        ports = {port for _, port, _ in found}
        gcs_port = int(ray_cluster["address"].rpartition(":")[2])
        assert {gcs_port, config.http_port(), ray_cluster["client_port"]} <= ports, found  # the audit sees them
        assert any(title.startswith("ray::ServeReplica:listener-audit") for title in titles.values())

        exposed = [(host, port, titles[pid]) for host, port, pid in found if host not in LOOPBACK]
        unexpected = [item for item in exposed
                      if not any(item[2].startswith(prefix) and item[0] == host for prefix, host in ALLOWED)]
        assert unexpected == [], "\n".join(f"{host}:{port} {title[:120]}" for host, port, title in unexpected)
        for host, port, title in exposed:
            assert _refuses_calls_without_the_token(port), f"{host}:{port} {title[:120]} answers without the token"
    finally:
        deploy.delete(record.deployment_id)
