"""Task callbacks: Beam's signed POST, delivered to a real local HTTP server."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.server
import itertools
import json
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from beamray import RemoteExecutionError, callbacks, function


# Beam's docs, "Task Callbacks" → "Validating a Signature", verbatim.
def verify_signature(
    request_body: bytes, secret_key: str, timestamp: int, signature: str
):
    # Encode request body to Base64
    base64_payload = base64.b64encode(request_body).decode()

    # Create data to sign by concatenating base64 payload with timestamp
    data_to_sign = f"{base64_payload}:{timestamp}"

    # Initialize HMAC with SHA256 and secret key
    h = hmac.new(secret_key.encode(), data_to_sign.encode(), hashlib.sha256)

    # Compute the HMAC signature
    computed_signature = h.hexdigest()
    assert signature == computed_signature


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each request and answers scripted statuses."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answered in order; 200 once exhausted
        self.delay = 0.0  # seconds to wait before answering
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body, "at": time.monotonic()})
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private file store, so that signing_key() lives in tmp_path (no Ray)."""
    monkeypatch.setenv("BEAMRAY_SECRETS", f"file:{tmp_path / 'secrets.json'}")
    return tmp_path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sign_matches_beams_verification_code() -> None:
    body = json.dumps({"data": {"result": 10}}).encode()
    verify_signature(body, "my-token", 1700000000, callbacks.sign(body, 1700000000, "my-token"))
    with pytest.raises(AssertionError):
        verify_signature(body, "other-token", 1700000000, callbacks.sign(body, 1700000000, "my-token"))


def test_signing_key_is_made_once_and_private(store: Path) -> None:
    key = callbacks.signing_key()
    assert len(key) == 64 and int(key, 16) >= 0
    assert callbacks.signing_key() == key
    key_file = store / "signing_key"
    assert key_file.read_text() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_send_posts_signed_json_with_beams_headers(store: Path, receiver: Receiver) -> None:
    before = int(time.time())
    assert callbacks.send(receiver.url, "task-123", "COMPLETE", {"result": 10}) is True
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hook"
    assert json.loads(body) == {"data": {"result": 10}}
    assert headers["content-type"] == "application/json"
    assert headers["x-task-id"] == "task-123"
    assert headers["x-task-status"] == "COMPLETE"
    timestamp = int(headers["x-task-timestamp"])
    assert before <= timestamp <= int(time.time())
    verify_signature(body, callbacks.signing_key(), timestamp, headers["x-task-signature"])


def test_send_serialises_non_json_values_with_str(store: Path, receiver: Receiver) -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert callbacks.send(receiver.url, "t", "COMPLETE", {"when": when, "n": 1})
    assert json.loads(receiver.requests[0]["body"]) == {"data": {"when": str(when), "n": 1}}


def test_send_keeps_the_url_query(store: Path, receiver: Receiver) -> None:
    assert callbacks.send(receiver.url + "?env=staging", "t", "COMPLETE", None)
    assert receiver.requests[0]["path"] == "/hook?env=staging"
    assert json.loads(receiver.requests[0]["body"]) == {"data": None}


def test_503_twice_then_200_takes_three_attempts_with_backoff(store: Path, receiver: Receiver) -> None:
    receiver.statuses = [503, 503, 200]
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is True
    assert len(receiver.requests) == 3
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:])]
    assert 0.45 <= gaps[0] < 0.9 and 0.95 <= gaps[1] < 1.5
    for request in receiver.requests:  # each attempt signed with its own timestamp, and valid
        verify_signature(request["body"], callbacks.signing_key(), int(request["headers"]["x-task-timestamp"]),
                         request["headers"]["x-task-signature"])


