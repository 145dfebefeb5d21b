"""What every Beam decorator shares: resources, runtime settings, the handler's name."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from beamray.adapters import parsing
from beamray.specs import ImageSpec, ResourceSpec, RuntimeSpec


def handler_name(func: Callable[..., Any]) -> str:
    """Beam records a handler as ``"<module path relative to cwd>:<function>"``."""
    module = getattr(func, "__module__", None) or "__main__"
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        module = os.path.splitext(os.path.basename(main_file))[0] if main_file else "__main__"
    return f"{module}:{getattr(func, '__name__', 'handler')}"


class RunnerArgs:
    """Beam's common runner kwargs, parsed at decoration like the SDK (gpu waits for the first run)."""

    def __init__(
        self, *, app: str, cpu: Any, memory: Any, gpu: Any, gpu_count: int, image: Any, secrets: Any,
        env: Any, volumes: Any, name: Any, callback_url: Any,
    ) -> None:
        self.cpu_millicores = parsing.parse_cpu(cpu)
        self.memory = parsing.parse_memory(memory)
        self.gpu = gpu
        self.gpu_count = parsing.resolve_gpu_count(gpu, gpu_count)
        self.image = image
        self.secrets = parsing.parse_secrets(secrets)
        self.env = parsing.parse_env(env)
        self.volumes = tuple(volumes or ())
        self.name = parsing.parse_name(name)
        self.app = app or self.name or os.path.basename(os.getcwd())
        self.callback_url = parsing.parse_callback_url(callback_url)

    def resource_spec(self) -> ResourceSpec:
        return ResourceSpec(cpu=self.cpu_millicores / 1000, memory_mib=self.memory,
                            gpu=parsing.parse_gpu(self.gpu), gpu_count=self.gpu_count)

    def runtime_spec(self) -> RuntimeSpec:
        image = self.image.to_spec() if self.image is not None else ImageSpec()
        return RuntimeSpec(env=self.env, secrets=self.secrets, image=image, volumes=self.volumes)
