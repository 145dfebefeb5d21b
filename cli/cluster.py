"""``beamray cluster up | down | status``: the embedded local Ray head."""

from __future__ import annotations

import json
from pathlib import Path

import click

from beamray import cluster, head
from beamray.adapters.parsing import parse_gpu, parse_memory
from beamray.cli.common import beamray_errors, json_option, print_json, say


@click.group("cluster")
def cluster_group() -> None:
    """Start, stop and inspect the Ray cluster beamray uses."""


@cluster_group.command()
@click.option("--num-cpus", type=float, help="Logical CPUs of the embedded head (default: max(4, cores)).")
@click.option("--num-gpus", type=int, help="GPUs to advertise (default: what Ray detects).")
@click.option("--resources", help='Extra Ray resources as JSON, e.g. \'{"RTX4090": 1}\'.')
@click.option("--gpu", "gpus", multiple=True, metavar="TYPE[:COUNT]",
              help="Emulate GPUs of a Beam type (e.g. T4, A10G:2) as Ray logical resources, for code that "
                   "does not use the device. Repeatable.")
@click.option("--memory", help="Memory Ray may schedule, in Beam's format (e.g. 32Gi; default: the machine's).")
@click.option("--simulate", "manifest", type=click.Path(exists=True, path_type=Path), metavar="MANIFEST",
              help="Shape the cluster as a KubeRay RayCluster: a kustomize overlay (k8s/kuberay/overlays/eks-gpu) "
                   "or a rendered file (`beamray k8s render`); its worker groups become simulated nodes that "
                   "Ray's autoscaler adds and removes on this machine.")
@beamray_errors
def up(num_cpus: float | None, num_gpus: int | None, resources: str | None, gpus: tuple[str, ...],
       memory: str | None, manifest: Path | None) -> None:
    """Start the embedded local cluster (kept running after this command exits)."""
    if cluster.config.configured_address():
        raise click.ClickException(
            f"BEAMRAY_ADDRESS/RAY_ADDRESS point at {cluster.config.configured_address()}; "
            "`cluster up` manages only the embedded cluster. Unset them first."
        )
    if manifest is not None:
        if gpus or memory or num_cpus is not None or num_gpus is not None or resources:
            raise click.UsageError("--simulate takes the node shapes from the manifest: drop --num-cpus, "
                                   "--num-gpus, --resources, --gpu and --memory")
        _up_simulated(manifest)
        return
    try:
        extra = json.loads(resources) if resources else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--resources") from exc
    if gpus:
        from beamray.gpus import emulated_gpus

        emulated_count, emulated = emulated_gpus(_parse_gpus(gpus))
        num_gpus = (num_gpus or 0) + emulated_count
        extra = {**emulated, **(extra or {})}
    memory_mib = parse_memory(memory) if memory else None
    already = head.embedded_state() is not None
    if already and (gpus or memory or num_cpus or num_gpus or resources):
        say("The cluster is already running, so its resources stay as they are: "
            "`beamray cluster down` first to change them")
    state = head.start_embedded(num_cpus=num_cpus, num_gpus=num_gpus, resources=extra, memory_mib=memory_mib)
    say(f"Cluster {'already running' if already else 'started'} at {state['address']}")
    say(f"Dashboard: {state['dashboard_url']}")
    _restore_deployments()


def _restore_deployments() -> None:
    from beamray import registry

    if any(record.status == "running" for record in registry.Registry().records()):
        from beamray import deploy

        deploy.ensure_serve()  # brings stored deployments back
        say(f"Gateway: {cluster.gateway_url()}")


def _up_simulated(manifest: Path) -> None:
    from beamray import simulate

    started = simulate.start(manifest)
    say(f"Simulated cluster started at {started.address}, shaped as {started.source}")
    say(f"Dashboard: {started.dashboard_url}")
    for group in started.groups:
        shape = ", ".join(f"{key} {_shown(key, value)}" for key, value in group.resources.items())
        click.echo(f"   {group.name}: {group.min_replicas}..{group.max_replicas} nodes of {shape}; "
                   f"idle after {group.idle_timeout_s:g} s")
    _restore_deployments()


def _shown(key: str, value: float) -> str:
    return f"{value / 2**30:.1f} GiB" if key in ("memory", "object_store_memory") else f"{value:g}"


def _parse_gpus(values: tuple[str, ...]) -> dict[str, int]:
    """``("T4", "A10G:2")`` → ``{"T4": 1, "A10G": 2}``, types checked as Beam checks ``gpu=``."""
    gpus: dict[str, int] = {}
    for value in values:
        name, _, count = value.partition(":")
        if count and not (count.isdigit() and int(count) > 0):
            raise click.BadParameter(f"{value!r}: COUNT must be a positive integer", param_hint="--gpu")
        (gpu_type,) = parse_gpu(name) or ("",)
        if not gpu_type:
            raise click.BadParameter(f"{value!r} names no GPU type", param_hint="--gpu")
        gpus[gpu_type] = gpus.get(gpu_type, 0) + int(count or 1)
    return gpus


@cluster_group.command("node-types")
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@beamray_errors
def node_types(manifest: Path) -> None:
    """Tell the cluster which worker groups of MANIFEST its autoscaler may add (KubeRay: the RayCluster
    applied; an overlay folder or a rendered file), so that requests only those nodes fit are accepted."""
    from beamray import simulate

    groups = simulate.publish_manifest_node_types(manifest)
    say(f"Scalable node types: {', '.join(g.name for g in groups if g.max_replicas > 0) or 'none'}")


@cluster_group.command()
@beamray_errors
def down() -> None:
    """Stop the embedded cluster and everything running on it."""
    say("Cluster stopped" if head.stop_embedded() else "No embedded cluster is running")


@cluster_group.command()
@json_option
@beamray_errors
def status(as_json: bool) -> None:
    """Show whether the cluster runs, where, and its resources."""
    info = cluster.info()
    if as_json:
        print_json(info)
        return
    if not info.running:
        say("Embedded cluster is not running (it starts on first use, or with `beamray cluster up`)")
        return
    say(f"Cluster running at {info.address}{' (embedded)' if info.embedded else ''}")
    say(f"Dashboard: {info.dashboard_url}")
    say(f"Gateway: {info.gateway_url}" + (f" (ingress: {info.ingress})" if info.ingress else ""))
    for key, value in sorted(info.resources.items()):
        click.echo(f"   {key}: {_shown(key, value)}")
    if len(info.nodes) > 1:
        say(f"Nodes ({len(info.nodes)}):")
        for node in info.nodes:
            shape = ", ".join(f"{key} {_shown(key, value)}" for key, value in sorted(node["resources"].items())
                              if key != "object_store_memory")
            click.echo(f"   {node['group'] or '-'} {node['node_id']}: {shape}")


COMMANDS = [cluster_group]
