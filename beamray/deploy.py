"""Deploy, list, stop, delete and restore deployments of every kind: the one orchestrator.

Every deploy of a name is a new version. Web kinds (endpoint, asgi, realtime) become Serve applications
(``serve_bridge.apps``); queued kinds (task queues, deployed functions, schedules) become queues of the
task service (``tasks.client``). Each version's record, pickled spec, launch spec (the spec without user
code) and code archive are kept, so ``restore()`` brings running deployments back after a cluster
restart without importing any user code in the restoring process.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cloudpickle

from beamray import cluster, code, locations
from beamray.exceptions import BeamrayError, DeployError
from beamray.registry import DeploymentRecord, Registry, new_record
from beamray.runtime import resources
from beamray.runtime.container import ContainerCode
from beamray.runtime.image import image_runtime_env
from beamray.serve_bridge import apps
from beamray.runtime import pod as pods
from beamray.serve_bridge import pod_app
from beamray.specs import QUEUED_KINDS, WEB_KINDS, EndpointSpec, Kind, PodSpec, TaskQueueSpec, without_user_code
from beamray.tasks import client
from beamray.tasks.config import QueueConfig

Spec = EndpointSpec | TaskQueueSpec | PodSpec
POD_START_TIMEOUT_S = 300.0
_pods_served: list[bool] = []
_log = logging.getLogger(__name__)


@dataclass
class RestoreFailure:
    """A deployment that a restore could not bring back; its record is marked ``failed`` with ``why``."""

    record: DeploymentRecord
    why: str


def ensure_serve() -> None:
    """Start Serve and the gateway when they do not run; a fresh start restores the stored deployments."""
    if apps.start_serve():
        _report_restore(*restore())


def deploy(spec: Spec, code_root: str | os.PathLike[str] | None = None) -> DeploymentRecord:
    """Deploy ``spec`` as the next version of its name and make it ``latest``."""
    ensure_serve()
    registry = Registry()
    record = new_record(name=spec.name, kind=spec.kind, version=registry.next_version(spec.name),
                        authorized=spec.serving.authorized, handler=spec.handler, gateway_url=cluster.gateway_url())
    record.code_path = str(code.package(code_root or os.getcwd()))
    if spec.kind == Kind.POD and len(spec.ports) > 1:
        record.url += "/<PORT>"  # Beam templates a pod's URL when it has several ports
    spec_blob = cloudpickle.dumps(spec)
    application = _launch(spec, record, spec_blob)
    if application is not None:
        apps.run(application, record, _first_route(record))
    if spec.kind == Kind.POD:
        _start_first_pod(record)
    registry.save(record, spec_blob, cloudpickle.dumps(without_user_code(spec)))
    if application is not None:
        _route_alias(registry, record, application)
    if spec.kind == "schedule":  # Beam: a new version of a schedule disables the previous one
        for older in registry.records():
            if older.name == spec.name and older.kind == "schedule" and older.version < record.version:
                stop(older.deployment_id)
    return record


def list_deployments() -> list[DeploymentRecord]:
    return Registry().records()


def stop(identifier: str) -> list[DeploymentRecord]:
    """Stop the matching running versions; their records stay (status ``stopped``)."""
    cluster.connect()
    registry = Registry()
    stopped = []
    for record in _matching(identifier):
        if record.status == "running":
            if record.kind in QUEUED_KINDS:
                client.unregister_queue(record.app_name)
            elif record.kind == Kind.POD:
                pod_app.unregister_launch(record.stub_id)
            else:
                apps.remove(record.app_name)
            record = replace(record, status="stopped")
            registry.save(record)
        stopped.append(record)
    _route_aliases(registry, stopped)  # each alias moves to the version that is latest now
    return stopped


def delete(identifier: str) -> list[DeploymentRecord]:
    """Stop the matching versions and forget them."""
    removed = stop(identifier)
    registry = Registry()
    for record in removed:
        registry.remove(record)
        if record.code_path and not any(r.code_path == record.code_path for r in registry.records()):
            code.unpublish(Path(record.code_path))
            Path(record.code_path).unlink(missing_ok=True)
    return removed


def restore(timeout: float = 300.0) -> tuple[list[DeploymentRecord], list[RestoreFailure]]:
    """Redeploy every running (or earlier failed) record whose Serve application is missing.

    Each record is restored on its own: one that cannot come back (its code archive is gone, its
    resources are not on this cluster, its code fails to load) is marked ``failed`` and reported, and the
    others are restored all the same. Web apps start together and are waited for together. A failed
    record is tried again at the next restore.
    """
    registry = Registry()
    present = apps.running_apps()
    restored: list[DeploymentRecord] = []
    failures: list[RestoreFailure] = []
    starting: dict[str, tuple[DeploymentRecord, Any]] = {}
    for record in registry.records():
        if record.status not in ("running", "failed") or record.app_name in present:
            continue
        try:
            application = _relaunch(registry, record)
        except Exception as exc:  # any failure is this record's own: report it, go on with the rest
            failures.append(RestoreFailure(record, _one_line(str(exc) or type(exc).__name__)))
            continue
        if application is None:
            restored.append(record)
        else:
            starting[record.app_name] = (record, application)
    if starting:
        for name, error in apps.run_together(starting, timeout).items():
            if error is None:
                restored.append(starting[name][0])
            else:
                failures.append(RestoreFailure(starting[name][0], _one_line(error)))
    for record in restored:
        if record.status == "failed":
            registry.save(replace(record, status="running", error=""))
    for failure in failures:
        registry.save(replace(failure.record, status="failed", error=failure.why))
    _route_aliases(registry, restored)
    return sorted(restored, key=lambda r: r.app_name), sorted(failures, key=lambda f: f.record.app_name)


def _route_aliases(registry: Registry, changed: list[DeploymentRecord]) -> None:
    """Route each web name among ``changed`` at the running version that is now its latest."""
    names = {(r.kind, r.name) for r in changed if r.kind in WEB_KINDS}
    latest: dict[tuple[str, str], DeploymentRecord] = {}
    for record in registry.records():
        key = (record.kind, record.name)
        if key in names and record.status == "running" and record.version > getattr(latest.get(key), "version", 0):
            latest[key] = record
    for record in latest.values():
        _route_alias(registry, record)


def _route_alias(registry: Registry, latest: DeploymentRecord, application: Any = None) -> None:
    """Route ``latest`` at its name's alias URL, moving the version that holds it back to its own prefix.

    Best effort: when it cannot (an older version's code archive is gone), alias requests keep reaching
    the gateway, which forwards them to the latest version (one hop more), and the deploy stands.
    """
    if apps.alias_prefix(latest) is None:
        return
    try:
        holder = apps.alias_holder(latest)
        if holder == latest.app_name:
            return
        previous = None
        if holder is not None:
            older = next(r for r in registry.records() if r.app_name == holder)
            previous = (older, _relaunch(registry, older))
        apps.promote((latest, application or _relaunch(registry, latest)), previous)
    except Exception:  # nothing the user must act on: the alias still answers, one hop longer
        _log.debug("%s %s v%s stays reachable at its alias URL through the gateway", latest.kind, latest.name,
                   latest.version, exc_info=True)


def _first_route(record: DeploymentRecord) -> str | None:
    """Where a new web version starts: at its name's alias prefix when no running version holds it (a
    first deploy: nothing else answers there), else at its own prefix, until it serves and takes the alias."""
    alias = apps.alias_prefix(record)
    if alias is None:
        return None
    try:
        return alias if apps.alias_holder(record) is None else None
    except Exception:  # Serve's details unreadable: start at its own prefix, as before
        _log.debug("route table unreadable", exc_info=True)
        return None


def _relaunch(registry: Registry, record: DeploymentRecord) -> Any:
    """``_launch`` of a stored version from its launch spec: a web version's Serve application, built
    again as it was deployed; None for the other kinds (registered again)."""
    return _launch(_launch_spec(registry, record), record, registry.spec_blob(record) or b"")


def _matching(identifier: str) -> list[DeploymentRecord]:
    found = Registry().find(identifier)
    if not found:
        raise BeamrayError(f"no deployment matches {identifier!r} (see `beamray deployment list`)")
    return found


def _actor_options(spec: Spec, code_path: str) -> dict[str, Any]:
    """Ray options for the spec's containers (feasibility checked), with its code, image and stores."""
    return _shipped(*_container_parts(spec), code_path)


