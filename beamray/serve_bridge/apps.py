"""Web deployments as Ray Serve applications: Serve and the gateway started, apps built, run and removed.

A web deployment's version is its own Serve application ``<name>-v<N>`` at ``/{kind}/{name}/v<N>``,
whose ingress is ``BeamrayReplica``; the latest running version of a name is routed at Beam's alias
prefix ``/{kind}/{name}`` instead (``promote``), so alias URLs reach its replicas in one hop as versioned
ones do. What gets deployed and when is ``beamray.deploy``'s business.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from typing import Any

from ray import serve

from beamray import cluster, config, head, locations, ray_private
from beamray.exceptions import ClusterError, DeployError
from beamray.registry import DeploymentRecord
from beamray.runtime.container import ContainerCode
from beamray.serve_bridge.gateway import Gateway
from beamray.serve_bridge.options import deployment_options
from beamray.serve_bridge.replica import BeamrayReplica
from beamray.specs import EndpointSpec

GATEWAY_APP = "beamray-gateway"
_UNROUTED_NAMES = frozenset({"id", "public"})
ROUTE_WAIT_S = 3.0  # how long ``promote`` waits for the ingress to route the alias (best effort)


def _http_host() -> str:
    return os.environ.get("BEAMRAY_HTTP_HOST") or ("127.0.0.1" if locations.is_embedded() else "0.0.0.0")


def start_serve() -> bool:
    """Start Serve on the gateway port with the gateway app at ``/``; True when Serve itself was just started
    (a fresh cluster, whose deployments need restoring)."""
    cluster.connect()
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    applications = serve.status().applications if ray_private.serve_controller_running() else None
    gateway = (applications or {}).get(GATEWAY_APP)
    if gateway is not None and gateway.status == "RUNNING":
        return False
    if applications is None:
        if locations.is_embedded() and not head.port_is_free(config.http_port()):
            raise ClusterError(head.port_taken_message(config.http_port()))
        serve.start(http_options={"host": _http_host(), "port": config.http_port()},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
    app = Gateway.options(ray_actor_options={"num_cpus": 0, "runtime_env": cluster.actor_runtime_env()})
    serve.run(app.bind(), name=GATEWAY_APP, route_prefix="/")
    return applications is None


def running_apps() -> set[str]:
    return set(serve.status().applications)


def alias_prefix(record: DeploymentRecord) -> str | None:
    """Beam's alias URL of a name (``/endpoint/NAME``): where its latest running version is routed; None
    for a name whose prefix would take Beam's ``/{kind}/id/…`` and ``/{kind}/public/…`` URLs (its alias
    stays with the gateway)."""
    return None if record.name in _UNROUTED_NAMES else f"/{record.kind}/{record.name}"


def web_application(spec: EndpointSpec, record: DeploymentRecord, spec_blob: bytes,
                    actor_options: dict[str, Any], container_code: ContainerCode | None) -> Any:
    """The Serve application of one version: ``BeamrayReplica`` with the spec's serving options and a fixed
    version (the record's id), so that ``promote`` moves its route and keeps its replicas."""
    replica = BeamrayReplica.options(name=spec.name, **deployment_options(spec.serving, actor_options))
    return ray_private.fixed_version(replica, record.deployment_id).bind(spec_blob, vars(record), container_code)


def run(application: Any, record: DeploymentRecord, route_prefix: str | None = None) -> None:
    """Run one version's app (at its own prefix unless told otherwise) and wait until it serves; a failing
    start raises ``DeployError`` with its traceback."""
    try:
        serve.run(application, name=record.app_name, route_prefix=route_prefix or record.route_prefix)
    except RuntimeError as exc:
        raise start_failure(record, str(exc)) from exc


def alias_holder(record: DeploymentRecord) -> str | None:
    """The app routed at ``record``'s alias prefix now, if any."""
    alias = alias_prefix(record)
    if alias is None:
        return None
    return next((name for name, prefix in ray_private.serve_route_prefixes().items() if prefix == alias), None)


def promote(latest: tuple[DeploymentRecord, Any], previous: tuple[DeploymentRecord, Any] | None = None) -> None:
    """Route the running ``latest`` version at its name's alias prefix, after moving ``previous`` (the one
    that held it) back to its own. Neither waits: the replicas stay, only routes change. Meanwhile alias
    requests reach the gateway, which forwards them to the latest version the registry knows."""
    moves = [(previous, previous[0].route_prefix)] if previous is not None else []
    moves.append((latest, alias_prefix(latest[0])))
    for (record, application), prefix in moves:  # one at a time: Serve refuses a prefix another app holds
        serve.run_many([serve.RunTarget(application, name=record.app_name, route_prefix=prefix)],
                       wait_for_applications_running=False)
    _wait_routed(alias_prefix(latest[0]), latest[0].app_name)


def _wait_routed(prefix: str, app_name: str) -> None:
    """Wait until the ingress's route table (``/-/routes``, served by Serve's proxy and by HAProxy alike)
    sends ``prefix`` to ``app_name``, so that a WebSocket opened on the alias right after a deploy reaches
    the new version (the gateway relays no WebSockets). Gives up quietly after ``ROUTE_WAIT_S``."""
    url = cluster.gateway_url().rstrip("/") + "/-/routes"
    deadline = time.monotonic() + ROUTE_WAIT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if json.load(response).get(prefix) == app_name:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def run_together(starting: dict[str, tuple[DeploymentRecord, Any]], timeout: float) -> dict[str, str | None]:
    """Start several apps at once (``serve.run_many``) and wait for all: app name → None once it serves,
    else why it did not (a failed app is deleted)."""
    serve.run_many([serve.RunTarget(application, name=name, route_prefix=record.route_prefix)
                    for name, (record, application) in starting.items()], wait_for_applications_running=False)
    outcomes = _wait_started(list(starting), timeout)
    for name, error in outcomes.items():
        if error is not None:
            outcomes[name] = str(start_failure(starting[name][0], error))
    return outcomes


def _wait_started(app_names: list[str], timeout: float) -> dict[str, str | None]:
    outcomes: dict[str, str | None] = {}
    deadline = time.monotonic() + timeout
    while len(outcomes) < len(app_names) and time.monotonic() < deadline:
        applications = serve.status().applications
        for name in app_names:
            status = applications.get(name)
            if name in outcomes or status is None:
                continue
            if status.status == "RUNNING":
                outcomes[name] = None
            elif status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                outcomes[name] = status.message or status.status
        time.sleep(0.25)
    return {name: outcomes.get(name, f"not running after {timeout:g}s") for name in app_names}


def start_failure(record: DeploymentRecord, fallback: str) -> DeployError:
    """The app's failure with the replica's traceback; the app is deleted (it would keep restarting replicas)."""
    details = _failure_details(record.app_name) or fallback
    serve.delete(record.app_name)
    return DeployError(f"{record.kind.capitalize()} {record.name} v{record.version} failed to start:\n{details}")


def _failure_details(app_name: str) -> str:
    """The replica's traceback, which Serve keeps in the deployment status message."""
    application = serve.status().applications.get(app_name)
    if application is None:
        return ""
    return "\n".join(d.message for d in application.deployments.values() if d.message) or application.message


def remove(app_name: str) -> None:
    if ray_private.serve_controller_running():
        serve.delete(app_name)
