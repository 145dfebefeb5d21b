"""Every private Ray API beamray uses, in one module: a Ray upgrade that moves one touches only this file.

Each is used for something Ray has no public API for (noted per function); each fails loudly or, where
the docstring says so, degrades to doing nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


class InternalKV:
    """Ray's internal key-value store (kept in the GCS) under one namespace, with string keys.

    Public Ray offers no small cluster-wide store reachable from drivers and workers alike.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def get(self, key: str) -> bytes | None:
        from ray.experimental import internal_kv

        return internal_kv._internal_kv_get(key.encode(), namespace=self.namespace)

    def put(self, key: str, value: bytes, overwrite: bool = True) -> bool:
        """Store ``value``; True when the key existed already (with ``overwrite=False`` it is then kept)."""
        from ray.experimental import internal_kv

        return bool(internal_kv._internal_kv_put(key.encode(), value, overwrite=overwrite, namespace=self.namespace))

    def delete(self, key: str) -> bool:
        from ray.experimental import internal_kv

        return bool(internal_kv._internal_kv_del(key.encode(), namespace=self.namespace))

    def keys(self, prefix: str = "") -> list[str]:
        from ray.experimental import internal_kv

        return [key.decode() for key in internal_kv._internal_kv_list(prefix.encode(), namespace=self.namespace)]


def job_driver_paths() -> list[str]:
    """The folders Ray put on this worker's ``sys.path`` for its job's driver (empty outside a Ray worker)."""
    try:
        import ray._private.worker as ray_worker

        return list(ray_worker.global_worker.core_worker.get_job_config().py_driver_sys_path)
    except Exception:  # not a Ray worker, or a Ray without this field: nothing was added
        return []


def dashboard_url() -> str | None:
    """The dashboard of the cluster this driver is connected to (Ray keeps it only privately)."""
    from ray._private.worker import get_dashboard_url

    url = get_dashboard_url()
    return f"http://{url}" if url and not url.startswith("http") else url or None


def reload_auth_config() -> None:
    """Make an already imported Ray re-read ``RAY_AUTH_MODE`` (it reads it once, at import)."""
    from ray._raylet import Config

    Config.initialize("")


def keep_loopback_address() -> None:
    """Stop this driver from rewriting the head's 127.0.0.1 to the host's public IP."""
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def route_cluster_warnings(to_stderr: Callable[[dict[str, Any]], bool]) -> None:
    """Print the lines Ray forwards to this driver with ``is_err`` set where ``to_stderr(line)`` says so."""
    import ray._private.worker as ray_worker

    print_to_stdstream = ray_worker.print_to_stdstream
    if getattr(print_to_stdstream, "beamray_wrapped", False):
        return

    def print_routed(data: dict[str, Any], ignore_prefix: bool) -> None:
        print_to_stdstream({**data, "is_err": True} if to_stderr(data) else data, ignore_prefix)

    print_routed.beamray_wrapped = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_routed


def upload_package(archive: Path) -> str:
    """Upload a zip into the GCS as a ``working_dir`` package (once per content); its ``gcs://`` URI.

    Ray uploads local directories only for a driver's own job, not for actors it creates for others.
    """
    from ray._private.runtime_env import packaging

    uri = packaging.get_uri_for_package(archive)
    if not packaging.package_exists(uri):
        packaging.upload_package_to_gcs(uri, archive.read_bytes())
    packaging.pin_runtime_env_uri(uri)  # kept until an actor holds its own reference
    return uri


def package_exists(uri: str) -> bool:
    from ray._private.runtime_env import packaging

    return packaging.package_exists(uri)


def dashboard_auth_headers() -> dict[str, str]:
    """The headers a dashboard HTTP request needs when the cluster uses token auth."""
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    return get_auth_headers_if_auth_enabled({})


def worker_output_dispatcher() -> Any:
    """Ray's dispatcher of forwarded worker output in this driver (``handlers``, ``_lock``)."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    return global_worker_stdstream_dispatcher


def logs_dir() -> str:
    """This node's Ray log folder."""
    import ray._private.worker as ray_worker

    return ray_worker.global_worker.node.get_logs_dir_path()


def session_dir() -> str:
    """This node's Ray session folder (removed with the cluster's session)."""
    import ray._private.worker as ray_worker

    return ray_worker.global_worker.node.get_session_dir_path()


def serve_controller_running() -> bool:
    """Whether a Serve controller runs on the cluster, without starting one (``serve.status()`` would)."""
    from ray import serve

    try:
        serve.context._connect(raise_if_no_controller_running=True)
    except Exception:
        return False
    return True


def fixed_version(deployment: Any, version: str) -> Any:
    """A Serve deployment with a code version of our choosing (Serve's own option, kept internal since 2.7).

    Serve gives an imperatively run deployment a random version on every ``serve.run``, so running it again
    (with a new route prefix) would replace its replicas; with a fixed version only the route changes.
    """
    return deployment.options(version=version, _internal=True)


def serve_route_prefixes() -> dict[str, str | None]:
    """Each Serve application's route prefix (``serve.status()`` reads the same details but leaves it out)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    return {name: app.route_prefix for name, app in details.applications.items()}


def kuberay_autoscaling_config(raycluster: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling config KubeRay's autoscaler sidecar derives from a RayCluster (node types from its
    groups: CPU, GPU, memory, ``rayStartParams.resources``, min/max replicas, idle timeouts).

    Ray keeps this translation private (``ray.autoscaler._private.kuberay``); reusing it means the
    simulation sees a manifest exactly as the autoscaler on Kubernetes does.
    """
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    return _derive_autoscaling_config_from_ray_cr(raycluster)


def fake_multinode_provider() -> tuple[type, str]:
    """Ray's fake multi-node node provider class (simulated nodes as raylets on this machine) and its
    head's fixed node id; what ``ray.cluster_utils.AutoscalingCluster`` and Ray's autoscaler tests use."""
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID, FakeMultiNodeProvider

    return FakeMultiNodeProvider, FAKE_HEAD_NODE_ID


def resources_override_variable() -> str:
    """The environment variable through which Ray's autoscaler sets a new node's resources."""
    import ray._private.ray_constants as ray_constants

    return ray_constants.RESOURCES_ENVIRONMENT_VARIABLE


NODE_TYPE_NAME_VARIABLE = "RAY_NODE_TYPE_NAME"  # KubeRay sets it per Pod; Ray turns it into ray.io/node-group
NODE_TYPE_TAG = "ray-user-node-type"  # the autoscaler's tag naming a new node's type (ray.autoscaler.tags)
NODE_GROUP_LABEL = "ray.io/node-group"


def available_resources_per_node() -> dict[str, dict[str, float]]:
    """Node id → the resources free on it now (Ray's public API sums them over the cluster only)."""
    from ray._private.state import available_resources_per_node as per_node

    return per_node()
