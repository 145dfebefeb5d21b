"""Beam GPU types as Ray resources: one table for scheduling (``runtime/resources``) and manifests (``k8s``).

Ray auto-detects ``accelerator_type:<T>`` on GPU nodes for the names it knows; RTX cards are detected as
a useless "G", so their nodes advertise a custom resource named after the Beam type (k8s/kuberay sets
it; a bare-metal node: ``ray start --resources='{"RTX4090": 1}'``).
"""

from __future__ import annotations

from beamray.adapters.types import GpuType

_RAY_ACCELERATOR_NAMES = {
    "A10G": "A10G", "A10": "A10", "A100": "A100", "A100-40": "A100-40G", "A100-80": "A100-80G", "H100": "H100",
    "H200": "H200", "GH200": "GH200", "B200": "B200", "B300": "B300", "L4": "L4", "L40S": "L40S", "T4": "T4",
    "V100": "V100", "A16": "A16", "A30": "A30", "A40": "A40", "GAUDI2": "Gaudi2",
}

# Types Ray cannot detect: their nodes advertise a custom resource named after the type.
_CUSTOM_RESOURCE_TYPES = frozenset(gpu.value for gpu in GpuType) - set(_RAY_ACCELERATOR_NAMES) - {"", "any"}


def gpu_resource(gpu_type: str) -> str:
    """The Ray resource that marks a node holding ``gpu_type`` (a Beam GpuType value)."""
    if gpu_type in _RAY_ACCELERATOR_NAMES:
        return f"accelerator_type:{_RAY_ACCELERATOR_NAMES[gpu_type]}"
    return gpu_type


def beam_gpu_type(resource: str) -> str | None:
    """The Beam GPU type a Ray resource marks (the inverse of :func:`gpu_resource`), or None."""
    for beam_name, ray_name in _RAY_ACCELERATOR_NAMES.items():
        if resource == f"accelerator_type:{ray_name}":
            return beam_name
    return resource if resource in _CUSTOM_RESOURCE_TYPES else None


def emulated_gpus(gpus: dict[str, int]) -> tuple[int, dict[str, float]]:
    """``{Beam GPU type: count}`` → the ``num_gpus`` and resources a node advertises to look like it has them.

    Ray schedules on these logical resources only, so code that never touches the device runs there as on
    real hardware (the embedded cluster's emulation: ``beamray cluster up --gpu T4``).
    """
    return sum(gpus.values()), {gpu_resource(gpu_type): float(count) for gpu_type, count in gpus.items()}
