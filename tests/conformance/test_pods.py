"""Beam's Pods (docs: "Running Arbitrary Code", "Deploying a Pod", "Networking"), deployed, created and run
through the ``beamray`` command and reached with real HTTP and WebSocket clients through the gateway."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import threading
import time
import uuid
from typing import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from tests.conformance.conftest import wait_for
from tests.conformance.support import deployed, gateway, program_lines, remove, websocket_url


def _anonymous(user) -> httpx.Client:
    return user.http(authorized=False)


PROBE = """
import json, ray
from beamray import cluster
cluster.connect()
print(json.dumps(sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                        if a["name"].startswith("pod-"))))
"""


def _pod_actors(user) -> list[str]:
    """The pod containers alive now, as the operator's Ray sees them (named actors ``pod-<stub>-<hex>``)."""
    project = user.root / "projects" / "pod_probe"
    project.mkdir(parents=True, exist_ok=True)
    (project / "probe.py").write_text(PROBE)
    return json.loads(program_lines(user.beamray("run", "probe.py", cwd=project).stdout)[-1])


def test_the_docs_pod_is_deployed_fetched_idle_stopped_and_restarted_by_a_request(user):
    project = user.project("pod_http_server")
    human = user.beamray("deploy", "app.py:pod", "--keep-warm-seconds", "3", cwd=project).stdout
    try:
        assert "=> Deployed" in human, human
        url = next(line.split("Public URL: ", 1)[1] for line in human.splitlines() if "Public URL: " in line)
        client = _anonymous(user)  # authorized=False is a pod's default: no token
        listing = client.get(url + "/")
        assert listing.status_code == 200, listing.text
        assert "Directory listing" in listing.text and "app.py" in listing.text  # the shipped code
        by_name = client.get("/pod/my-deployed-pod/app.py")
        assert by_name.status_code == 200 and "my-deployed-pod" in by_name.text
        assert client.get("/pod/my-deployed-pod", follow_redirects=False).status_code == 307  # to the slash form

        wait_for(lambda: not _pod_actors(user), timeout=60, what="the idle pod to stop after keep_warm_seconds")
        again = client.get(url + "/")  # the request waits while a new container starts
        assert again.status_code == 200 and "app.py" in again.text, (again.status_code, again.text)
        assert len(_pod_actors(user)) == 1
    finally:
        remove(user, "my-deployed-pod")
    assert _anonymous(user).get(url + "/").status_code == 404


def test_a_pod_streams_both_ways_and_serves_websockets_behind_the_token(user):
    project = user.project("pod_streaming")
    with deployed(user, project, "app.py:streamer") as deployment:
        assert deployment["kind"] == "pod"
        assert _anonymous(user).get("/pod/streamer/stream").status_code == 401  # authorized=True
        client = gateway(user)
        assert deployment["url"].endswith("/pod/streamer/v1"), deployment  # the version URL, with the token
        assert client.get(deployment["url"] + "/stream").text.startswith("line 0\n")
        arrivals = []
        with client.stream("GET", "/pod/streamer/stream") as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                arrivals.append((time.monotonic(), line))
        assert [line for _, line in arrivals] == [f"line {n}" for n in range(5)]
        assert arrivals[-1][0] - arrivals[0][0] > 0.5  # lines came as written, not all at the end

        def body():
            for _ in range(64):
                yield b"x" * 65536  # 4 MiB, chunked: streamed to the pod, never buffered whole

        echoed = client.post("/pod/streamer/echo", content=body())
        assert echoed.json() == {"received": 64 * 65536}

        headers = {"Authorization": client.headers["Authorization"]}
        with connect(websocket_url(user, "/pod/streamer/ws"), additional_headers=headers, open_timeout=60) as ws:
            ws.send("hello")
            assert ws.recv(timeout=30) == "echo: hello"


def test_a_pod_with_two_ports_is_reached_on_each(user):
    project = user.project("pod_two_ports")
    with deployed(user, project, "app.py:pod") as deployment:
        assert deployment["url"].endswith("/<PORT>"), deployment  # Beam's template for several ports
        client = _anonymous(user)
        assert client.get(deployment["url"].replace("<PORT>", "8888") + "/which.txt").text == "notebook\n"
        assert client.get(deployment["url"].replace("<PORT>", "3000") + "/which.txt").text == "webapp\n"
        assert client.get("/pod/two-ports/which.txt").text == "notebook\n"  # no port: the first one


