"""The HTTP gateway at ``/``: Beam's alias URLs, task queues, the task API, outputs, and 404s.

Each deployed web version is its own Serve application at ``/{kind}/{name}/v{N}``, reached by Serve's
proxy directly (no extra hop). The gateway catches what no version prefix matched: ``/{kind}/{name}``,
``…/latest``, ``/{kind}/id/{stub}``, ``/{kind}/public/{stub}`` (forwarded to the right version's replica
through a deployment handle: one extra hop, buffered responses); every ``/taskqueue/…`` URL (a POST
enqueues into the task service); Beam's task API under ``/v2/task/``; and signed output links.

It faces the network unauthenticated, so it does the cheap refusals before any work: the token (when the
deployment wants one) and ``Content-Length`` before reading a body (401, 413), a whole body within
``BODY_TIMEOUT_S`` (else 408), and at most ``MAX_IN_FLIGHT_PER_CLIENT`` requests in flight per client IP
(as the ASGI scope gives it: Serve's proxy passes the peer address; ``X-Forwarded-For`` is not trusted,
so behind a load balancer the cap is shared by everyone it forwards for) — more answer 429. Registry
loads are rate-limited (``gateway_routes``). The task service's refusals map to 429 (queue full) and 503
with ``Retry-After`` (its store is down). Every ``OUTPUT_CLEANUP_INTERVAL_S`` the gateway removes expired
outputs, whichever storage backend holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import Counter
from typing import Any

from ray import serve

from beamray.exceptions import StoreUnavailableError, TaskQueueFullError, TaskTooLargeError
from beamray.registry import DeploymentRecord
from beamray.serve_bridge.asgi import (MAX_BODY_BYTES, Disconnected, PayloadError, TooLarge, declared_too_large,
                                       header_map, parse_payload, read_body)
from beamray.serve_bridge.gateway_routes import Routes
from beamray.specs import QUEUED_KINDS

BODY_TIMEOUT_S = float(os.environ.get("BEAMRAY_BODY_TIMEOUT_S", "30"))  # read where the gateway runs
MAX_IN_FLIGHT_PER_CLIENT = 64
OUTPUT_CLEANUP_INTERVAL_S = 300.0
POLL_MIN_S, POLL_MAX_S = 0.1, 0.5  # a subscription polls the task service, backing off to POLL_MAX_S

_log = logging.getLogger(__name__)


def _json(status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> dict[str, Any]:
    return {"status": status, "headers": [(b"content-type", b"application/json"), *headers],
            "body": json.dumps(body).encode()}


class _Reply(Exception):
    """Stop handling the request and answer ``response``."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response["status"])
        self.response = response


async def _service(method: str, *args: Any) -> Any:
    """Call the task service; its refusals become replies (Ray wraps them: ``.cause`` is the original)."""
    from beamray.tasks import client

    try:
        return await getattr(client.service(), method).remote(*args)
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TaskQueueFullError):
            raise _Reply(_json(429, {"error": str(cause)})) from None
        if isinstance(cause, StoreUnavailableError):
            raise _Reply(_store_down(cause)) from None
        if isinstance(cause, TaskTooLargeError):
            raise _Reply(_json(413, {"error": str(cause)})) from None
        raise


def _store_down(error: StoreUnavailableError) -> dict[str, Any]:
    return _json(503, {"error": str(error)}, ((b"retry-after", b"1"),))


