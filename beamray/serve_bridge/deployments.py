"""Deploy, list, stop, delete and restore web deployments on Ray Serve.

Every deploy of a name is a new version: its own Serve application ``<name>-v<N>`` at
``/{kind}/{name}/v<N>``; older versions keep serving until stopped. Records, specs and code archives are
in the durable store, so ``restore()`` brings running deployments back after a cluster restart.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cloudpickle
import ray
from ray import serve

from beamray import cluster, config, secrets, storage, store
from beamray.exceptions import BeamrayError, ClusterError
from beamray.registry import DeploymentRecord, Registry, new_record
from beamray.runtime import resources
from beamray.runtime.image import image_runtime_env
from beamray.serve_bridge import code
from beamray.serve_bridge.gateway import Gateway
from beamray.serve_bridge.options import deployment_options
from beamray.serve_bridge.replica import BeamrayReplica
from beamray.specs import EndpointSpec, TaskQueueSpec, without_user_code

GATEWAY_APP = "beamray-gateway"
QUEUED_KINDS = ("taskqueue", "function", "schedule")  # run by the task service; the gateway enqueues their requests


class DeployError(BeamrayError):
    """A deployment did not become healthy (e.g. its ``on_start`` raised); the message has the traceback."""


def _http_host() -> str:
    return os.environ.get("BEAMRAY_HTTP_HOST") or ("127.0.0.1" if cluster.is_embedded() else "0.0.0.0")


def base_runtime_env(code_path: str | None) -> dict[str, Any]:
    """Where replicas find beamray's stores and the user's code; locators only, never secret values."""
    env_vars = {"BEAMRAY_HOME": str(config.home()), "BEAMRAY_SECRETS": secrets.backend_locator(),
                "BEAMRAY_STORE": store.locator(), "BEAMRAY_HTTP_PORT": str(config.http_port()),
                **storage.runtime_env_vars()}
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    if code_path:
        runtime_env["working_dir"] = code.ship(Path(code_path))
    return runtime_env


def ensure_serve() -> None:
    """Start Serve on the gateway port with the gateway app at ``/``; restore deployments on a fresh start."""
    cluster.connect()
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    applications = serve.status().applications if _serve_running() else None
    gateway = (applications or {}).get(GATEWAY_APP)
    if gateway is not None and gateway.status == "RUNNING":
        return
    if applications is None:
        if cluster.is_embedded() and not cluster.port_is_free(config.http_port()):
            raise ClusterError(cluster.port_taken_message(config.http_port()))
        serve.start(http_options={"host": _http_host(), "port": config.http_port()},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
    app = Gateway.options(ray_actor_options={"num_cpus": 0, "runtime_env": base_runtime_env(None)})
    serve.run(app.bind(), name=GATEWAY_APP, route_prefix="/")
    if applications is None:
        _report_restore(*restore())


def _report_restore(restored: list[DeploymentRecord], failures: list[RestoreFailure]) -> None:
    """One line for each deployment a restore brought back or could not, on stderr (stdout stays the caller's)."""
    for record in restored:
        print(f"=> Restored {record.name} v{record.version}", file=sys.stderr)
    for failure in failures:
        print(f"=> Could not restore {failure.record.name} v{failure.record.version}: {failure.why} "
              "(marked failed; see `beamray deployment list`)", file=sys.stderr)


def _serve_running() -> bool:
    try:
        serve.context._connect(raise_if_no_controller_running=True)
    except Exception:
        return False
    return True


def _runtime(spec: Any, record: DeploymentRecord) -> dict[str, Any]:
    """Ray options for the spec's containers (feasibility checked), with code, stores and image."""
    what = f"{spec.kind.capitalize()} {spec.name}"
    actor_options = resources.resolve(spec.resources, what)
    runtime_env = base_runtime_env(record.code_path)
    image_env = image_runtime_env(spec.runtime.image, what)
    runtime_env["env_vars"].update(image_env.pop("env_vars", {}))
    runtime_env.update(image_env)
    actor_options["runtime_env"] = runtime_env
    return actor_options


def _launch(spec: Any, record: DeploymentRecord, spec_blob: bytes) -> Any:
    """Register a queued kind with the task service (returns None), or build the Serve app of a web kind."""
    actor_options = _runtime(spec, record)
    if spec.kind in QUEUED_KINDS:
        _register_queue(spec, record, spec_blob, actor_options)
        return None
    options = deployment_options(spec.serving, actor_options)
    return BeamrayReplica.options(name=spec.name, **options).bind(spec_blob, vars(record))


def _run(spec: Any, record: DeploymentRecord, spec_blob: bytes) -> None:
    application = _launch(spec, record, spec_blob)
    if application is None:
        return
    try:
        serve.run(application, name=record.app_name, route_prefix=record.route_prefix)
    except RuntimeError as exc:
        raise _start_failure(record, str(exc)) from exc


def _start_failure(record: DeploymentRecord, fallback: str) -> DeployError:
    """The app's failure with the replica's traceback; the app is deleted (it would keep restarting replicas)."""
    details = _failure_details(record.app_name) or fallback
    serve.delete(record.app_name)
    return DeployError(f"{record.kind.capitalize()} {record.name} v{record.version} failed to start:\n{details}")


def _register_queue(spec: TaskQueueSpec, record: DeploymentRecord, spec_blob: bytes,
                    actor_options: dict[str, Any]) -> None:
    from beamray.tasks import client

    serving = spec.serving
    runtime_env = actor_options.pop("runtime_env")
    config = {
        "queue": record.app_name, "kind": spec.kind, "name": spec.name, "stub_id": record.stub_id,
        "handler": spec.handler,
        "ray_options": actor_options, "runtime_env": runtime_env, "timeout": spec.timeout,
        "retries": spec.retries, "ttl": spec.ttl, "callback_url": spec.callback_url,
        "max_pending_tasks": serving.max_pending_tasks, "workers": serving.workers,
        "min_containers": serving.min_containers, "max_containers": serving.max_containers,
        "tasks_per_container": serving.tasks_per_container, "keep_warm_seconds": serving.keep_warm_seconds,
        "schedule": spec.schedule, "created_at": record.created_at,
        "public_config": {"handler": spec.handler, "workers": serving.workers, "timeout": spec.timeout,
                          "max_pending_tasks": serving.max_pending_tasks, "callback_url": spec.callback_url,
                          "keep_warm_seconds": serving.keep_warm_seconds, "authorized": serving.authorized,
                          "task_policy": {"max_retries": spec.retries, "timeout": spec.timeout, "ttl": spec.ttl},
                          "autoscaler": {"type": "queue_depth", "max_containers": serving.max_containers,
                                         "tasks_per_container": serving.tasks_per_container,
                                         "min_containers": serving.min_containers},
                          "runtime": {"cpu": int(spec.resources.cpu * 1000), "memory": spec.resources.memory_mib,
                                      "gpu": ",".join(spec.resources.gpu), "gpu_count": spec.resources.gpu_count}},
    }
    ray.get(client.service().register_queue.remote(config, spec_blob))


def _failure_details(app_name: str) -> str:
    """The replica's traceback, which Serve keeps in the deployment status message."""
    application = serve.status().applications.get(app_name)
    if application is None:
        return ""
    return "\n".join(d.message for d in application.deployments.values() if d.message) or application.message


def deploy(spec: EndpointSpec | TaskQueueSpec, code_root: str | os.PathLike[str] | None = None
           ) -> DeploymentRecord:
    """Deploy ``spec`` as the next version of its name and make it ``latest``."""
    ensure_serve()
    registry = Registry()
    record = new_record(name=spec.name, kind=spec.kind, version=registry.next_version(spec.name),
                        authorized=spec.serving.authorized, handler=spec.handler, gateway_url=cluster.gateway_url())
    record.code_path = str(code.package(code_root or os.getcwd()))
    spec_blob = cloudpickle.dumps(spec)
    _run(spec, record, spec_blob)
    registry.save(record, spec_blob, cloudpickle.dumps(without_user_code(spec)))
    if spec.kind == "schedule":  # Beam: a new version of a schedule disables the previous one
        for older in registry.records():
            if older.name == spec.name and older.kind == "schedule" and older.version < record.version:
                stop(older.deployment_id)
    return record


def list_deployments() -> list[DeploymentRecord]:
    return Registry().records()


def _matching(identifier: str) -> list[DeploymentRecord]:
    found = Registry().find(identifier)
    if not found:
        raise BeamrayError(f"no deployment matches {identifier!r} (see `beamray deployment list`)")
    return found


def stop(identifier: str) -> list[DeploymentRecord]:
    """Stop the matching running versions; their records stay (status ``stopped``)."""
    cluster.connect()
    registry = Registry()
    stopped = []
    for record in _matching(identifier):
        if record.status == "running":
            if record.kind in QUEUED_KINDS:
                from beamray.tasks import client

                ray.get(client.service().unregister_queue.remote(record.app_name))
            elif _serve_running():
                serve.delete(record.app_name)
            record = replace(record, status="stopped")
            registry.save(record)
        stopped.append(record)
    return stopped


def delete(identifier: str) -> list[DeploymentRecord]:
    """Stop the matching versions and forget them."""
    removed = stop(identifier)
    registry = Registry()
    for record in removed:
        registry.remove(record)
        if record.code_path and not any(r.code_path == record.code_path for r in registry.records()):
            Path(record.code_path).unlink(missing_ok=True)
    return removed


@dataclass
class RestoreFailure:
    """A deployment that a restore could not bring back; its record is marked ``failed`` with ``why``."""

    record: DeploymentRecord
    why: str


def restore(timeout: float = 300.0) -> tuple[list[DeploymentRecord], list[RestoreFailure]]:
    """Redeploy every running (or earlier failed) record whose Serve application is missing.

    Each record is restored on its own: one that cannot come back (its code archive is gone, its
    resources are not on this cluster, its code fails to load) is marked ``failed`` and reported, and the
    others are restored all the same. Web apps start together and are waited for together. A failed
    record is tried again at the next restore.
    """
    registry = Registry()
    present = serve.status().applications
    restored: list[DeploymentRecord] = []
    failures: list[RestoreFailure] = []
    starting: dict[str, tuple[DeploymentRecord, Any]] = {}
    for record in registry.records():
        if record.status not in ("running", "failed") or record.app_name in present:
            continue
        try:
            application = _launch(_launch_spec(registry, record), record, registry.spec_blob(record) or b"")
        except Exception as exc:  # any failure is this record's own: report it, go on with the rest
            failures.append(RestoreFailure(record, _one_line(exc)))
            continue
        if application is None:
            restored.append(record)
        else:
            starting[record.app_name] = (record, application)
    if starting:
        serve.run_many([serve.RunTarget(application, name=name, route_prefix=record.route_prefix)
                        for name, (record, application) in starting.items()], wait_for_applications_running=False)
        for name, error in _wait_started(list(starting), timeout).items():
            record = starting[name][0]
            if error is None:
                restored.append(record)
            else:
                failures.append(RestoreFailure(record, _one_line(_start_failure(record, error))))
    for record in restored:
        if record.status == "failed":
            registry.save(replace(record, status="running", error=""))
    for failure in failures:
        registry.save(replace(failure.record, status="failed", error=failure.why))
    return sorted(restored, key=lambda r: r.app_name), sorted(failures, key=lambda f: f.record.app_name)


def _wait_started(app_names: list[str], timeout: float) -> dict[str, str | None]:
    """Each app's outcome once it runs (None) or failed (why); apps still starting at ``timeout`` fail."""
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


def _one_line(exc: BaseException) -> str:
    """What went wrong, in one line: the message's first line and, for a traceback, its last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def _launch_spec(registry: Registry, record: DeploymentRecord) -> Any:
    """The record's spec without user code; a restore never imports the user's module in this process."""
    if not record.code_path or not Path(record.code_path).exists():
        raise DeployError(f"its code archive {record.code_path or '(none)'} is gone; deploy it again")
    launch_blob = registry.launch_blob(record)
    if launch_blob is None or registry.spec_blob(record) is None:
        raise DeployError("its stored spec is missing; deploy it again")
    return cloudpickle.loads(launch_blob)
