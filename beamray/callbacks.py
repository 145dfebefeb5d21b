"""Task callbacks: Beam's signed POST to a ``callback_url`` when a task ends.

The body is ``{"data": <result or {}>}``; headers ``x-task-id``, ``x-task-status``, ``x-task-timestamp``
(unix seconds) and ``x-task-signature``, the hex HMAC-SHA256 of ``f"{base64(body)}:{timestamp}"`` under
the cluster's signing key (``signing_key()``, Beam's "signature token"). Delivery follows Beam's runner:
connect timeout 10 s, read timeout 30 s, up to 3 attempts (backoff 0.5 s, then 1 s) on connection
errors and 408/425/429/5xx, never after a read timeout; each attempt is signed with its own timestamp,
so receivers that reject stale signatures (Beam's advice: older than 5 s) accept retries. A callback that
fails is logged, never raised: it must not fail the task. ``BEAMRAY_CALLBACK_HOSTS`` (comma-separated
host names, ``*.example.com`` for a domain) restricts where callbacks may go; unset, any host. Only the
standard library is used, to keep worker imports light.

As in Beam, the signature covers the body and the timestamp only, not the ``x-task-*`` headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets as _random
import socket
import ssl
import time
import urllib.parse
from typing import Any

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
BACKOFF = (0.5, 1.0)  # sleeps before the 2nd and 3rd attempts
RETRY_STATUSES = frozenset({408, 425, 429})
SIGNING_KEY_NAME = "signing_key"


def signing_key() -> str:
    """The key that signs this cluster's callbacks, created on first use and kept beside the secrets.

    Embedded cluster: ``$BEAMRAY_HOME/signing_key`` (0600); any other: Ray's internal KV, namespace
    ``beamray_secrets``, under a reserved key that ``beamray secret list`` never shows.
    """
    from beamray import secrets

    return secrets.private_value(SIGNING_KEY_NAME, lambda: _random.token_hex(32))


def sign(body: bytes, timestamp: int, key: str) -> str:
    """Beam's signature: hex HMAC-SHA256 over ``f"{base64(body)}:{timestamp}"``."""
    data_to_sign = f"{base64.b64encode(body).decode()}:{timestamp}"
    return hmac.new(key.encode(), data_to_sign.encode(), hashlib.sha256).hexdigest()


def build_request(task_id: str, status: str, data: Any, key: str,
                  timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one callback."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    body = json.dumps({"data": data}, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "x-task-id": str(task_id),
        "x-task-status": str(status),
        "x-task-timestamp": str(timestamp),
        "x-task-signature": sign(body, timestamp, key),
    }
    return body, headers


class _ReadTimeout(Exception):
    """The server took the request but did not answer in time; it may have acted on it: no retry."""


def _post_once(url: urllib.parse.SplitResult, body: bytes, headers: dict[str, str]) -> int:
    """One POST; returns the status code, or raises OSError (connection) / _ReadTimeout."""
    if url.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname, url.port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=CONNECT_TIMEOUT)
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"
    try:
        connection.connect()
        connection.sock.settimeout(READ_TIMEOUT)
        connection.request("POST", path, body=body, headers=headers)
        try:
            response = connection.getresponse()
            response.read()
        except (socket.timeout, TimeoutError) as exc:
            raise _ReadTimeout(str(exc) or "timed out") from exc
        return response.status
    finally:
        connection.close()


def host_allowed(host: str, allowed: str | None = None) -> bool:
    """Whether ``BEAMRAY_CALLBACK_HOSTS`` (or ``allowed``) lets callbacks go to ``host``."""
    allowed = os.environ.get("BEAMRAY_CALLBACK_HOSTS", "") if allowed is None else allowed
    patterns = [item.strip().lower() for item in allowed.split(",") if item.strip()]
    host = host.lower().rstrip(".")
    return not patterns or any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


def send(url: str, task_id: str, status: str, data: Any) -> bool:
    """POST the callback for ``task_id``; True once a 2xx answer came back (redirects are not followed). Never raises."""
    try:
        target = urllib.parse.urlsplit(url)
        if target.scheme not in ("http", "https") or not target.hostname:
            logger.warning("callback for task %s not sent: %r is not an http(s) URL", task_id, url)
            return False
        if not host_allowed(target.hostname):
            logger.warning("callback for task %s not sent: %s is not in BEAMRAY_CALLBACK_HOSTS", task_id,
                           target.hostname)
            return False
        key = signing_key()
    except Exception as exc:  # a bad URL, an unreachable store: the task itself must still succeed
        logger.warning("callback for task %s to %s not sent: %s", task_id, url, exc)
        return False

    attempts = len(BACKOFF) + 1
    for attempt in range(1, attempts + 1):
        try:
            body, headers = build_request(task_id, status, data, key)
            code = _post_once(target, body, headers)
        except _ReadTimeout as exc:
            logger.warning("callback for task %s to %s: no answer within %gs (%s); not retried",
                           task_id, url, READ_TIMEOUT, exc)
            return False
        except (OSError, http.client.HTTPException) as exc:
            problem = f"connection failed ({type(exc).__name__}: {exc})"
            retryable = True
        except Exception as exc:  # never fail the task because of its callback
            logger.warning("callback for task %s to %s failed: %s", task_id, url, exc)
            return False
        else:
            if 200 <= code < 300:
                return True
            problem = f"HTTP {code}"
            retryable = code in RETRY_STATUSES or code >= 500
        if not retryable or attempt == attempts:
            logger.warning("callback for task %s to %s failed after %d attempt(s): %s",
                           task_id, url, attempt, problem)
            return False
        time.sleep(BACKOFF[attempt - 1])
    return False