def _container(spec: Spec, code_path: str) -> tuple[dict[str, Any], ContainerCode | None]:
    """A replica's or pod's Ray options, and the code it enters itself when it can run without a runtime env.

    That is on the embedded head, for an image without packages or a base image: Ray then starts the
    container as one Python process instead of two (``code.py`` says why), and neither the head's workers
    nor its Serve controller have a runtime env a replica would inherit. Elsewhere the code is the
    container's ``working_dir``, which also overrides the one a replica would inherit from the Serve
    controller (whose job is the one that started Serve).
    """
    options, image_env, settings = _container_parts(spec)
    if image_env or cluster.actor_runtime_env():
        return _shipped(options, image_env, settings, code_path), None
    return options, ContainerCode(code.publish(Path(code_path)), settings)


def _shipped(options: dict[str, Any], image_env: dict[str, Any], settings: dict[str, str],
             code_path: str) -> dict[str, Any]:
    """``options`` with a runtime env carrying the image, the settings and the code as ``working_dir``."""
    options["runtime_env"] = {**image_env, "env_vars": settings, "working_dir": code.ship(Path(code_path))}
    return options


def _container_parts(spec: Spec) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The spec's resource options, its image's runtime env (without env vars) and the containers'
    environment variables (stores, gateway port, the image's own)."""
    what = f"{spec.kind.capitalize()} {spec.name}"
    options = resources.resolve(spec.resources, what)
    image_env = image_runtime_env(spec.runtime.image, what)
    settings = {**locations.actor_settings(), **image_env.pop("env_vars", {})}
    return options, image_env, settings


def _launch(spec: Spec, record: DeploymentRecord, spec_blob: bytes) -> Any:
    """Register a queued kind with the task service or a pod with the pods app (returns None), or build the
    Serve app of a web kind."""
    if spec.kind in WEB_KINDS:
        return apps.web_application(spec, record, spec_blob, *_container(spec, record.code_path))
    if spec.kind == Kind.POD:
        options, container_code = _container(spec, record.code_path)
        pod_app.ensure_running()
        pod_app.register_launch(pods.PodLaunch(spec, record.stub_id, options, record.deployment_id, record.version,
                                               container_code))
        return None
    options = _actor_options(spec, record.code_path)
    client.register_queue(_queue_config(spec, record, options), spec_blob)
    return None


def _start_first_pod(record: DeploymentRecord) -> None:
    """A deployed pod starts one container now, so a broken entrypoint fails the deploy with its output."""
    container_id = pods.start(pod_app.launch_of(record.stub_id))
    try:
        state = pods.wait_ready(container_id, POD_START_TIMEOUT_S)
    except BeamrayError:
        pod_app.unregister_launch(record.stub_id)
        raise
    if state["status"] == "RUNNING" or (state["status"] == "COMPLETE" and not state["ports"]):
        return
    pod_app.unregister_launch(record.stub_id)
    pods.stop(container_id)
    why = (f"its entrypoint exited with code {state['exit_code']}" if state["exit_code"] is not None
           else f"its ports did not listen within {POD_START_TIMEOUT_S:g}s")
    raise DeployError(f"Pod {record.name} v{record.version} failed to start: {why}; its output:\n"
                      f"{state['output_tail'] or '(none)'}")


def create_pod(spec: PodSpec, code_root: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """Start one container of ``spec`` (``Pod.create()``, ``beamray run app.py:pod``) and wait until its ports
    listen or its entrypoint ended (its status then tells how); its container id and URL."""
    if not _pods_served:  # once per process: a script creating many pods asks Serve once
        ensure_serve()
        pod_app.ensure_running()
        _pods_served.append(True)
    code_path = str(code.package(code_root or os.getcwd()))
    stub_id = str(uuid.uuid4())
    options, container_code = _container(spec, code_path)
    container_id = pods.start(pods.PodLaunch(spec, stub_id, options, container_code=container_code))
    pods.wait_ready(container_id, POD_START_TIMEOUT_S)
    return container_id, pod_app.url_of(cluster.gateway_url(), container_id, spec.ports)


def _queue_config(spec: TaskQueueSpec, record: DeploymentRecord, options: dict[str, Any]) -> QueueConfig:
    serving, runtime_env = spec.serving, options.pop("runtime_env")
    return QueueConfig(
        queue=record.app_name, kind=spec.kind, name=spec.name, stub_id=record.stub_id, handler=spec.handler,
        ray_options=options, runtime_env=runtime_env, timeout=spec.timeout, retries=spec.retries, ttl=spec.ttl,
        callback_url=spec.callback_url, max_pending_tasks=serving.max_pending_tasks, workers=serving.workers,
        min_containers=serving.min_containers, max_containers=serving.max_containers,
        tasks_per_container=serving.tasks_per_container, keep_warm_seconds=serving.keep_warm_seconds,
        schedule=spec.schedule, created_at=record.created_at,
        public_config={"handler": spec.handler, "workers": serving.workers, "timeout": spec.timeout,
                       "max_pending_tasks": serving.max_pending_tasks, "callback_url": spec.callback_url,
                       "keep_warm_seconds": serving.keep_warm_seconds, "authorized": serving.authorized,
                       "task_policy": {"max_retries": spec.retries, "timeout": spec.timeout, "ttl": spec.ttl},
                       "autoscaler": {"type": "queue_depth", "max_containers": serving.max_containers,
                                      "tasks_per_container": serving.tasks_per_container,
                                      "min_containers": serving.min_containers},
                       "runtime": {"cpu": int(spec.resources.cpu * 1000), "memory": spec.resources.memory_mib,
                                   "gpu": ",".join(spec.resources.gpu), "gpu_count": spec.resources.gpu_count}},
    )


def _launch_spec(registry: Registry, record: DeploymentRecord) -> Spec:
    """The record's spec without user code; a restore never imports the user's module in this process."""
    if not record.code_path or not Path(record.code_path).exists():
        raise DeployError(f"its code archive {record.code_path or '(none)'} is gone; deploy it again")
    launch_blob = registry.launch_blob(record)
    if launch_blob is None or registry.spec_blob(record) is None:
        raise DeployError("its stored spec is missing; deploy it again")
    return cloudpickle.loads(launch_blob)


def _one_line(message: str) -> str:
    """What went wrong, in one line: the message's first line and, for a traceback, its last."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or ["failed"]
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def _report_restore(restored: list[DeploymentRecord], failures: list[RestoreFailure]) -> None:
    """One line for each deployment a restore brought back or could not, on stderr (stdout stays the caller's)."""
    for record in restored:
        print(f"=> Restored {record.name} v{record.version}", file=sys.stderr)
    for failure in failures:
        print(f"=> Could not restore {failure.record.name} v{failure.record.version}: {failure.why} "
              "(marked failed; see `beamray deployment list`)", file=sys.stderr)
