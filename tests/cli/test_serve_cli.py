"""``beamray serve FILE.py:HANDLER``: a real session on the shared cluster, driven over real HTTP.

The session runs as a subprocess (as a user runs it) on a copy of ``tests/apps/serve_app.py`` in a tmp
dir, so the test can edit the file and watch the reload. Argument errors go through click's CliRunner.
"""

from __future__ import annotations

import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from beamray.cli.main import cli
from beamray.cli.serve import COMMANDS, serve
from beamray.serve_bridge import dev, logs

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "apps" / "serve_app.py"
# `beamray serve` once cli/main.py registers the command; until then the same command object via a shim.
_SHIM = ("from beamray.cli.main import cli; from beamray.cli.serve import COMMANDS; "
         "[cli.add_command(c) for c in COMMANDS]; cli(prog_name='beamray')")
BEAMRAY = ["-m", "beamray.cli"] if "serve" in cli.commands else ["-c", _SHIM]


class Session:
    """A ``beamray serve`` subprocess whose output lines are collected by a reader thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, *BEAMRAY, "serve", *args], cwd=REPO, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self._new.empty()):
                raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
            try:
                self._new.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                pass

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _serve_records(name: str) -> list:
    from beamray import deploy

    return [record for record in deploy.list_deployments() if record.name == name]


def _post(url: str, token: str, **body: object) -> httpx.Response:
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    target = tmp_path / "serve_app.py"
    shutil.copy(APP, target)
    return target


@pytest.mark.cluster
def test_serve_streams_logs_reloads_and_ends_on_ctrl_c(ray_cluster, app_file: Path) -> None:
    from ray import serve as ray_serve

    from beamray import secrets

    session = Session(f"{app_file}:greet", "-t", "-1")
    try:
        url = session.wait_for(r"^=> URL: (\S+)$", 90).group(1)
        assert url.endswith("/endpoint/greeter-serve")
        session.wait_for(r"^=> Serving endpoint greeter-serve$", 1)
        session.wait_for(rf"Authorization: Bearer {re.escape(secrets.gateway_token())}", 1)
        token = secrets.gateway_token()

        response = _post(url, token, who="pytest")
        assert response.status_code == 200, response.text
        assert response.json() == {"greeting": "hello pytest", "result": "first"}
        session.wait_for(r"^greeter handling who=pytest$", 20)  # printed inside the replica
        [record] = _serve_records("greeter-serve")
        assert (record.version, record.status) == (1, "running")

        original = app_file.read_text()
        app_file.write_text(original + "\ndef broken(:\n")
        session.wait_for(r"^=> Reload failed; still serving v1$", 60)
        session.wait_for(r"SyntaxError", 1)
        assert _post(url, token, who="meanwhile").json()["result"] == "first"

        app_file.write_text(original.replace('RESULT = "first"', 'RESULT = "second"'))
        session.wait_for(r"^=> Reloaded \(v2\)$", 60)
        response = _post(url, token, who="again")
        assert response.status_code == 200, response.text
        assert response.json()["result"] == "second"
        session.wait_for(r"^greeter handling who=again$", 20)  # the new replica's logs are followed too
        assert [r.version for r in _serve_records("greeter-serve")] == [2]  # v1 stopped and forgotten
        assert session.count("greeter handling who=pytest") == 1, "\n".join(session.lines)  # no copy by Ray

        session.process.send_signal(signal.SIGINT)
        assert session.process.wait(60) == 0
        session.wait_for(r"^=> Serve session ended$", 5)
        assert _serve_records("greeter-serve") == []
        assert not [name for name in ray_serve.status().applications if name.startswith("greeter-serve-v")]
    finally:
        session.end()


@pytest.mark.cluster
def test_serve_ends_after_the_inactivity_timeout(ray_cluster, app_file: Path) -> None:
    session = Session(f"{app_file}:greet", "--timeout", "2")
    try:
        session.wait_for(r"^=> Stops after 2s without requests$", 90)
        assert session.process.wait(60) == 0
        session.wait_for(r"^=> No requests for 2s$", 1)
        session.wait_for(r"^=> Serve session ended$", 1)
        assert _serve_records("greeter-serve") == []
    finally:
        session.end()


def test_commands_export_serve() -> None:
    assert COMMANDS == [serve]


@pytest.mark.parametrize("target", ["serve_app.py", "nope.py:greet", "tests/apps/serve_app.py:bad-name"])
def test_a_bad_target_is_a_usage_error(target: str) -> None:
    result = CliRunner().invoke(serve, [target])
    assert result.exit_code == 2
    assert "HANDLER" in result.output


def test_a_non_web_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(serve, ["tests/apps/serve_app.py:helper"])
    assert result.exit_code == 2
    assert "is not a web endpoint (@endpoint, @asgi or @realtime)" in result.output


def test_a_timeout_below_minus_one_is_a_usage_error() -> None:
    result = CliRunner().invoke(serve, ["tests/apps/serve_app.py:greet", "-t", "-2"])
    assert result.exit_code == 2
    assert "--timeout" in result.output


def test_serve_is_a_no_op_while_a_reload_or_a_replica_imports_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module-level ``greet.serve()`` must not start a session inside a reload or a replica."""
    sys.path.insert(0, str(APP.parent))
    try:
        import serve_app
    finally:
        sys.path.remove(str(APP.parent))
    monkeypatch.setenv(dev.RELOAD_ENV, "1")
    assert serve_app.greet.serve() is None
    monkeypatch.delenv(dev.RELOAD_ENV)
    monkeypatch.setenv("CONTAINER_ID", "endpoint-1234")
    assert serve_app.greet.serve(timeout=-1) is None