async def _send(send: Any, response: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": response["status"], "headers": response["headers"]})
    await send({"type": "http.response.body", "body": response["body"]})


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class GatewayApp:
    """Plain ASGI: bodies and headers pass to the deployment unchanged."""

    def __init__(self) -> None:
        from beamray import secrets
        from beamray.serve_bridge.replica import bearer_check

        self._routes = Routes()
        self._handles: dict[str, Any] = {}
        self._authorized = bearer_check(secrets.gateway_token())
        self._in_flight: Counter[str] = Counter()
        self._janitor: asyncio.Task[None] | None = None
        self.subscriptions = 0  # open task subscriptions
        self.polls = 0  # task service polls made by subscriptions
        self.output_cleanups = 0

    def stats(self) -> dict[str, int]:
        """Counters for operators and tests: registry loads, open subscriptions, polls, cleanups, in flight."""
        return {"registry_loads": self._routes.loads, "subscriptions": self.subscriptions, "polls": self.polls,
                "output_cleanups": self.output_cleanups, "in_flight": sum(self._in_flight.values())}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._clean_outputs())
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            self._janitor.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4404, "reason": "connect to /realtime/NAME, /realtime/NAME/latest or /realtime/NAME/vN"})
            return
        peer = (scope.get("client") or ("",))[0] or ""
        if self._in_flight[peer] >= MAX_IN_FLIGHT_PER_CLIENT:
            await _send(send, _json(429, {"error": "too many concurrent requests from this client"}))
            return
        self._in_flight[peer] += 1
        try:
            try:
                response = await self._http(scope, receive, send)
            except _Reply as reply:
                response = reply.response
            if response is not None:
                await _send(send, response)
        finally:
            self._in_flight[peer] -= 1
            if self._in_flight[peer] <= 0:
                del self._in_flight[peer]

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> dict[str, Any] | None:
        """The answer to one request; None when it was sent here already (streams)."""
        path = scope["path"]
        if path.startswith("/output/id/") and scope["method"] in ("GET", "HEAD"):
            await self._output(path[len("/output/id/"):].strip("/"), scope, send)
            return None
        if path.startswith("/v2/task/"):
            if path.rstrip("/").endswith("/subscribe") and scope["method"] == "GET":
                return await self._subscribe(scope, receive, send)
            return await self._task_api(scope, receive)
        if path.startswith(("/v2/deployment/", "/v2/upload/")):
            return await self._client_api(scope, receive)
        try:
            record, inner_path, _ = await self._routes.resolve(path)
        except StoreUnavailableError as exc:
            return _store_down(exc)
        if record is None:
            return _json(404, {"error": "not found"})
        if record.kind in QUEUED_KINDS:
            return await self._enqueue(record, inner_path, scope, receive)
        return await self._forward(record, inner_path, scope, receive)

    def _auth_ok(self, scope: dict[str, Any]) -> bool:
        header = header_map(scope).get(b"authorization")
        return self._authorized(header.decode("latin-1") if header else None)

    async def _body(self, scope: dict[str, Any], receive: Any) -> bytes:
        """The whole request body; too large (as announced or as sent) → 413, not in time → 408."""
        if declared_too_large(header_map(scope), MAX_BODY_BYTES):
            raise _Reply(_json(413, {"error": "payload too large"}))
        try:
            return await asyncio.wait_for(read_body(receive, MAX_BODY_BYTES), BODY_TIMEOUT_S)
        except TooLarge:
            raise _Reply(_json(413, {"error": "payload too large"})) from None
        except Disconnected:
            raise _Reply(_json(400, {"error": "client disconnected"})) from None
        except TimeoutError:
            raise _Reply(_json(408, {"error": f"request body not received within {BODY_TIMEOUT_S:g} s"})) from None

    async def _forward(self, record: DeploymentRecord, path: str, scope: dict[str, Any], receive: Any
                       ) -> dict[str, Any]:
        # The replica checks the token too; checking here first spares reading the body of a refusal.
        health = path.rstrip("/") == "/health" and scope["method"] in ("GET", "HEAD")
        if record.authorized and not health and not self._auth_ok(scope):
            return _json(401, {"error": "Unauthorized"})
        body = await self._body(scope, receive)
        handle = self._handles.get(record.app_name)
        if handle is None:
            handle = serve.get_app_handle(record.app_name).options(method_name="forward")
            self._handles[record.app_name] = handle
        request = {"method": scope["method"], "path": path, "query_string": scope.get("query_string", b""),
                   "headers": list(scope.get("headers", [])), "body": body}
        return await handle.remote(request)

    async def _enqueue(self, record: DeploymentRecord, path: str, scope: dict[str, Any], receive: Any
                       ) -> dict[str, Any]:
        from urllib.parse import parse_qsl

        token_holder = self._auth_ok(scope)
        if record.authorized and not token_holder:
            return _json(401, {"error": "Unauthorized"})
        if scope["method"] != "POST":
            return _json(405, {"error": "method not allowed"})
        body = await self._body(scope, receive)
        if path.rstrip("/") == "/warmup":
            return {"status": 200, "headers": [], "body": b""}
        if path not in ("/", ""):
            return _json(404, {"error": "not found"})
        try:
            query = parse_qsl(scope.get("query_string", b"").decode("utf-8", errors="strict"))
            args, kwargs = parse_payload(body, query)
        except (PayloadError, UnicodeDecodeError):
            return _json(400, {"error": "invalid request payload"})
        # A request-level callback_url is honoured for the token holder only: from anyone else it would
        # make the cluster POST signed requests wherever a caller likes. It stays the handler's argument.
        callback_url = kwargs.get("callback_url") if token_holder else None
        callback_url = callback_url if isinstance(callback_url, str) else ""
        return _json(200, {"task_id": await _service("submit", record.app_name, args, kwargs, callback_url)})

    async def _task_api(self, scope: dict[str, Any], receive: Any) -> dict[str, Any]:
        if not self._auth_ok(scope):
            return _json(401, {"error": "Unauthorized"})
        parts = [part for part in scope["path"].split("/") if part]  # ["v2", "task", …]
        if parts[2:] == ["cancel"] and scope["method"] == "DELETE":
            body = await self._body(scope, receive)
            try:
                task_ids = json.loads(body or b"{}")["task_ids"]
                if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
                    raise ValueError
            except (ValueError, KeyError, TypeError, RecursionError):
                return _json(400, {"error": "invalid request payload"})
            await _service("cancel", task_ids)
            return _json(200, {})
        if len(parts) == 3 and scope["method"] == "GET":
            found = await _service("get", parts[2])
            return _json(404, {"error": "task not found"}) if found is None else _json(200, found)
        return _json(404, {"error": "not found"})

    async def _client_api(self, scope: dict[str, Any], receive: Any) -> dict[str, Any]:
        """What ``beam.Client`` needs beside the task API, for token holders: a deployment's URL
        (``GET /v2/deployment/?id=…[&kind=…]``, null when none runs) and uploads (``POST /v2/upload/?name=…``)."""
        from urllib.parse import parse_qsl

        if not self._auth_ok(scope):
            return _json(401, {"error": "Unauthorized"})
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        route = (scope["path"].rstrip("/"), scope["method"])
        if route == ("/v2/deployment", "GET"):
            return _json(200, await asyncio.to_thread(_deployment_view, query.get("id", ""), query.get("kind")))
        if route == ("/v2/upload", "POST"):
            body = await self._body(scope, receive)
            try:
                return _json(200, {"url": await asyncio.to_thread(_store_upload, query.get("name", ""), body)})
            except ValueError as exc:
                return _json(400, {"error": str(exc)})
        return _json(404, {"error": "not found"})

    async def _subscribe(self, scope: dict[str, Any], receive: Any, send: Any) -> dict[str, Any] | None:
        """Server-sent events: one ``event: status`` per status change, until the task ends or the client
        leaves (``http.disconnect``, watched while waiting between polls)."""
        from beamray.tasks import records

        task_id = [part for part in scope["path"].split("/") if part][2]
        if not self._auth_ok(scope):
            return _json(401, {"error": "Unauthorized"})
        task = await _service("get", task_id)
        if task is None:
            return _json(404, {"error": "task not found"})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        self.subscriptions += 1
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            last, delay = None, POLL_MIN_S
            while task is not None:
                if task["status"] != last:
                    last, delay = task["status"], POLL_MIN_S
                    event = {"status": task["status"], "result": task["result"], "outputs": task["outputs"]}
                    await send({"type": "http.response.body", "more_body": True,
                                "body": f"event: status\ndata: {json.dumps(event)}\n\n".encode()})
                if task["status"] in records.TERMINAL:
                    break
                if (await asyncio.wait({gone}, timeout=delay))[0]:
                    return None  # the client left
                delay = min(2 * delay, POLL_MAX_S)
                self.polls += 1
                try:
                    task = await _service("get", task_id)
                except _Reply:  # the store is down for now: poll again later
                    pass
            await send({"type": "http.response.body", "body": b""})
            return None
        finally:
            gone.cancel()
            self.subscriptions -= 1

    async def _output(self, output_id: str, scope: dict[str, Any], send: Any) -> None:
        """A signed output link, streamed from storage a chunk at a time (read off the event loop)."""
        from beamray import outputs

        response = await asyncio.to_thread(outputs.http_response, output_id, scope.get("query_string", b""))
        body = response["body"]
        if isinstance(body, bytes):
            await _send(send, response)
            return
        try:
            await send({"type": "http.response.start", "status": response["status"], "headers": response["headers"]})
            while scope["method"] == "GET" and (chunk := await asyncio.to_thread(next, body, b"")):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            with contextlib.suppress(ValueError):  # still being read by a thread the client left behind
                await asyncio.to_thread(body.close)

    async def _clean_outputs(self) -> None:
        from beamray import outputs

        while True:
            try:
                await asyncio.to_thread(outputs.cleanup_expired)
                self.output_cleanups += 1
            except Exception:  # storage unreachable: the next round tries again
                _log.warning("expired output cleanup failed", exc_info=True)
            await asyncio.sleep(OUTPUT_CLEANUP_INTERVAL_S)


