"""Beam's client objects: ``Client``, ``Deployment`` (and ``Task``, from ``tasks.client``) over HTTP.

They speak only to the gateway (its task API, the deployments' URLs, ``/v2/deployment/`` and
``/v2/upload/``), so a script on any machine that reaches it can submit work and follow tasks without
joining the Ray cluster. The gateway is ``BEAMRAY_GATEWAY_URL`` (else this machine's embedded cluster);
the token is the argument, else ``BEAM_TOKEN`` / ``BETA9_TOKEN``, else the cluster's own
(``beamray config show``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from beamray.exceptions import BeamrayError
from beamray.specs import Kind
from beamray.tasks.client import Task, gateway_json, gateway_request

_KINDS = frozenset(kind.value for kind in Kind)


class DeploymentNotFoundError(BeamrayError):
    """No running deployment matches the identifier."""


def _token(token: str) -> str:
    if token:
        return token
    for name in ("BEAM_TOKEN", "BETA9_TOKEN"):
        if os.environ.get(name):
            return os.environ[name]
    from beamray import secrets

    return secrets.gateway_token()


def _gateway_url() -> str:
    from beamray import cluster

    return cluster.gateway_url()


def _answer(response: Any) -> Any:
    raw = response.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Deployment:
    """One deployed version: ``url``, ``submit(input=…)``, ``subscribe(input=…, event_handler=…)``."""

    def __init__(self, *, base_url: str, token: str, workspace_id: str, stub_id: str | None = None,
                 deployment_id: str | None = None, deployment_url: str | None = None) -> None:
        if not (stub_id or deployment_id or deployment_url):
            raise ValueError("One of stub_id, deployment_id or deployment_url is required")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.workspace_id = workspace_id
        self.stub_id = stub_id
        self.deployment_id = deployment_id
        self._url = deployment_url

    @property
    def url(self) -> str:
        if self._url is None:
            found = _lookup(self.base_url, self.token, self.deployment_id or self.stub_id or "")
            self._url = found["url"]
        return self._url

    def submit(self, *, input: dict[str, Any] = {}) -> Any:  # noqa: B006 (the SDK's default)
        """POST ``input`` as JSON: a ``Task`` when the deployment answers a ``task_id``, else the body."""
        with gateway_request("POST", self.url, self.token, json.dumps(input).encode()) as response:
            body = _answer(response)
        if isinstance(body, dict) and set(body) == {"task_id"}:
            return Task(body["task_id"], self.base_url, self.token)
        return body

    def subscribe(self, *, input: dict[str, Any] = {},  # noqa: B006
                  event_handler: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """``submit``, then for a task its result once it ended (``Task.subscribe``); else the body."""
        submitted = self.submit(input=input)
        return submitted.subscribe(event_handler) if isinstance(submitted, Task) else submitted

    def __repr__(self) -> str:
        return f"Deployment(url={self._url or '?'!r})"


def _lookup(base_url: str, token: str, identifier: str, kind: str | None = None) -> dict[str, Any]:
    """The gateway's view of the latest running version ``identifier`` names (id, stub id, name, name/vN)."""
    query = urllib.parse.urlencode({"id": identifier, **({"kind": kind} if kind else {})})
    found = gateway_json("GET", f"{base_url}/v2/deployment/?{query}", token)
    if not found:
        raise DeploymentNotFoundError(f"Deployment {identifier!r} not found. `beamray deployment list` shows "
                                      "what runs.")
    return {**found, "url": base_url + found["path"]}


def _split_kind(identifier: str) -> tuple[str | None, str]:
    """``kind/name[/vN]`` (or Beam's slug ``owner/kind/name/vN``) → (kind, ``name[/vN]``)."""
    parts = identifier.strip("/").split("/")
    for start in (0, 1):
        if len(parts) > start + 1 and parts[start] in _KINDS:
            return parts[start], "/".join(parts[start + 1:])
    return None, identifier


class Client:
    """Beam's ``Client(token)``: deployments, tasks and uploads through the gateway."""

    def __init__(self, token: str = "") -> None:
        self.token = _token(token)
        self.base_url = _gateway_url()

    @functools.lru_cache(maxsize=128)  # noqa: B019 (the SDK caches per client too)
    def get_deployment(self, identifier: str) -> Deployment:
        """A deployment by name (``name``, ``name/vN``, ``kind/name``), id, stub id or URL."""
        if identifier.startswith(("http://", "https://")):
            return self._deployment(deployment_url=identifier)
        kind, rest = _split_kind(identifier)
        found = _lookup(self.base_url, self.token, rest, kind)
        return self._deployment(stub_id=found["stub_id"], deployment_id=found["deployment_id"],
                                deployment_url=found["url"])

    def get_deployment_by_id(self, id: str) -> Deployment:
        return self.get_deployment(id)

    def get_deployment_by_stub_id(self, stub_id: str) -> Deployment:
        return self.get_deployment(stub_id)

    def _deployment(self, **where: Any) -> Deployment:
        return Deployment(base_url=self.base_url, token=self.token, workspace_id="", **where)

    def submit(self, identifier: str, *, input: dict[str, Any] = {}) -> Any:  # noqa: B006
        return self.get_deployment(identifier).submit(input=input)

    def subscribe(self, identifier: str, *, input: dict[str, Any] = {},  # noqa: B006
                  event_handler: Callable[[dict[str, Any]], None] | None = None) -> Any:
        return self.get_deployment(identifier).subscribe(input=input, event_handler=event_handler)

    def get_task_by_id(self, id: str) -> Task:
        return Task(id, self.base_url, self.token)

    def upload_file(self, local_path: str = "") -> str:
        """Upload a local file (at most the gateway's 16 MiB body limit); a signed, expiring download URL."""
        path = Path(local_path)
        if not path.is_file():
            raise FileNotFoundError(f"{local_path!r} is not a file")
        url = f"{self.base_url}/v2/upload/?{urllib.parse.urlencode({'name': path.name})}"
        with gateway_request("POST", url, self.token, path.read_bytes(), content_type="application/octet-stream"
                             ) as response:
            return json.loads(response.read())["url"]

    def download_file(self, url: str, local_path: str) -> None:
        with gateway_request("GET", url, self.token) as response, open(local_path, "wb") as target:
            shutil.copyfileobj(response, target)