def test_names_and_deploy_output() -> None:
    assert dev.serve_name("multiply") == "multiply-serve"
    assert len(dev.serve_name("x" * 63)) == 63
    assert dev._json_object('warning\n{\n  "deployment_id": "d", "version": 2\n}\n') == {
        "deployment_id": "d", "version": 2}
    assert dev._json_object("Error: boom") is None


def test_only_shipped_python_files_trigger_a_reload(tmp_path: Path) -> None:
    (tmp_path / ".beamignore").write_text("scratch\n")
    accept = dev._python_filter(str(tmp_path))
    modified = 2  # watchfiles.Change.modified
    assert accept(modified, str(tmp_path / "app.py"))
    assert accept(modified, str(tmp_path / "pkg" / "helpers.py"))
    assert not accept(modified, str(tmp_path / "notes.txt"))
    assert not accept(modified, str(tmp_path / "scratch" / "tmp.py"))
    assert not accept(modified, str(tmp_path / "__pycache__" / "app.cpython-311.pyc"))


def test_log_lines_are_split_and_ray_markers_dropped() -> None:
    seen: list[str] = []
    follower = logs.LogFollower.__new__(logs.LogFollower)
    follower.emit = seen.append
    follower._lines(iter([":job_id:01000000\n:actor_name:ServeReplica:a:b\nhel", "lo\nwor", "ld\r\n", "tail"]))
    assert seen == ["hello", "world", "tail"]


def test_remote_replica_logs_come_from_the_dashboard_log_api() -> None:
    """Replicas on other nodes are followed through ``/api/v0/logs/stream`` (what ``get_log`` calls)."""
    import http.server
    from types import SimpleNamespace

    requests: list[str] = []

    class Dashboard(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            requests.append(self.path)
            if "missing" in self.path:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"Agent for node id abc doesn't exist.")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for chunk in (b":actor_name:ServeReplica:a-v1:a\nfirst li", b"ne\nsecond line\n"):
                self.wfile.write(chunk)
                self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        lines: list[str] = []
        notes: list[str] = []
        actor = SimpleNamespace(actor_id="ab12", name="SERVE_REPLICA::a-v1#a#x", pid=1, node_id="other-node")
        follower = logs.LogFollower(actor, url, lines.append, notes.append)
        follower._stream("out")
        assert lines == ["first line", "second line"]
        assert requests[0].startswith("/api/v0/logs/stream?") and "actor_id=ab12" in requests[0]
        assert "suffix=out" in requests[0] and "lines=-1" in requests[0]

        missing = logs.LogFollower(SimpleNamespace(actor_id="missing", name="r", pid=1, node_id="other"), url,
                                  lines.append, notes.append)
        missing._follow("err")
        assert notes == ["Cannot follow the err log of r: Agent for node id abc doesn't exist."]
    finally:
        server.shutdown()
