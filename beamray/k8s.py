"""Compile a Beam app's resource requests into the KubeRay manifests it needs (``beamray k8s render``).

Pure: no Ray, no cluster. The input is the app's decorated objects (``collect``), a kustomize overlay of
``k8s/kuberay`` (rendered by its ``render.py``) and optional extra GPU types; the output is the overlay's
documents with the RayCluster's worker groups replaced by groups generated from the requests:

* ``cpu``, sized for the largest CPU-only request (its placement, env and replica bounds come from the
  overlay's ``cpu`` group);
* one group per GPU type the app names (every type of every priority list), scaling from zero, that
  advertises the Ray resource ``beamray.gpus.gpu_resource`` asks for. AWS types get the
  cheapest instance of their family whose worker Pod fits the largest request (one Pod per node, all its
  GPUs); other types are sized on a ladder and selected by a GPU label.

Ray's ``memory`` resource is a Pod's whole memory limit (KubeRay passes it as ``--memory``), so a limit
equal to a request would leave nothing for the raylet and the object store: limits are at least
``MEMORY_HEADROOM`` times the request. CPU limits are whole cores, because the autoscaler rounds them up.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from beamray.adapters.parsing import parse_gpu
from beamray.exceptions import BeamrayError
from beamray.gpus import gpu_resource
from beamray.k8s_catalog import (AWS_INSTANCES, CPU_IMAGE, CPU_LADDER, GFD_PRODUCTS, GPU_IMAGE, GPU_TOLERATION,
                                 MEMORY_LADDER_GIB, NOT_NVIDIA, PER_GPU_FLOOR, RAY_VERSION, Instance)
from beamray.specs import ResourceSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
KUBERAY_DIR = REPO_ROOT / "k8s" / "kuberay"
MEMORY_HEADROOM = 1.25
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class ManifestError(BeamrayError):
    """The app's requests cannot be turned into a RayCluster (no node fits, conflicting images, ...)."""


@dataclass(frozen=True)
class AppRequest:
    """One decorated object of the app: where it came from and what one of its containers needs."""

    handler: str  # "module:function"
    kind: str  # the decorator: function, schedule, endpoint, asgi, realtime, task_queue
    resources: ResourceSpec
    base_image: str | None = None
    dockerfile: bool = False


@dataclass
class GroupPlan:
    """One generated worker group: what it serves, where it runs and how big its Pod is."""

    name: str
    gpu_type: str | None
    cpu: int = 0
    mem_gib: int = 0
    gpus: int = 0
    instance: Instance | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    advertise: dict[str, int] = field(default_factory=dict)
    image: str = CPU_IMAGE
    custom_image: bool = False
    handlers: list[str] = field(default_factory=list)
    need: tuple[float, float, int] = (0.0, 0.0, 0)  # the largest request: cores, MiB, GPUs
    notes: list[str] = field(default_factory=list)  # comments on the group in the YAML
    warnings: list[str] = field(default_factory=list)  # also comments, and printed by the CLI


def _first(ladder: Iterable[int], at_least: float, what: str) -> int:
    for step in ladder:
        if step >= at_least - 1e-9:
            return step
    raise ManifestError(f"{what} {at_least:g} is larger than any worker Pod beamray generates")


def _need(requests: list[AppRequest]) -> tuple[float, float, int]:
    return (max((r.resources.cpu for r in requests), default=0.0),
            max((float(r.resources.memory_mib) for r in requests), default=0.0),
            max((r.resources.gpu_count for r in requests), default=0))


