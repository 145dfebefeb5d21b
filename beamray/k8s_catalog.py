"""What the KubeRay planner sizes worker groups from: images, size ladders and the AWS GPU instance catalog.

Facts, not logic: the planner (``k8s``) and the simulated cluster read the same node shapes from here.
"""

from __future__ import annotations

from dataclasses import dataclass

RAY_VERSION = "2.60.0"
CPU_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311"
GPU_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-gpu"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CPU_LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192)
MEMORY_LADDER_GIB = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536)
PER_GPU_FLOOR = (8, 32)  # CPU, GiB per GPU for groups without an instance catalog (an RTX 4090 box)


@dataclass(frozen=True)
class Instance:
    """An AWS GPU instance size; its worker Pod leaves room for the kubelet and system daemons."""

    name: str
    vcpu: int
    mem_gib: int
    gpus: int

    @property
    def pod_cpu(self) -> int:
        return self.vcpu - max(2, self.vcpu // 12)

    @property
    def pod_mem_gib(self) -> int:
        return self.mem_gib - max(8, self.mem_gib * 7 // 32)


def _family(*sizes: tuple[str, int, int, int]) -> tuple[Instance, ...]:
    return tuple(Instance(*size) for size in sizes)


_G5 = _family(("g5.2xlarge", 8, 32, 1), ("g5.4xlarge", 16, 64, 1), ("g5.8xlarge", 32, 128, 1),
              ("g5.16xlarge", 64, 256, 1), ("g5.12xlarge", 48, 192, 4), ("g5.24xlarge", 96, 384, 4),
              ("g5.48xlarge", 192, 768, 8))
_G4DN = _family(("g4dn.2xlarge", 8, 32, 1), ("g4dn.4xlarge", 16, 64, 1), ("g4dn.8xlarge", 32, 128, 1),
                ("g4dn.16xlarge", 64, 256, 1), ("g4dn.12xlarge", 48, 192, 4), ("g4dn.metal", 96, 384, 8))
_G6 = _family(("g6.2xlarge", 8, 32, 1), ("g6.4xlarge", 16, 64, 1), ("g6.8xlarge", 32, 128, 1),
              ("g6.16xlarge", 64, 256, 1), ("g6.12xlarge", 48, 192, 4), ("g6.24xlarge", 96, 384, 4),
              ("g6.48xlarge", 192, 768, 8))
_G6E = _family(("g6e.2xlarge", 8, 64, 1), ("g6e.4xlarge", 16, 128, 1), ("g6e.8xlarge", 32, 256, 1),
               ("g6e.12xlarge", 48, 384, 4), ("g6e.24xlarge", 96, 768, 4), ("g6e.48xlarge", 192, 1536, 8))
_P3 = _family(("p3.2xlarge", 8, 61, 1), ("p3.8xlarge", 32, 244, 4), ("p3.16xlarge", 64, 488, 8))
# Cheapest first: the first size that fits is chosen. A10G and H100 start at the sizes of eks/cluster.yaml.
AWS_INSTANCES: dict[str, tuple[Instance, ...]] = {
    "A10G": _G5, "T4": _G4DN, "L4": _G6, "L40S": _G6E, "V100": _P3,
    "V100-32": _family(("p3dn.24xlarge", 96, 768, 8)),
    "A100": _family(("p4d.24xlarge", 96, 1152, 8)), "A100-40": _family(("p4d.24xlarge", 96, 1152, 8)),
    "A100-80": _family(("p4de.24xlarge", 96, 1152, 8)),
    "H100": _family(("p5.48xlarge", 192, 2048, 8)), "H200": _family(("p5e.48xlarge", 192, 2048, 8)),
}
# Off-AWS types with a known GPU Feature Discovery label (with time-slicing it gains a -SHARED suffix).
GFD_PRODUCTS = {"RTX4090": "NVIDIA-GeForce-RTX-4090"}
NOT_NVIDIA = {"GAUDI2"}