def _deployment_view(identifier: str, kind: str | None) -> dict[str, Any] | None:
    """The latest running version ``identifier`` names (``Registry.find``), with its path on the gateway."""
    from beamray.registry import Registry

    running = [r for r in Registry().find(identifier) if r.status == "running" and kind in (None, r.kind)]
    if not identifier or not running:
        return None
    record = max(running, key=lambda r: r.version)
    path = record.route_prefix if record.authorized else f"/{record.kind}/public/{record.stub_id}"
    return {"deployment_id": record.deployment_id, "stub_id": record.stub_id, "name": record.name,
            "kind": record.kind, "version": record.version, "authorized": record.authorized, "path": path}


def _store_upload(name: str, body: bytes) -> str:
    """Keep an uploaded file as an output of the pseudo-task ``uploads``; its signed, expiring URL."""
    import tempfile
    from pathlib import Path

    from beamray import outputs

    name = Path(name).name
    if name in ("", ".", ".."):
        raise ValueError("name the uploaded file: POST /v2/upload/?name=FILE")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / name
        source.write_bytes(body)
        return outputs.public_url(outputs.store_output("uploads", source))


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress()
class Gateway:
    def __serve_build_asgi_app__(self) -> GatewayApp:
        self._app = GatewayApp()
        return self._app

    def stats(self) -> dict[str, int]:
        """``GatewayApp.stats`` through a deployment handle (not reachable over HTTP)."""
        return self._app.stats()
