"""The caller's side of sandboxes: create one (warm pool first), reach one by id, call it, stop it.

Every call goes to the sandbox's named actor; Ray's own error wrappers are taken off, so a caller sees
Beam's ``SandboxProcessError`` / ``SandboxFileSystemError`` / ``SandboxConnectionError`` with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import ray

from beamray import cluster
from beamray.exceptions import BeamrayError
from beamray.runtime import resources
from beamray.runtime.image import image_runtime_env
from beamray.sandbox.errors import SandboxConnectionError, SandboxFileSystemError, SandboxProcessError
from beamray.sandbox.pool import POOL_NAME, SandboxPool, launch, new_sandbox_id
from beamray.specs import ImageSpec, ResourceSpec

_handles: dict[str, Any] = {}
_connecting = threading.Lock()  # an agent's first calls often come from many threads at once
START_TIMEOUT_S = 300.0  # a cold start waits this long for resources before giving up
_OURS = (SandboxConnectionError, SandboxFileSystemError, SandboxProcessError, BeamrayError)


def _gone(sandbox_id: str) -> SandboxConnectionError:
    return SandboxConnectionError(f"sandbox {sandbox_id} is not running: it was terminated, expired "
                                  "(keep_warm_seconds), or never existed")


def _connect() -> None:
    with _connecting:
        cluster.connect()


def _pool() -> Any:
    return ray.remote(SandboxPool).options(
        name=POOL_NAME, namespace=cluster.NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        runtime_env=cluster.actor_runtime_env()).remote()


def handle(sandbox_id: str) -> Any:
    """The actor of ``sandbox_id`` (cached per process)."""
    if sandbox_id not in _handles:
        if not isinstance(sandbox_id, str) or not sandbox_id.startswith("sandbox-"):
            raise SandboxConnectionError(f"{sandbox_id!r} is not a sandbox id (they look like sandbox-<hex>)")
        _connect()
        try:
            _handles[sandbox_id] = ray.get_actor(sandbox_id, namespace=cluster.NAMESPACE)
        except ValueError:
            raise _gone(sandbox_id) from None
    return _handles[sandbox_id]


def call(sandbox_id: str, method: str, *args: Any, timeout: float | None = None) -> Any:
    """``method(*args)`` on the sandbox's actor, with its own error re-raised as is."""
    try:
        return ray.get(getattr(handle(sandbox_id), method).remote(*args), timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, _OURS):
            raise exc.cause from None
        raise
    except ray.exceptions.RayActorError:
        _handles.pop(sandbox_id, None)
        raise _gone(sandbox_id) from None


def shape_key(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


def actor_options(image: ImageSpec, shape: ResourceSpec) -> dict[str, Any]:
    """Ray options of a sandbox's actor: its cpu/memory/gpu (checked feasible) and its image's runtime env,
    with beamray's settings unless the head's workers start with them (then a default image needs none)."""
    runtime_env = image_runtime_env(image, "Sandbox image")
    settings = cluster.actor_runtime_env().get("env_vars", {})
    if settings:
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **settings}
    options = resources.resolve(shape, "Sandbox")
    return {**options, "runtime_env": runtime_env} if runtime_env else options


def create(config: dict[str, Any], image: ImageSpec, shape: ResourceSpec) -> tuple[str, dict[str, Any]]:
    """Start a sandbox: a pooled actor of this shape when one is ready, else a new one. (id, describe())"""
    _connect()
    options = actor_options(image, shape)
    sandbox_id = ray.get(_pool().claim.remote(shape_key(options), options))
    if sandbox_id is not None:
        try:
            return sandbox_id, call(sandbox_id, "start", config)
        except SandboxConnectionError:  # the pooled actor died meanwhile: start cold
            pass
    sandbox_id = new_sandbox_id()
    _handles[sandbox_id] = launch(sandbox_id, options)
    try:
        return sandbox_id, call(sandbox_id, "start", config, timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        ray.kill(_handles.pop(sandbox_id), no_restart=True)
        asked = {key: options[key] for key in ("num_cpus", "memory", "num_gpus") if key in options}
        raise SandboxConnectionError(
            f"the sandbox did not start within {START_TIMEOUT_S:g}s: no node had {asked} free for it "
            "(other work holds the cluster). Ask for less, or stop something (`beamray container list`).") from None


def terminate(sandbox_id: str) -> None:
    """Kill everything in the sandbox, delete its files, stop its actor. A stopped sandbox is a no-op."""
    try:
        call(sandbox_id, "terminate")
    except SandboxConnectionError:
        return
    ray.kill(_handles.pop(sandbox_id), no_restart=True)


def expose_port(sandbox_id: str, port: int) -> str:
    """Make ``port`` reachable through the gateway (the pods app's ``/pod/container/…`` route); its URL."""
    from beamray import deploy
    from beamray.serve_bridge import pod_app

    call(sandbox_id, "expose_port", port)
    deploy.ensure_serve()
    pod_app.ensure_running()
    return f"{pod_app.url_of(cluster.gateway_url(), sandbox_id, (port,))}/{port}"


def is_running(sandbox_id: str) -> bool:
    try:
        return call(sandbox_id, "describe")["status"] == "RUNNING"
    except SandboxConnectionError:
        return False
