"""The Ray cluster beamray talks to: a configured address, or the embedded local head (``head.py``).

``connect()`` makes this process a driver of it (starting the embedded head on first use, with token
auth on); ``info()`` says what runs where without starting anything.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from beamray import config, locations, ray_private
from beamray.exceptions import ClusterError
from beamray.head import embedded_state, require_token_auth, start_embedded

NAMESPACE = "beamray"


@dataclass
class ClusterInfo:
    """What ``beamray cluster status --json`` prints."""

    running: bool
    embedded: bool
    address: str | None
    dashboard_url: str | None
    gateway_url: str
    pid: int | None = None
    ingress: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)  # alive nodes: node_id, group, resources

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gateway_url() -> str:
    """Where clients reach the gateway: ``BEAMRAY_GATEWAY_URL`` (a load balancer, an ingress), else loopback."""
    return os.environ.get("BEAMRAY_GATEWAY_URL", "").rstrip("/") or f"http://127.0.0.1:{config.http_port()}"


def info(with_resources: bool = True) -> ClusterInfo:
    """The cluster's state without starting it."""
    address = config.configured_address()
    if address is None:
        state = embedded_state()
        result = ClusterInfo(
            running=state is not None, embedded=True, address=state and state["address"],
            dashboard_url=state and state["dashboard_url"], gateway_url=gateway_url(), pid=state and state["pid"],
            ingress=state and state.get("ingress", "proxy"),
        )
    else:
        result = ClusterInfo(running=True, embedded=False, address=address, dashboard_url=None,
                             gateway_url=gateway_url())
    if with_resources and result.running:
        connect()
        import ray

        result.resources = {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
        result.nodes = [_node_view(node) for node in ray.nodes() if node.get("Alive")]
        result.dashboard_url = result.dashboard_url or dashboard_url()
    return result


def _node_view(node: dict[str, Any]) -> dict[str, Any]:
    """One node as ``cluster status`` shows it; ``group`` is its worker group (KubeRay's, or a simulated
    one), "head" for the head."""
    resources = {k: v for k, v in node["Resources"].items() if not k.startswith("node:")}
    head = "node:__internal_head__" in node["Resources"]
    group = "head" if head else (node.get("Labels") or {}).get(ray_private.NODE_GROUP_LABEL)
    return {"node_id": node["NodeID"], "group": group, "resources": resources}


def dashboard_url() -> str | None:
    """The Ray dashboard of the cluster this process is connected to (the embedded head's, when it runs)."""
    state = embedded_state() if locations.is_embedded() else None
    if state:
        return state["dashboard_url"]
    return ray_private.dashboard_url()


def prepare_ray_environment(embedded: bool = False) -> None:
    """Turn Ray's token auth on in this process when a token exists (always for the ``embedded`` head).

    Ray reads ``RAY_AUTH_MODE`` when it is imported; without it a driver cannot reach a cluster that has
    auth on (every cluster beamray starts). If Ray is imported already, its cached config is refreshed
    the way Ray itself does it. An explicit ``RAY_AUTH_MODE`` is respected for a configured cluster; the
    embedded head always has token auth, so its drivers always use it.
    """
    if embedded:
        require_token_auth(os.environ)
    elif "RAY_AUTH_MODE" in os.environ:
        return
    else:
        token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        if not (os.environ.get("RAY_AUTH_TOKEN") or token_file.exists()):
            return
        os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:
        ray_private.reload_auth_config()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable GCS for minutes; fail in seconds with a clear message instead."""
    if "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({exc}). Check BEAMRAY_ADDRESS / RAY_ADDRESS, "
            "or unset them to use the embedded cluster (`beamray cluster up`)."
        ) from exc


def job_runtime_env(embedded_head: dict[str, Any] | None) -> dict[str, Any] | None:
    """The runtime env of this driver's job, or None when the workers' own environment already fits.

    The embedded head starts its workers with ``locations.worker_settings()``; a job without a runtime env can
    use the workers Ray keeps warm, which saves a worker start (~0.35 s) on the first call.
    """
    settings = locations.worker_settings()
    if embedded_head is not None:
        return None if embedded_head.get("worker_settings") == settings else {"env_vars": settings}
    submitted = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if submitted:  # a job submitted by the remote CLI: its runtime env (working_dir, env) wins
        job_env = json.loads(submitted).get("runtime_env") or {}
        unset = {key: value for key, value in settings.items() if key not in job_env.get("env_vars", {})}
        return {"env_vars": unset} if unset else None
    return {"env_vars": settings, "working_dir": os.getcwd()}


def actor_runtime_env() -> dict[str, Any]:
    """The runtime env of beamray's own actors (gateway, task service, pods app): their settings, or none
    on the embedded head when its workers already start with them. A runtime env makes Ray start a
    worker as two Python processes (``code.py``), ~0.7-1 s more per actor start."""
    settings = locations.actor_settings()
    state = embedded_state() if locations.is_embedded() else None
    return {} if state is not None and state.get("actor_settings") == settings else {"env_vars": settings}


_forward_worker_logs = True


def forward_worker_logs(enabled: bool) -> None:
    """Whether this driver prints its job's worker output (``beamray run``: yes; ``deploy``, ``cluster up``:
    no, since the Serve controller and replicas they start would otherwise print to their terminal)."""
    global _forward_worker_logs
    _forward_worker_logs = enabled


def connect() -> None:
    """Attach this process to the cluster as a Ray driver, starting the embedded head if needed.

    Inside a Ray worker this is a no-op: the worker is already connected.
    """
    ray_module = sys.modules.get("ray")
    if ray_module is not None and ray_module.is_initialized():
        return
    address = config.configured_address()
    if address is not None and address.startswith(("http://", "https://")):
        raise ClusterError(f"{address} is a job-submission address: library calls need a Ray address "
                           "(host:port or ray://host:10001); the beamray CLI forwards commands there itself")
    state = None
    if address is None:
        state = start_embedded()  # first, so that the token exists before Ray's auth mode is decided
        address = state["address"]
    prepare_ray_environment(embedded=state is not None)
    import ray

    if state is not None:
        ray_private.keep_loopback_address()  # the head advertises 127.0.0.1
    _check_reachable(address)
    _send_cluster_warnings_to_stderr()
    try:
        ray.init(
            address=address, namespace=NAMESPACE, log_to_driver=_forward_worker_logs, logging_level="WARNING",
            runtime_env=job_runtime_env(state), configure_logging=True,
        )
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError or AuthenticationError here
        hint = ""
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            hint = (" The cluster uses token auth: set RAY_AUTH_TOKEN (or RAY_AUTH_MODE=token with "
                    "~/.ray/auth_token) before Ray is imported.")
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}.{hint}") from exc


def _send_cluster_warnings_to_stderr() -> None:
    """Keep a program's stdout its own: Ray prints cluster-wide warnings (worker start-up storms,
    OOM kills) to the driver's stdout, which breaks ``beamray run app.py > out.txt``."""
    ray_private.route_cluster_warnings(lambda line: line.get("pid") == "raylet")