def test_every_attempt_is_signed_when_it_is_sent(store: Path, receiver: Receiver,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Receivers reject signatures older than 5 s (Beam's advice): a retry must carry a fresh one."""
    clock = itertools.count(1_700_000_000, 10)
    monkeypatch.setattr(callbacks.time, "time", lambda: next(clock))
    monkeypatch.setattr(callbacks, "BACKOFF", (0.0, 0.0))
    receiver.statuses = [503, 503, 200]
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is True
    stamps = [int(r["headers"]["x-task-timestamp"]) for r in receiver.requests]
    assert len(stamps) == 3 and stamps == sorted(set(stamps))  # three attempts, three timestamps


@pytest.mark.parametrize("allowed, host, ok", [
    ("", "anything.example", True), ("hooks.example.com", "hooks.example.com", True),
    ("hooks.example.com", "169.254.169.254", False), ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com.evil.net", False), (" a.io , b.io ", "B.io", True),
])
def test_callback_hosts_allow_list(allowed: str, host: str, ok: bool) -> None:
    assert callbacks.host_allowed(host, allowed) is ok


def test_a_host_outside_the_allow_list_gets_nothing(store: Path, receiver: Receiver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEAMRAY_CALLBACK_HOSTS", "hooks.example.com")
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is False
    assert receiver.requests == []


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502])
def test_retryable_statuses_are_retried(store: Path, receiver: Receiver, status: int) -> None:
    receiver.statuses = [status, 200]
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is True
    assert len(receiver.requests) == 2


def test_gives_up_after_three_attempts(store: Path, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500, 500]
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is False
    assert len(receiver.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_client_errors_are_not_retried(store: Path, receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is False
    assert len(receiver.requests) == 1


def test_read_timeout_is_never_retried(store: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callbacks, "READ_TIMEOUT", 0.3)
    receiver.delay = 1.0
    started = time.monotonic()
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is False
    assert time.monotonic() - started < 1.0
    time.sleep(1.0)
    assert len(receiver.requests) == 1


def test_unreachable_server_returns_false_without_raising(store: Path) -> None:
    started = time.monotonic()
    assert callbacks.send(f"http://127.0.0.1:{_unused_port()}/hook", "t", "ERROR", {}) is False
    assert 1.4 <= time.monotonic() - started < 5  # 3 attempts: 0.5 s + 1 s of backoff


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com/x", "http://"])
def test_bad_url_returns_false_without_raising(store: Path, url: str) -> None:
    assert callbacks.send(url, "t", "COMPLETE", {}) is False


def test_store_failure_returns_false_without_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     receiver: Receiver) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BEAMRAY_SECRETS", f"file:{tmp_path / 'file' / 'secrets.json'}")  # under a file
    assert callbacks.send(receiver.url, "t", "COMPLETE", {}) is False
    assert receiver.requests == []


# --- end to end on the cluster: @function(callback_url=…) ------------------------------------------

# The URL is fixed when the module is imported (decorators run then); the fixture serves on that port.
_E2E_PORT = _unused_port()
CALLBACK_URL = f"http://127.0.0.1:{_E2E_PORT}/beam-callback"


@function(cpu=0.25, retries=0, callback_url=CALLBACK_URL)
def handler(x):
    return {"result": x}


@function(cpu=0.25, retries=0, callback_url=CALLBACK_URL)
def failing_handler():
    raise ValueError("boom")


@pytest.fixture
def e2e_receiver() -> Iterator[Receiver]:
    server = Receiver(_E2E_PORT)
    yield server
    server.close()


def _check_signed(request: dict[str, Any]) -> None:
    headers = request["headers"]
    verify_signature(request["body"], callbacks.signing_key(), int(headers["x-task-timestamp"]),
                     headers["x-task-signature"])


@pytest.mark.cluster
def test_function_callback_delivers_result_signed(ray_cluster: dict, e2e_receiver: Receiver) -> None:
    assert handler.remote(x=10) == {"result": 10}
    [request] = e2e_receiver.wait_for(1)
    assert request["path"] == "/beam-callback"
    assert json.loads(request["body"]) == {"data": {"result": 10}}
    assert request["headers"]["x-task-status"] == "COMPLETE"
    assert request["headers"]["x-task-id"]
    _check_signed(request)


@pytest.mark.cluster
def test_failing_function_sends_error_callback(ray_cluster: dict, e2e_receiver: Receiver) -> None:
    with pytest.raises(RemoteExecutionError, match="boom"):
        failing_handler.remote()
    [request] = e2e_receiver.wait_for(1)
    assert request["headers"]["x-task-status"] == "ERROR"
    assert json.loads(request["body"]) == {"data": {}}
    _check_signed(request)


@pytest.mark.cluster
def test_unreachable_callback_does_not_fail_the_task(ray_cluster: dict) -> None:
    assert handler.remote(x=3) == {"result": 3}  # nobody listens on CALLBACK_URL now
