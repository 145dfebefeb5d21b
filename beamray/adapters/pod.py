"""Beam's ``Pod`` and ``PodInstance``: an entrypoint with exposed ports, deployed or created ad hoc.

``Pod(...)`` takes the SDK's arguments in its positional order with its defaults (``authorized=False``,
``keep_warm_seconds=600``); the settings beamray cannot honour raise ``UnsupportedFeatureError`` at
construction, naming the setting. ``deploy()`` (and ``beamray deploy app.py:pod``) goes through
``beamray.deploy`` like every kind; ``create()`` starts one container and returns a ``PodInstance``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from beamray.adapters import parsing
from beamray.adapters.common import DecoratorArgs, signature
from beamray.adapters.handle import Handle
from beamray.exceptions import UnsupportedFeatureError
from beamray.specs import PodSpec, ServingSpec

_ORDER = ("app", "entrypoint", "ports", "name", "cpu", "memory", "gpu", "gpu_count", "image", "volumes", "disks",
          "secrets", "env", "keep_warm_seconds", "authorized", "tcp", "block_network", "allow_list",
          "docker_enabled", "use_vm", "pool", "checkpoint_enabled", "checkpoint_readiness_path",
          "checkpoint_readiness_port", "checkpoint_readiness_timeout", "checkpoint_readiness_interval",
          "app_kind", "serving_protocol", "serving")
_DEFAULTS = {"entrypoint": [], "ports": [], "keep_warm_seconds": 600, "authorized": False, "tcp": False,
             "block_network": False, "allow_list": None, "docker_enabled": False, "use_vm": False,
             "checkpoint_readiness_path": None, "checkpoint_readiness_port": None,
             "checkpoint_readiness_timeout": 600, "checkpoint_readiness_interval": 1, "app_kind": "",
             "serving_protocol": "", "serving": None}
# What a pod cannot have here, and why (the README lists these).
UNSUPPORTED = {
    "tcp": "raw TCP ports need a TCP ingress; beamray proxies HTTP and WebSocket only",
    "block_network": "beamray has no per-container network policy",
    "allow_list": "beamray has no per-container network policy",
    "docker_enabled": "there is no Docker daemon inside a beamray container",
    "use_vm": "beamray runs containers as Ray actors, not VMs",
    "checkpoint_readiness_path": "memory checkpoints need Beam's runtime",
    "checkpoint_readiness_port": "memory checkpoints need Beam's runtime",
    "app_kind": "set by Beam's Service, which beamray does not implement",
    "serving_protocol": "set by Beam's Service, which beamray does not implement",
    "serving": "set by Beam's Service, which beamray does not implement",
}


def parse_ports(ports: Any) -> tuple[int, ...]:
    if ports is None:
        return ()
    if isinstance(ports, (str, bytes)) or not hasattr(ports, "__iter__"):
        raise ValueError(f"ports must be a list of port numbers, got {ports!r}")
    parsed = tuple(ports)
    for port in parsed:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"ports must be port numbers between 1 and 65535, got {port!r}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"ports must not repeat a port, got {list(parsed)}")
    return parsed


def parse_entrypoint(entrypoint: Any) -> tuple[str, ...]:
    if entrypoint is None:
        return ()
    if isinstance(entrypoint, str) or not all(isinstance(part, str) for part in entrypoint):
        raise ValueError(f"entrypoint must be a list of strings, like ['python', 'app.py'], got {entrypoint!r}")
    return tuple(entrypoint)


def parse_keep_warm(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < -1:
        raise ValueError(f"keep_warm_seconds must be -1 (never stop), 0 (stop when idle) or more seconds, "
                         f"got {seconds!r}")
    return float(seconds)


class Pod(Handle):
    """Run arbitrary services in a container: ``entrypoint`` runs, ``ports`` are reached over HTTP/WebSocket."""

    __signature__ = signature(_ORDER, **_DEFAULTS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        arguments = DecoratorArgs("Pod", _ORDER, args, kwargs, **_DEFAULTS)
        for setting, why in UNSUPPORTED.items():
            if arguments[setting]:
                raise UnsupportedFeatureError(f"Pod({setting}=…) is not supported by beamray: {why}")
        self.arguments = arguments
        self.entrypoint = parse_entrypoint(arguments["entrypoint"])
        self.ports = parse_ports(arguments["ports"])
        self.keep_warm_seconds = parse_keep_warm(arguments["keep_warm_seconds"])
        self.authorized = bool(arguments["authorized"])
        self.instance: PodInstance | None = None
        super().__init__(None, self)  # type: ignore[arg-type]

    def deploy_spec(self, name: str | None = None) -> PodSpec:
        """The spec of a deploy (``name`` overrides ``Pod(name=…)``); a deployed pod needs a name."""
        spec = self.spec(parsing.parse_name(name) or self.arguments.name or "")
        if not spec.name:
            raise ValueError("Pod.deploy needs a name: Pod(name=\"my-pod\", …) or `beamray deploy … --name NAME`")
        return spec

    def spec(self, name: str = "", entrypoint: tuple[str, ...] = ()) -> PodSpec:
        arguments = self.arguments
        command = entrypoint or self.entrypoint
        if not command:
            raise ValueError("a Pod needs an entrypoint: Pod(entrypoint=[\"python\", \"-m\", \"http.server\", \"8000\"])")
        return PodSpec(name=name or arguments.name or "", app=arguments.app, entrypoint=command, ports=self.ports,
                       resources=arguments.resource_spec(), runtime=arguments.runtime_spec(),
                       serving=ServingSpec(authorized=self.authorized, keep_warm_seconds=self.keep_warm_seconds))

    def with_options(self, **changes: Any) -> "Pod":
        """A copy with some of its arguments replaced (the CLI's override flags: ``--cpu``, ``--ports``, …)."""
        return Pod(**{**{key: self.arguments[key] for key in _ORDER}, **changes})

    def create(self, entrypoint: list[str] = [], machine_id: str = "") -> "PodInstance":  # noqa: B006 (SDK)
        """Start one container now; its ``PodInstance`` (``ok`` False with ``error_msg`` when it failed)."""
        if machine_id:
            raise UnsupportedFeatureError("Pod.create(machine_id=…) is not supported by beamray")
        self.instance = create(self.spec(entrypoint=parse_entrypoint(entrypoint)))
        return self.instance

    def terminate(self) -> bool:
        """Stop the container the last ``create()`` started (the docs' ``notebook.terminate()``)."""
        return self.instance.terminate() if self.instance is not None else False

    def local(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedFeatureError("a Pod has no function to run locally; use create() or deploy()")

    def shell(self, url_type: str = "", sync_dir: Any = None, container_id: Any = None, machine_id: Any = None) -> None:
        raise UnsupportedFeatureError("Pod.shell() is not supported by beamray; use `beamray container exec`")

    def serve(self, **kwargs: Any) -> None:
        raise UnsupportedFeatureError("Pod.serve() is not supported by beamray; use deploy() or create()")


def create(spec: PodSpec, code_root: str | None = None) -> "PodInstance":
    """Start a container of ``spec`` with the code of ``code_root`` (default: the working directory)."""
    from beamray import deploy
    from beamray.exceptions import BeamrayError

    try:
        container_id, url = deploy.create_pod(spec, code_root)
    except BeamrayError as exc:
        return PodInstance(container_id="", url="", ok=False, error_msg=str(exc))
    return PodInstance(container_id=container_id, url=url, ok=True)


@dataclass(frozen=True)
class PodStatus:
    """``PodInstance.status()``: Beam's container status, and once ended its exit code and output tail."""

    status: str
    exit_code: int | None = None
    output_tail: str = ""

    def __str__(self) -> str:
        return self.status


@dataclass
class PodInstance:
    """What ``Pod.create()`` returns (the SDK's fields)."""

    container_id: str
    url: str
    ok: bool = False
    error_msg: str = ""
    task_id: str = ""
    app_id: str = ""
    _last: PodStatus = field(default=PodStatus("PENDING"), repr=False, compare=False)

    def status(self) -> PodStatus:
        from beamray.runtime import pod

        if not self.container_id:
            return PodStatus("FAILED", None, self.error_msg)
        state = pod.describe(self.container_id)
        if state is not None:
            self._last = PodStatus(state["status"], state["exit_code"], state["output_tail"])
        elif self._last.status not in pod.TERMINAL:
            self._last = PodStatus("STOPPED", self._last.exit_code, self._last.output_tail)
        return self._last

    def wait(self, timeout: int = 120, poll_interval: float = 1) -> bool:
        """Wait until the container serves (True) or ended / ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.status().status
            if found != "PENDING":
                return found == "RUNNING"
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(poll_interval, 0.2))

    def terminate(self) -> bool:
        """Stop the container; True when it was running."""
        from beamray.runtime import pod

        if not self.container_id:
            return False
        final = pod.stop(self.container_id)
        if final is not None:
            self._last = PodStatus("STOPPED", final["exit_code"], final["output_tail"])
        return final is not None