def _size(plan: GroupPlan, provisioned: set[str] | None) -> None:
    cpu, mem_mib, gpus = plan.need
    mem_gib = mem_mib * MEMORY_HEADROOM / 1024
    if plan.gpu_type in AWS_INSTANCES:
        family = AWS_INSTANCES[plan.gpu_type]
        fits = [i for i in family if i.gpus >= gpus and i.pod_cpu >= cpu and i.pod_mem_gib >= mem_gib]
        if not fits:
            largest = family[-1]
            raise ManifestError(
                f"no {plan.gpu_type} instance fits {', '.join(plan.handlers)} ({cpu:g} CPU, {mem_mib:g} MiB, "
                f"{gpus} GPU): the largest, {largest.name}, gives a Pod {largest.pod_cpu} CPU, "
                f"{largest.pod_mem_gib}Gi, {largest.gpus} GPU. Lower the request or choose another gpu=")
        inst = plan.instance = fits[0]
        plan.cpu, plan.mem_gib, plan.gpus = inst.pod_cpu, inst.pod_mem_gib, inst.gpus
        plan.node_selector = {"node.kubernetes.io/instance-type": inst.name}
        plan.notes.append(f"AWS {inst.name} ({inst.vcpu} vCPU, {inst.mem_gib} GiB, {inst.gpus}x {plan.gpu_type}): "
                          "one Ray worker Pod per node, with all its GPUs.")
        if provisioned is not None and inst.name not in provisioned:
            plan.warnings.append(f"eks/cluster.yaml has no node group of {inst.name}: add one (tainted "
                                 "nvidia.com/gpu=true:NoSchedule, minSize 0), or let Karpenter provide it.")
        return
    floor_cpu, floor_gib = PER_GPU_FLOOR if plan.gpu_type else (1, 4)
    count = max(gpus, 1) if plan.gpu_type else 0
    plan.gpus = count
    plan.cpu = _first(CPU_LADDER, max(cpu, floor_cpu * max(count, 1)), f"{plan.name}: CPU")
    plan.mem_gib = _first(MEMORY_LADDER_GIB, max(mem_gib, floor_gib * max(count, 1), 2 * plan.cpu),
                          f"{plan.name}: memory (GiB, with headroom)")
    if plan.gpu_type in GFD_PRODUCTS:
        plan.node_selector = {"nvidia.com/gpu.product": GFD_PRODUCTS[plan.gpu_type]}
        plan.notes.append("Not on AWS: nodes labelled by NVIDIA GPU Feature Discovery (with time-slicing the value "
                          "gains a -SHARED suffix: patch the selector).")
    elif plan.gpu_type:
        plan.node_selector = {"karpenter.k8s.aws/instance-gpu-name": plan.gpu_type.lower()}
        plan.notes.append(f"No known instance mapping for {plan.gpu_type}: this selects Karpenter's GPU-name label "
                          "(verify the value); on other clusters patch nodeSelector to your GPU nodes' label "
                          "(e.g. GFD's nvidia.com/gpu.product).")


def plan_groups(requests: list[AppRequest], extra_gpus: Iterable[str] = (),
                provisioned: set[str] | None = None) -> tuple[list[GroupPlan], list[str]]:
    """The worker groups ``requests`` need (cpu first, then GPU groups by name) and warnings to show."""
    warnings: list[str] = []
    order: list[str] = []
    for gpu in [g for r in requests for g in r.resources.gpu] + [g for raw in extra_gpus for g in parse_gpu(raw)]:
        if gpu != "any" and gpu not in order:
            order.append(gpu)
    for gpu in order:
        if gpu in NOT_NVIDIA:
            raise ManifestError(f"gpu={gpu!r} is not an NVIDIA GPU; `beamray k8s render` only generates "
                                "nvidia.com/gpu worker groups")
    members: dict[str | None, list[AppRequest]] = {None: [], **{g: [] for g in order}}
    for r in requests:
        types = [g for g in r.resources.gpu if g != "any"]
        if not r.resources.gpu:
            members[None].append(r)
        elif types:
            for g in types:
                members[g].append(r)
        elif order:  # only "any": the first type the app names serves it
            members[order[0]].append(r)
            warnings.append(f"{r.handler}: gpu='any' is served by the {order[0]} group")
        else:
            raise ManifestError(f"{r.handler} asks for gpu='any' and the app names no GPU type: pass "
                                "--gpus TYPE to choose the GPU nodes that serve it")
    plans = [_plan(gpu, members[gpu], provisioned) for gpu in [None] + sorted(order, key=str.lower)]
    return plans, warnings + [f"{p.name}: {w}" for p in plans for w in p.warnings]


