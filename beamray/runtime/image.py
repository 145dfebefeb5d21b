"""An ``ImageSpec`` → the Ray ``runtime_env`` fragment of a task, or a clear ``ImageBuildError``.

Beam builds a container image per ``Image``; a plain Ray cluster runs tasks on its nodes' own Python. So:

* ``python_packages`` / ``add_python_packages``: only requirements that the running environment does
  not already satisfy go to ``{"pip": [...]}``; an environment that has them all costs nothing.
* ``env_vars`` / ``with_envs``: ``{"env_vars": {...}}``.
* ``base_image``: ``{"image_uri": ...}``, only where the cluster operator set
  ``BEAMRAY_CONTAINER_RUNTIME=1`` (nodes with podman; the image must carry this Ray and Python version).
* Anything that needs an image build (``from_dockerfile``, shell commands, ``apt_install``, micromamba
  packages, ``add_local_dir/file(copy=True)``) cannot be honoured: ``ImageBuildError`` names the step.

Pure: no Ray import, no I/O besides reading installed package metadata and that one variable.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from typing import Any, Iterable, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from beamray.exceptions import ImageBuildError
from beamray.specs import ImageSpec

CONTAINER_RUNTIME_VAR = "BEAMRAY_CONTAINER_RUNTIME"
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

_PYTHON_VERSION = re.compile(r"^(?:python|micromamba)(3(?:\.\d+)?)$")
# pip lines that name packages we cannot inspect: they always go to pip.
_UNCHECKABLE_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")
_NEEDS_NODES = ("install it on the nodes or set BEAMRAY_CONTAINER_RUNTIME=1 on a cluster with podman and use "
                "base_image (an image that already contains it)")
_NEEDS_COPY = ("use copy=False (files under the working directory travel with the job) or set "
               "BEAMRAY_CONTAINER_RUNTIME=1 on a cluster with podman and use base_image (an image that already "
               "contains them)")


def container_runtime_enabled() -> bool:
    """The operator's opt-in: nodes can run container images (podman), so ``image_uri`` works."""
    return os.getenv(CONTAINER_RUNTIME_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def image_runtime_env(spec: ImageSpec, what: str, *, container_runtime: Optional[bool] = None) -> dict[str, Any]:
    """The runtime_env pieces ``spec`` needs (``{}`` for a default image); ``what`` prefixes errors.

    ``container_runtime`` overrides ``BEAMRAY_CONTAINER_RUNTIME`` (tests, callers that know better).
    """
    containers = container_runtime_enabled() if container_runtime is None else container_runtime
    runtime_env: dict[str, Any] = {}

    for kind, detail in spec.build_steps:
        if kind == "image_id":
            raise ImageBuildError(
                f"{what}: Image.from_id({detail!r}) names an image built by Beam, which this Ray cluster cannot "
                "use; describe the image with Image(...) (or build() it in this program first)"
            )
    if spec.dockerfile is not None:
        raise ImageBuildError(
            f"{what}: Image.from_dockerfile({spec.dockerfile!r}) needs a Dockerfile build, and beamray has no "
            "image builder; build and push the image yourself, then use Image(base_image=...) with "
            "BEAMRAY_CONTAINER_RUNTIME=1 on a cluster with podman"
        )
    if spec.base_image is not None:
        if not containers:
            raise ImageBuildError(
                f"{what}: Image(base_image={spec.base_image!r}) needs a container runtime, which this Ray cluster "
                "does not support; install what the image provides on the nodes and drop base_image, or set "
                "BEAMRAY_CONTAINER_RUNTIME=1 on a cluster with podman"
            )
        runtime_env["image_uri"] = spec.base_image

    pip_lines = list(spec.python_packages)
    for kind, detail in spec.build_steps:
        if kind == "pip":
            pip_lines.append(detail)
        elif kind in ("local_dir", "local_file"):
            if detail.endswith(" (copy)"):
                raise ImageBuildError(f"{what}: {_describe_local(kind, detail)} needs a container build, which "
                                      f"this Ray cluster does not support; {_NEEDS_COPY}")
        elif kind in ("shell", "apt", "micromamba"):
            raise ImageBuildError(f"{what}: {describe_step(kind, detail)} needs a container build, which this "
                                  f"Ray cluster does not support; {_NEEDS_NODES}")
        elif kind not in ("local_path", "docker", "image_id"):
            raise ImageBuildError(f"{what}: image build step {kind!r} ({detail!r}) is not supported by beamray")

    _check_python_version(spec.python_version, what)

    if pip_lines and spec.base_image is not None:
        first = describe_pip(spec)
        raise ImageBuildError(
            f"{what}: {first} cannot be installed on top of base_image {spec.base_image!r}: Ray runs a container "
            "image as it is; bake the packages into the image"
        )
    missing = unsatisfied_requirements(pip_lines)
    if missing:
        runtime_env["pip"] = missing
    if spec.env_vars:
        runtime_env["env_vars"] = dict(spec.env_vars)
    return runtime_env


def describe_step(kind: str, detail: str) -> str:
    """The user's call that produced a build step, for error messages."""
    if kind == "shell":
        return f"Image.add_commands([{detail!r}])"
    if kind == "apt":
        return f"Image.apt_install({', '.join(repr(package) for package in detail.split())})"
    if kind == "micromamba":
        if detail.startswith("-c "):
            return f"Image.add_micromamba_packages(channels=[{detail[3:]!r}])"
        return f"Image.add_micromamba_packages([{detail!r}])"
    if kind == "pip":
        return f"Image.add_python_packages([{detail!r}])"
    if kind in ("local_dir", "local_file"):
        return _describe_local(kind, detail)
    return f"Image step {kind}({detail!r})"


def describe_pip(spec: ImageSpec) -> str:
    if spec.python_packages:
        return f"Image(python_packages={list(spec.python_packages)!r})"
    first = next(detail for kind, detail in spec.build_steps if kind == "pip")
    return describe_step("pip", first)


def _describe_local(kind: str, detail: str) -> str:
    source, _, target = detail.removesuffix(" (copy)").partition(" -> ")
    copy = ", copy=True" if detail.endswith(" (copy)") else ""
    return f"Image.add_{kind}({source!r}, {target!r}{copy})"


def _check_python_version(python_version: str, what: str) -> None:
    """A task runs on the node's interpreter: a different python3.X cannot be provided."""
    match = _PYTHON_VERSION.match(python_version)
    if match is None:
        raise ImageBuildError(f"{what}: Image(python_version={python_version!r}) is not a Python version beamray "
                              "knows; use 'python3' or 'python3.X'")
    wanted = match.group(1)
    if wanted != "3" and wanted != RUNNING_PYTHON:
        raise ImageBuildError(
            f"{what}: Image(python_version={python_version!r}) asks for Python {wanted}, but this Ray cluster runs "
            f"Python {RUNNING_PYTHON}; use python_version='python3' (whatever Python 3 the cluster runs) or run the "
            f"cluster on Python {wanted}"
        )


def unsatisfied_requirements(lines: Iterable[str]) -> list[str]:
    """The pip lines this environment does not already satisfy (option lines ride along with them)."""
    options: list[str] = []
    missing: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            if line.split()[0].split("=")[0] in _UNCHECKABLE_OPTIONS:
                missing.append(line)
            else:
                options.append(line)
            continue
        if "://" not in line and "#" in line:  # an inline comment, squashed by the SDK's space removal
            line = line.split("#", 1)[0].strip()
        if not requirement_satisfied(line):
            missing.append(line)
    return options + missing if missing else []


def requirement_satisfied(line: str) -> bool:
    """True when an installed distribution meets the requirement (name, version, extras, markers)."""
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False  # pip will judge it
    if requirement.marker is not None and not _marker_applies(requirement, ""):
        return True  # not for this platform / Python: nothing to install
    return _satisfied(requirement, set())


def _marker_applies(requirement: Requirement, extra: str) -> bool:
    try:
        return bool(requirement.marker.evaluate({"extra": extra}))  # type: ignore[union-attr]
    except Exception:  # an undefined marker name: let pip decide
        return True


def _satisfied(requirement: Requirement, seen: set[tuple[str, str]]) -> bool:
    name = canonicalize_name(requirement.name)
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    if requirement.specifier:
        try:
            version = Version(installed)
        except InvalidVersion:
            return False
        if not requirement.specifier.contains(version, prereleases=True):
            return False
    for extra in sorted(requirement.extras):
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for dependency in _extra_dependencies(requirement.name, extra):
            if not _satisfied(dependency, seen):
                return False
    return True


def _extra_dependencies(distribution: str, extra: str) -> list[Requirement]:
    """What ``distribution[extra]`` adds beyond the base install."""
    dependencies = []
    for entry in importlib.metadata.requires(distribution) or []:
        try:
            dependency = Requirement(entry)
        except InvalidRequirement:
            continue
        marker = str(dependency.marker) if dependency.marker is not None else ""
        if "extra" in marker and _marker_applies(dependency, canonicalize_name(extra)):
            dependencies.append(dependency)
    return dependencies