def test_create_wait_terminate_from_a_script(user):
    lines = program_lines(user.beamray("run", "app.py", cwd=user.project("pod_create")).stdout)
    assert "ok: True " in lines[0] + " ", lines
    assert lines[1].startswith("container: pod-"), lines
    assert "/pod/container/pod-" in lines[2], lines
    assert lines[3:] == ["ready: True", "status: 200 listing app.py: True", "state: RUNNING", "terminated: True",
                         "after: STOPPED"], lines


def test_beamray_run_runs_a_pod_object_and_the_handler_less_form(user):
    project = user.project("pod_http_server", folder="pod_run")
    made = json.loads(user.beamray("run", "app.py:pod", "--detach", "--json", "--cpu", "0.5", cwd=project).stdout)
    assert made["ok"] and made["container_id"].startswith("pod-"), made
    assert _anonymous(user).get(made["url"] + "/").status_code == 200
    user.beamray("run", "--detach", "--cpu", "0.5", "--ports", "8000", "--env", "WHO=docs",
                 "--entrypoint", "python -m http.server 8000", cwd=project)
    bad = user.beamray("run", "--image", "python:3.11", "--ports", "8888", "--entrypoint",
                       "python -m http.server 8888", cwd=project, check=False)
    assert bad.returncode != 0 and "base_image" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_a_crashing_entrypoint_shows_its_exit_code_and_output(user):
    lines = program_lines(user.beamray("run", "app.py", cwd=user.project("pod_crash")).stdout)
    assert lines[:3] == ["ok: True", "ready: False", "status: FAILED exit code: 1"], lines
    assert lines[3] == "tail: starting up | fatal: no model found", lines
    broken = user.project("pod_crash", folder="pod_crash_deploy")  # a deploy fails at once, with the output
    failed = user.beamray("deploy", "app.py:crasher", "--name", "crasher", cwd=broken, check=False)
    assert failed.returncode != 0 and "exited with code 1" in failed.stderr, failed.stderr
    assert "fatal: no model found" in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


def test_bad_pods_are_refused_with_one_clear_message(user):
    project = user.project("pod_http_server", folder="pod_bad")
    tcp = user.beamray("deploy", "app.py:pod", "--tcp", cwd=project, check=False)
    assert tcp.returncode != 0 and "tcp" in tcp.stderr and "Traceback" not in tcp.stderr, tcp.stderr
    ports = user.beamray("deploy", "app.py:pod", "--ports", "8000,99999", cwd=project, check=False)
    assert ports.returncode != 0 and "65535" in ports.stderr and "Traceback" not in ports.stderr, ports.stderr



def _machine_address() -> str:
    """This machine's address on its network (not loopback): where a server outside any pod listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the outgoing interface
        return probe.getsockname()[0]


@contextlib.contextmanager
def _outside_server(body: bytes) -> Iterator[str]:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((_machine_address(), 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{server.server_address[0]}:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_a_pod_reaches_the_network_outside_but_not_the_nodes_loopback(user):
    if shutil.which("slirp4netns") is None:
        pytest.skip("slirp4netns is not installed (.ci/run installs it)")
    token = uuid.uuid4().hex.encode()
    gateway_port = httpx.URL(user.config()["gateway_url"]).port
    with _outside_server(token) as outside:
        project = user.project("pod_outbound")
        made = user.deploy(project, "app.py:pod", "--env", f"TARGET_URL={outside}",
                           "--env", f"NODE_LOOPBACK_URL=http://10.0.2.2:{gateway_port}/")
        try:
            reached = _anonymous(user).get(made["url"] + "/reached.json")
            assert reached.status_code == 200, reached.text
            assert reached.json()["TARGET_URL"] == token.decode(), reached.json()
            assert reached.json()["NODE_LOOPBACK_URL"].startswith("unreachable: "), reached.json()
        finally:
            remove(user, "outbound-pod")