def _plan(gpu: str | None, group: list[AppRequest], provisioned: set[str] | None) -> GroupPlan:
    name = gpu.lower() if gpu else "cpu"
    if not DNS1035.fullmatch(name):
        raise ManifestError(f"gpu type {gpu!r} gives the invalid group name {name!r}")
    cpu, mem_mib, gpus = _need(group)
    plan = GroupPlan(name=name, gpu_type=gpu, handlers=[r.handler for r in group],
                     need=(cpu, mem_mib, max(gpus, 1) if gpu else 0))
    _size(plan, provisioned)
    if gpu:  # accelerator_type:<T> is auto-detected (1); a custom resource counts GPUs, like the limit
        key = gpu_resource(gpu)
        plan.advertise = {key: 1 if key.startswith("accelerator_type:") else plan.gpus}
    images = sorted({r.base_image for r in group if r.base_image})
    if len(images) > 1:
        raise ManifestError(f"worker group {name} would need several images ({', '.join(images)}); one group "
                            "runs one image: give these handlers the same Image(base_image=...)")
    plan.image, plan.custom_image = (images[0], True) if images else (GPU_IMAGE if gpu else CPU_IMAGE, False)
    plan.warnings += [f"{r.handler}: Image.from_dockerfile is not built for Kubernetes; build and push it, then "
                      f"use Image(base_image=...). The group uses {plan.image}"
                      for r in group if r.dockerfile and not r.base_image]
    return plan


def _quoted_resources(advertise: dict[str, int]) -> str:
    """``'"{\\"RTX4090\\": 1}"'``: KubeRay pastes it into ``ray start --resources=...`` run by bash."""
    return '"' + json.dumps(advertise).replace('"', '\\"') + '"'


def _worker_group(plan: GroupPlan, template_group: dict[str, Any],
                  same_name: dict[str, Any] | None) -> dict[str, Any]:
    """One workerGroupSpec: the overlay's pod template (env, labels) with generated placement and size."""
    tmpl = copy.deepcopy(template_group.get("template") or {})
    spec = tmpl.setdefault("spec", {})
    container = spec.setdefault("containers", [{"name": "ray-worker"}])[0]
    if plan.gpu_type:  # GPU placement is generated; the template's CPU placement does not apply
        for key in ("nodeSelector", "tolerations", "affinity"):
            spec.pop(key, None)
    shm = [m["name"] for m in container.get("volumeMounts", []) if m.get("mountPath") == "/dev/shm"]
    container["volumeMounts"] = [m for m in container.get("volumeMounts", []) if m["name"] not in shm]
    spec["volumes"] = [v for v in spec.get("volumes", []) if v.get("name") not in shm]
    quantities = {"cpu": str(plan.cpu), "memory": f"{plan.mem_gib}Gi"}
    if plan.gpus:
        quantities["nvidia.com/gpu"] = str(plan.gpus)
    container["image"] = plan.image
    container["resources"] = {"requests": dict(quantities), "limits": dict(quantities)}
    if plan.gpu_type:
        spec["nodeSelector"] = dict(plan.node_selector)
        spec["tolerations"] = [dict(GPU_TOLERATION)]
    if plan.gpus > 1 or plan.gpu_type == "H100":  # NCCL and the object store need a large /dev/shm
        spec["volumes"].append({"name": "shared-mem", "emptyDir": {
            "medium": "Memory", "sizeLimit": f"{min(256, max(1, plan.mem_gib // 4))}Gi"}})
        container["volumeMounts"].append({"name": "shared-mem", "mountPath": "/dev/shm"})
    if not spec["volumes"]:
        del spec["volumes"]
    if not container["volumeMounts"]:
        del container["volumeMounts"]
    inherited = same_name or {}
    group: dict[str, Any] = {"groupName": plan.name}
    if plan.gpu_type:
        default_max = 2 if plan.gpus >= 8 else 4
        group.update(replicas=0, minReplicas=0, maxReplicas=max(1, inherited.get("maxReplicas", default_max)))
    else:
        base = same_name or template_group
        group.update(replicas=base.get("replicas", 0), minReplicas=base.get("minReplicas", 0),
                     maxReplicas=base.get("maxReplicas", 10))
    idle = inherited.get("idleTimeoutSeconds", 120 if plan.gpus >= 8 else None)
    if idle is not None:
        group["idleTimeoutSeconds"] = idle
    group["rayStartParams"] = {"resources": _quoted_resources(plan.advertise)} if plan.advertise else {}
    group["template"] = tmpl
    return group


