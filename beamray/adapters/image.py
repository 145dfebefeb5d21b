"""Beam's ``Image``: the same constructor, builder methods, aliases and messages as the SDK.

Nothing is built here. An ``Image`` only records what the user asked for; ``to_spec()`` hands that to the
Ray side (``beamray.runtime.image``), which decides what a Ray cluster can honour. ``build()`` and
``exists()`` answer locally, so Beam programs that call them keep working.
Reference: ``shared/spec/beam-api.md`` §6.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

from beamray import env as beam_env
from beamray.adapters import parsing
from beamray.adapters.types import PythonVersion
from beamray.specs import ImageSpec

LOCAL_PYTHON_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"

APT_INSTALL_COMMAND = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {} "
    "&& rm -rf /var/lib/apt/lists/*"
)
_BUILD_CACHE_TTL_S = 300.0
_build_cache: dict[str, tuple[float, "ImageBuildResult"]] = {}
_built_images: dict[str, "Image"] = {}  # image_id -> a copy of the Image that produced it (for from_id)


@dataclass
class ImageBuildResult:
    """What ``Image.build()`` reports; ``image_id`` is a stable hash of the image's spec."""

    success: bool = False
    image_id: str = ""
    python_version: str = ""
    error: str = ""


class BuildStep(NamedTuple):
    """One ``add_*`` step, kept in the order the user added it (the SDK's field names)."""

    command: str
    type: str


def _requirements_error(path: str) -> str:
    return (
        f"Could not find valid requirements.txt file at {path}. Libraries must be specified as a list of valid "
        "package names or a path to a requirements.txt file."
    )


def _load_requirements_file(path: str) -> list[str]:
    """The file's non-empty lines, as the SDK reads them (sanitising comes after)."""
    requirements_file = Path(path)
    if not requirements_file.is_file():
        raise FileNotFoundError(_requirements_error(path))
    return [line for line in requirements_file.read_text().split("\n") if line != ""]


def _python_version_text(version: Any) -> str:
    return version.value if isinstance(version, PythonVersion) else str(version)


