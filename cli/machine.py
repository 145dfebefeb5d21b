"""``beamray machine list``: the cluster's nodes with their CPUs, memory and GPUs, totals and free."""

from __future__ import annotations

from dataclasses import asdict

import click

from beamray.cli.common import beamray_errors, json_option, print_json, render_table


def _gpus(machine) -> str:
    if not machine.gpu_total:
        return "-"
    types = ", ".join(f"{gpu_type}×{count:g}" for gpu_type, count in sorted(machine.gpu_types.items()))
    return f"{machine.gpu_free:g}/{machine.gpu_total:g}" + (f" ({types})" if types else "")


@click.group("machine")
def machine_group() -> None:
    """The cluster's machines (Ray nodes)."""


@machine_group.command("list")
@json_option
@beamray_errors
def list_command(as_json: bool) -> None:
    """Every node: CPU, memory and GPUs (type and count), free of total."""
    from beamray import machines

    found = machines.list_machines()
    if as_json:
        print_json([asdict(machine) for machine in found])
        return
    rows = [(m.node_id[:12], m.address, m.state + (" (head)" if m.head else ""), f"{m.cpu_free:g}/{m.cpu_total:g}",
             f"{m.memory_free_mib}/{m.memory_total_mib}Mi", _gpus(m)) for m in found]
    click.echo(render_table(("ID", "Address", "State", "CPU free", "Memory free", "GPU free"), rows))
    click.echo(f"\n  {len(found)} items")


COMMANDS = [machine_group]