def _template_group(rc: dict[str, Any]) -> dict[str, Any]:
    groups = rc["spec"].get("workerGroupSpecs") or []
    for g in groups:
        if g.get("groupName") == "cpu":
            return g
    if groups:
        return groups[0]
    head = rc["spec"]["headGroupSpec"]["template"]
    container = head["spec"]["containers"][0]
    labels = {**head.get("metadata", {}).get("labels", {}), "app.kubernetes.io/component": "ray-worker"}
    worker = {"name": "ray-worker", "env": copy.deepcopy(container.get("env", []))}
    return {"template": {"metadata": {"labels": labels}, "spec": {"containers": [worker]}}}


def _rename(obj: Any, old: str, new: str) -> None:
    """Point ``ray.io/cluster`` label selectors (the gateway Service's) at the renamed cluster."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "ray.io/cluster" and value == old:
                obj[key] = new
            else:
                _rename(value, old, new)
    elif isinstance(obj, list):
        for value in obj:
            _rename(value, old, new)


def compile_cluster(base_docs: list[dict[str, Any]], plans: list[GroupPlan],
                    name: str | None = None) -> list[dict[str, Any]]:
    """The overlay's documents, in their order, with the RayCluster's worker groups replaced by ``plans``."""
    docs = copy.deepcopy(base_docs)
    clusters = [d for d in docs if d.get("apiVersion") == "ray.io/v1" and d.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        raise ManifestError(f"the overlay must contain exactly one ray.io/v1 RayCluster, found {len(clusters)}")
    rc = clusters[0]
    template = _template_group(rc)
    existing = {g.get("groupName"): g for g in rc["spec"].get("workerGroupSpecs") or []}
    rc["spec"]["workerGroupSpecs"] = [_worker_group(p, template, existing.get(p.name)) for p in plans]
    old = rc["metadata"]["name"]
    if name and name != old:
        if not DNS1035.fullmatch(name) or len(name) > 53:
            raise ManifestError(f"--name {name!r} must be a DNS-1035 label of at most 53 characters (KubeRay's limit)")
        rc["metadata"]["name"] = name
        for doc in docs:
            _rename(doc, old, name)
    return docs


def _fmt_need(plan: GroupPlan) -> str:
    if not plan.handlers:
        return "none (the smallest size)"
    cpu, mem_mib, gpus = plan.need
    gpu = f", {gpus} GPU" if plan.gpu_type else ""
    return f"{cpu:g} CPU, {mem_mib / 1024:g}Gi{gpu}"


def annotate(text: str, plans: list[GroupPlan], header: list[str]) -> str:
    """Put a header and per-group comments (placement, sizing, custom image) into the dumped YAML."""
    by_name = {p.name: p for p in plans}
    out = [f"# {line}".rstrip() for line in header]
    current = None
    for line in text.splitlines():
        m = re.fullmatch(r"(\s*)- groupName: (\S+)", line)
        if m and m.group(2) in by_name:
            current = by_name[m.group(2)]
            pad = m.group(1) + "# "
            served = ", ".join(current.handlers) or "no handler of the app yet (--gpus)"
            what = f"{current.gpu_type} ({gpu_resource(current.gpu_type)})" if current.gpu_type else "CPU only"
            out.append(f"{pad}---- {current.name}: {what}; serves {served}")
            out += [pad + note for note in current.notes + current.warnings]
            out.append(f"{pad}Pod {current.cpu} CPU, {current.mem_gib}Gi, {current.gpus} GPU; largest request "
                       f"{_fmt_need(current)} (memory limit >= {MEMORY_HEADROOM:g}x request).")
        m = re.fullmatch(r"(\s*)image: .*", line)
        if m and current is not None:  # the group's Ray container comes first; later images are not ours
            if current.custom_image:
                fallback = GPU_IMAGE if current.gpu_type else CPU_IMAGE
                out.append(f"{m.group(1)}# From the app's Image(base_image=...): it must contain Ray {RAY_VERSION} "
                           f"(Python 3.11, as on the head) and beamray; else drop base_image to get {fallback}.")
            current = None
        out.append(line)
    return "\n".join(out) + "\n"


def find_renderer(base: Path) -> Path:
    """``render.py`` of the k8s/kuberay tree that holds ``base`` (else this repository's)."""
    for parent in [base.resolve(), *base.resolve().parents]:
        if (parent / "render.py").is_file() and (parent / "base").is_dir():
            return parent / "render.py"
    if (KUBERAY_DIR / "render.py").is_file():
        return KUBERAY_DIR / "render.py"
    raise ManifestError(f"cannot find k8s/kuberay/render.py above {base} or in {KUBERAY_DIR}")


_renderers: dict[Path, Any] = {}


def load_renderer(path: Path) -> Any:
    """Import k8s/kuberay/render.py (a script, not a package) once per path."""
    path = path.resolve()
    if path not in _renderers:
        spec = importlib.util.spec_from_file_location(f"beamray_kuberay_render_{len(_renderers)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _renderers[path] = module
    return _renderers[path]


def provisioned_instance_types(kuberay_dir: Path) -> set[str] | None:
    """Instance types of the eksctl node groups next to the overlays (None when there is no eks/cluster.yaml)."""
    path = kuberay_dir / "eks" / "cluster.yaml"
    if not path.is_file():
        return None
    import yaml

    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {ng["instanceType"] for key in ("managedNodeGroups", "nodeGroups")
            for ng in config.get(key) or [] if ng.get("instanceType")}


@dataclass
class Rendered:
    docs: list[dict[str, Any]]
    plans: list[GroupPlan]
    warnings: list[str]
    text: str


def render_app(requests: list[AppRequest], base: Path, extra_gpus: Iterable[str] = (), name: str | None = None,
               source: str = "app.py", base_label: str | None = None) -> Rendered:
    """Render ``base`` (a kustomize overlay) with worker groups generated from ``requests``."""
    renderer_path = find_renderer(base)
    renderer = load_renderer(renderer_path)
    try:
        base_docs = renderer.render(base)
    except renderer.RenderError as exc:
        raise ManifestError(f"cannot render {base}: {exc}") from exc
    plans, warnings = plan_groups(requests, extra_gpus, provisioned_instance_types(renderer_path.parent))
    if not requests:
        warnings.insert(0, f"{source}: no decorated Beam objects found; only the cpu group is generated")
    docs = compile_cluster(base_docs, plans, name)
    header = [f"Generated by `beamray k8s render {source}` from {base_label or base}: do not edit, re-render.",
              "The overlay's worker groups are replaced by groups generated from the app's requests:"]
    header += [f"  {r.handler} ({r.kind}): {r.resources.cpu:g} CPU, {float(r.resources.memory_mib):g} MiB"
               + (f", {r.resources.gpu_count}x {'|'.join(r.resources.gpu)}" if r.resources.gpu else "")
               for r in requests] or ["  (no decorated Beam objects found)"]
    return Rendered(docs, plans, warnings, annotate(renderer.dump(docs), plans, header))