class Image:
    """Defines a custom container image that your code will run in (Beam's class, recorded for Ray)."""

    def __init__(
        self,
        python_version: Union[PythonVersion, str] = PythonVersion.Python3,
        python_packages: Union[list[str], str, None] = None,
        commands: Optional[list[str]] = None,
        base_image: Optional[str] = None,
        base_image_creds: Optional[Union[list[str], dict[str, str]]] = None,
        env_vars: Optional[Union[str, list[str], dict[str, str]]] = None,
        image_id: Optional[str] = None,
    ) -> None:
        packages: list[str] = list(python_packages) if python_packages is not None and not isinstance(
            python_packages, str) else []
        if isinstance(python_packages, str):
            packages = _load_requirements_file(python_packages)
        # In a notebook without a base image the SDK pins the local Python version.
        if beam_env.is_notebook_env() and base_image is None:
            python_version = _detected_python_version()
        self.python_version: Union[PythonVersion, str] = python_version
        self.python_packages: list[str] = parsing.parse_python_packages(packages)
        self.commands: list[str] = list(commands) if commands is not None else []
        self.build_steps: list[BuildStep] = []
        self.base_image: str = base_image or ""
        self.base_image_creds: Union[list[str], dict[str, str]] = parsing.parse_image_credentials(base_image_creds)
        self.env_vars: list[str] = []
        self.secrets: list[str] = []
        self.dockerfile: str = ""  # the Dockerfile's text, as in the SDK
        self.dockerfile_path: str = ""
        self.build_ctx_object: str = ""
        self.dockerfile_target: Optional[str] = None
        self.dockerfile_build_args: dict[str, str] = {}
        self.gpu: Any = ""
        self.ignore_python: bool = False
        self.include_files_patterns: list[str] = []
        self.docker_enabled: bool = False
        self.image_id: str = image_id or ""
        self.with_envs(env_vars or [])

    # -- comparison and display (the SDK's) ----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Only these four fields, as in the SDK (build steps and env vars do not count)."""
        if not isinstance(other, Image):
            return NotImplemented
        return (
            self.python_version == other.python_version
            and self.python_packages == other.python_packages
            and self.base_image == other.base_image
            and self.base_image_creds == other.base_image_creds
        )

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as in the SDK

    def __str__(self) -> str:
        return (
            f"Python Version: {self.python_version}, Python Packages: {self.python_packages}, "
            f"Base Image: {self.base_image}, Base Image Credentials: {self.base_image_creds}"
        )

    # -- alternative constructors --------------------------------------------------------------------

    @classmethod
    def from_dockerfile(
        cls, path: str, context_dir: Optional[str] = None, target: Optional[str] = None,
        build_args: Optional[dict[str, str]] = None,
    ) -> "Image":
        """Record a Dockerfile build; inside a running task the SDK returns a bare ``Image()``."""
        image = cls()
        if beam_env.is_remote():
            return image
        image.dockerfile = Path(path).read_text()  # FileNotFoundError when missing, as in the SDK
        image.dockerfile_path = str(path)
        image.build_ctx_object = os.path.abspath(context_dir or os.path.dirname(path) or ".")
        image.dockerfile_target = target
        image.dockerfile_build_args = dict(build_args or {})
        return image

    @classmethod
    def from_registry(cls, image_uri: str, credentials: Optional[Union[list[str], dict[str, str]]] = None
                      ) -> "Image":
        """``Image(base_image=image_uri, base_image_creds=credentials)``."""
        return cls(base_image=image_uri, base_image_creds=credentials)

    @classmethod
    def from_id(cls, image_id: str) -> "Image":
        """An image built earlier; ids from this process's ``build()`` resolve to the image that made them."""
        built = _built_images.get(image_id)
        if built is not None:
            image = _copy.deepcopy(built)
            image.image_id = image_id
            return image
        return cls(image_id=image_id)

    # -- builder methods (each returns self) ---------------------------------------------------------

    def add_python_packages(self, packages: Union[Sequence[str], str]) -> "Image":
        """pip packages installed after the constructor's, in the order steps are added."""
        if isinstance(packages, str):
            try:
                packages = parsing.parse_python_packages(_load_requirements_file(packages))
            except FileNotFoundError:
                raise ValueError(_requirements_error(packages)) from None
        for package in packages:
            self.build_steps.append(BuildStep(command=package, type="pip"))
        return self

    def pip_install(self, *packages: str) -> "Image":
        """Alias of ``add_python_packages(list(packages))``."""
        return self.add_python_packages(list(packages))

    def add_commands(self, commands: Sequence[str]) -> "Image":
        """Shell commands run at build time, in the order added."""
        for command in commands:
            self.build_steps.append(BuildStep(command=command, type="shell"))
        return self

    def run_commands(self, *commands: str) -> "Image":
        """Alias of ``add_commands(list(commands))``."""
        return self.add_commands(list(commands))

    def apt_install(self, *packages: str) -> "Image":
        """System packages; the SDK runs ``APT_INSTALL_COMMAND`` with them."""
        if packages:
            self.build_steps.append(BuildStep(command=" ".join(packages), type="apt"))
        return self

    def micromamba(self) -> "Image":
        """Manage packages with micromamba: ``python3`` becomes ``python3.11``, then ``micromamba3.11``."""
        if self.python_version == PythonVersion.Python3:
            self.python_version = PythonVersion.Python311
        self.python_version = _python_version_text(self.python_version).replace("python", "micromamba")
        return self

    def add_micromamba_packages(self, packages: Union[Sequence[str], str],
                                channels: Optional[Sequence[str]] = None) -> "Image":
        """Conda packages (then ``-c <channel>`` entries); needs ``micromamba()`` first."""
        if not _python_version_text(self.python_version).startswith("micromamba"):
            raise ValueError("Micromamba must be enabled to use this method.")
        if isinstance(packages, str):
            packages = parsing.parse_python_packages(_load_requirements_file(packages))
        for package in packages:
            self.build_steps.append(BuildStep(command=package, type="micromamba"))
        for channel in channels or []:
            self.build_steps.append(BuildStep(command=f"-c {channel}", type="micromamba"))
        return self

    def add_python_version(self, python_version: Union[PythonVersion, str]) -> "Image":
        """Override the Python version."""
        self.python_version = python_version
        return self

    def with_envs(self, env_vars: Union[str, list[str], dict[str, str]], clear: bool = False) -> "Image":
        """``"K=V"`` entries (a str, a list, or a dict) set at build time and in the running container."""
        if isinstance(env_vars, dict):
            env_vars = [f"{key}={value}" for key, value in env_vars.items()]
        elif isinstance(env_vars, str):
            env_vars = [env_vars]
        self.validate_env_vars(env_vars)
        if clear:
            self.env_vars.clear()
        self.env_vars.extend(env_vars)
        return self

    def env(self, env_vars: dict[str, str]) -> "Image":
        """Alias of ``with_envs``."""
        return self.with_envs(env_vars)

    def validate_env_vars(self, env_vars: list[str]) -> None:
        """Each entry must be exactly ``KEY=VALUE`` with both sides non-empty (the SDK's messages)."""
        for env_var in env_vars:
            key, sep, value = env_var.partition("=")
            if not sep:
                raise ValueError(f"Environment variable must contain '=': {env_var}")
            if not key:
                raise ValueError(f"Environment variable key cannot be empty: {env_var}")
            if not value:
                raise ValueError(f"Environment variable value cannot be empty: {env_var}")
            if "=" in value:
                raise ValueError(f"Environment variable cannot contain multiple '=' characters: {env_var}")

    def with_secrets(self, secrets: list[str]) -> "Image":
        """Secrets available while building (not at runtime, as in Beam)."""
        self.secrets.extend(secrets)
        return self

    def build_with_gpu(self, gpu: Any) -> "Image":
        """Build on a GPU node (no build happens on Ray; kept for fidelity)."""
        self.gpu = gpu
        return self

    def with_docker(self) -> "Image":
        """Beam enables Docker inside the container; on Ray tasks use whatever Docker the node has."""
        self.docker_enabled = True
        return self

    def add_local_path(self, pattern: str = "*") -> "Image":
        """Files (a glob) from the working directory to include; ``"."`` means everything."""
        self.include_files_patterns.append("*" if pattern == "." else pattern)
        return self

    def add_local_dir(self, local_path: str, remote_path: Optional[str] = None, copy: bool = False) -> "Image":
        """A directory under the cwd, mounted at ``/mnt/code/<rel>`` (or copied into the image)."""
        return self._add_local(local_path, remote_path, copy, "local_dir")

    def add_local_file(self, local_path: str, remote_path: Optional[str] = None, copy: bool = False) -> "Image":
        """A file under the cwd, mounted at ``/mnt/code/<rel>`` (or copied into the image)."""
        return self._add_local(local_path, remote_path, copy, "local_file")

    def _add_local(self, local_path: str, remote_path: Optional[str], copy: bool, kind: str) -> "Image":
        cwd = Path.cwd().resolve()
        resolved = (cwd / local_path).resolve()
        if resolved != cwd and cwd not in resolved.parents:
            raise ValueError(f"Local path must be inside the current working directory ({cwd}): {local_path}")
        exists = resolved.is_dir() if kind == "local_dir" else resolved.is_file()
        if not exists:
            what = "directory" if kind == "local_dir" else "file"
            raise FileNotFoundError(f"Local {what} not found: {local_path}")
        relative = resolved.relative_to(cwd).as_posix()
        target = remote_path or ("/mnt/code" if relative == "." else f"/mnt/code/{relative}")
        detail = f"{relative} -> {target}" + (" (copy)" if copy else "")
        self.build_steps.append(BuildStep(command=detail, type=kind))
        return self

    def sync_files(self, context_dir: Optional[str] = None) -> str:
        """The SDK uploads a build context; here it is only located (workers get files via working_dir)."""
        directory = os.path.abspath(context_dir or os.getcwd())
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Build context directory not found: {context_dir}")
        self.build_ctx_object = directory
        return directory

    # -- build results, computed locally -------------------------------------------------------------

    def to_spec(self) -> ImageSpec:
        """The frozen description the Ray side consumes; steps keep the SDK's run order."""
        steps: list[tuple[str, str]] = []
        if self.image_id and self.image_id not in _built_images:
            steps.append(("image_id", self.image_id))
        steps.extend(("shell", command) for command in self.commands)  # constructor commands run first
        steps.extend((step.type, step.command) for step in self.build_steps)
        steps.extend(("local_path", pattern) for pattern in self.include_files_patterns)
        if self.docker_enabled:
            steps.append(("docker", "enabled"))
        return ImageSpec(
            python_version=_python_version_text(self.python_version),
            python_packages=tuple(self.python_packages),
            build_steps=tuple(steps),
            base_image=self.base_image or None,
            dockerfile=(self.dockerfile_path or "Dockerfile") if self.dockerfile else None,
            env_vars=tuple(tuple(entry.split("=", 1)) for entry in self.env_vars),  # type: ignore[misc]
            build_secrets=tuple(self.secrets),
        )

    def _spec_id(self, spec: ImageSpec) -> str:
        payload = json.dumps(asdict(spec), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _result(self) -> ImageBuildResult:
        """Whether this cluster can honour the image, without printing or caching."""
        from beamray.exceptions import ImageBuildError
        from beamray.runtime.image import image_runtime_env

        spec = self.to_spec()
        image_id = self._spec_id(spec)
        python_version = spec.python_version
        if python_version == PythonVersion.Python3.value and spec.base_image is None:
            python_version = LOCAL_PYTHON_VERSION  # tasks run on this Python
        try:
            image_runtime_env(spec, "Image build")
        except ImageBuildError as exc:
            return ImageBuildResult(success=False, image_id=image_id, python_version=python_version, error=str(exc))
        return ImageBuildResult(success=True, image_id=image_id, python_version=python_version)

    def exists(self) -> tuple[bool, ImageBuildResult]:
        """``(True, result)`` when the cluster can run this image as described."""
        result = self._result()
        return result.success, result

    def build(self, *, quiet: bool = False) -> ImageBuildResult:
        """Check the image against this cluster (results cached 300 s like the SDK's)."""
        if self.base_image != "" and self.dockerfile != "":
            raise ValueError("Cannot use from_dockerfile and provide a custom base image.")
        say = (lambda text: None) if quiet else (lambda text: print(f"=> {text}", flush=True))
        say("Building image")
        spec_id = self._spec_id(self.to_spec())
        cached = _build_cache.get(spec_id)
        if cached is not None and cached[0] > time.monotonic() and not _cache_disabled():
            say("Using cached image")
            return cached[1]
        result = self._result()
        if not result.success:
            if not quiet:
                print(result.error, file=sys.stderr, flush=True)
            return result
        _build_cache[spec_id] = (time.monotonic() + _cache_ttl(), result)
        _built_images[result.image_id] = _copy.deepcopy(self)
        say("Build complete 🎉")
        return result


def _detected_python_version() -> Union[PythonVersion, str]:
    try:
        return PythonVersion(LOCAL_PYTHON_VERSION)
    except ValueError:
        return PythonVersion.Python3


def _cache_disabled() -> bool:
    return os.getenv("BEAM_DISABLE_IMAGE_BUILD_CACHE", "").lower() in ("1", "true", "yes", "on")


def _cache_ttl() -> float:
    try:
        ttl = float(os.getenv("BEAM_IMAGE_BUILD_CACHE_TTL_SECONDS", ""))
    except ValueError:
        return _BUILD_CACHE_TTL_S
    return ttl if ttl >= 0 else _BUILD_CACHE_TTL_S
