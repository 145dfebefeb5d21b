"""The CLI's rich-drawn tables and durations, and what the container/machine views read from Ray's state records."""

from __future__ import annotations

import re

from ray.util.state.common import ActorState, NodeState

from beamray import containers, machines
from beamray.cli.common import humanize_duration, render_table
from beamray.registry import new_record
from beamray.runtime.progress import MapProgress


def test_table_keeps_beams_layout_two_space_indent_and_a_rule_under_the_headers() -> None:
    table = render_table(("Name", "Last Updated", "Created"),
                         [("AWS_KEY", "just now", "just now"), ("AWS_REGION", "1 minute ago", "just now")])
    assert table.splitlines() == [
        "  Name         Last Updated   Created",
        " " + "─" * 38,
        "  AWS_KEY      just now       just now",
        "  AWS_REGION   1 minute ago   just now",
    ]


def test_table_never_wraps_long_cells_nor_reads_markup() -> None:
    url = "http://127.0.0.1:8000/endpoint/" + "x" * 200
    table = render_table(("ID", "URL"), [("[bold]a[/bold]", url)])
    assert table.splitlines()[2].split() == ["[bold]a[/bold]", url]


def test_empty_table_is_headers_and_rule() -> None:
    assert render_table(("ID", "Name"), []).splitlines() == ["  ID   Name", " " + "─" * 11]


def test_wide_characters_keep_columns_aligned() -> None:
    from rich.cells import cell_len

    lines = render_table(("Name", "Kind"), [("🎉", "a"), ("xyz", "b")]).splitlines()
    assert cell_len(lines[2][:lines[2].index("a")]) == cell_len(lines[3][:lines[3].index("b")])


def test_durations_show_their_two_largest_units() -> None:
    assert [humanize_duration(s) for s in (0, 42, 303, 3 * 3600 + 125, 2 * 86400 + 4 * 3600 + 7)] == \
        ["0s", "42s", "5m 3s", "3h 2m", "2d 4h"]


def test_map_progress_draws_nothing_off_a_terminal(capsys) -> None:
    progress = MapProgress("app:square", 1000)
    for _ in range(1000):
        progress.advance()
    progress.close()
    assert progress.done == 1000
    assert capsys.readouterr().err == ""


def _node(**resources: float) -> NodeState:
    return NodeState(node_id="n" * 56, node_ip="10.0.0.7", is_head_node=True, state="ALIVE", state_message=None,
                     node_name="10.0.0.7", resources_total=resources, labels={}, start_time_ms=1_700_000_000_000)


def test_machine_shows_emulated_gpu_types_with_their_counts() -> None:
    node = _node(**{"CPU": 4.0, "memory": 8 * 2**30, "GPU": 4.0, "accelerator_type:A10G": 2.0,
                    "accelerator_type:H100": 1.0, "accelerator_type:T4": 1.0})
    machine = machines._machine(node, {"CPU": 1.5, "memory": 2**30, "GPU": 3.0})
    assert machine.gpu_types == {"A10G": 2.0, "H100": 1.0, "T4": 1.0}
    assert (machine.cpu_total, machine.cpu_free, machine.memory_total_mib, machine.memory_free_mib) == (4, 1.5, 8192, 1024)
    assert (machine.gpu_total, machine.gpu_free, machine.started_at) == (4.0, 3.0, 1_700_000_000)


def test_a_real_gpu_node_counts_every_gpu_under_its_one_type() -> None:
    machine = machines._machine(_node(**{"CPU": 8.0, "GPU": 8.0, "accelerator_type:H100": 1.0}), {})
    assert machine.gpu_types == {"H100": 8.0}


def test_custom_gpu_resources_name_their_beam_type() -> None:
    assert machines.gpu_types({"RTX4090": 1.0, "CPU": 2.0, "accelerator_type:A100-80G": 1.0}) == \
        {"RTX4090": 1.0, "A100-80": 1.0}


def _actor(**fields) -> ActorState:
    defaults = dict(actor_id="a" * 32, class_name="TaskWorker", state="ALIVE", job_id="02000000", name="",
                    node_id="n" * 56, pid=123, ray_namespace="beamray", serialized_runtime_env="{}",
                    required_resources={"CPU": 1.0, "memory": 128 * 2**20}, death_cause=None, is_detached=False,
                    placement_group_id=None, repr_name="")
    defaults.update(fields)
    return ActorState(**defaults)


def _snapshot(*records) -> containers._Snapshot:
    return containers._Snapshot(actors=[], tasks=[], started={("n" * 56, 123): 1_700_000_000.0},
                                nodes={"n" * 56: "10.0.0.7"}, records=list(records))


def test_a_serve_replica_is_named_after_its_deployment_and_serves_replica_id() -> None:
    record = new_record(name="inspect-web", kind="endpoint", version=3, authorized=True, handler="app:handler",
                        gateway_url="http://gw")
    actor = _actor(class_name=f"ServeReplica:{record.app_name}:inspect-web", ray_namespace="serve",
                   name=f"SERVE_REPLICA::{record.app_name}#inspect-web#8x4iedpo")
    container = containers._replica(_snapshot(record), actor)
    assert container.container_id == f"endpoint-{record.stub_id[:8]}-8x4iedpo"
    assert (container.kind, container.deployment, container.version, container.status) == \
        ("endpoint", "inspect-web", 3, "RUNNING")
    assert (container.node_address, container.started_at, container.cpu, container.memory_mib) == \
        ("10.0.0.7", 1_700_000_000.0, 1.0, 128)


def test_replicas_of_other_serve_apps_are_not_containers() -> None:
    actor = _actor(class_name="ServeReplica:beamray-gateway:Gateway", ray_namespace="serve",
                   name="SERVE_REPLICA::beamray-gateway#Gateway#vgapuoig")
    assert containers._replica(_snapshot(), actor) is None


def test_task_workers_of_one_container_are_one_row() -> None:
    record = new_record(name="inspect-queue", kind="taskqueue", version=1, authorized=True, handler="app:handler",
                        gateway_url="http://gw")
    container_id = f"taskqueue-{record.stub_id[:8]}-0badf00d"
    snapshot = _snapshot(record)
    rows = [containers._task_worker(snapshot, _actor(actor_id=str(n) * 32, repr_name=container_id)) for n in (1, 2)]
    [merged] = containers._merge_workers(rows)
    assert (merged.container_id, merged.deployment, merged.cpu) == (container_id, "inspect-queue", 2.0)
    assert merged.ray_actor_ids == ["1" * 32, "2" * 32]
    assert containers._task_worker(snapshot, _actor(repr_name="")) is None  # not started yet


def test_unknown_container_id_error_says_how_to_find_the_right_one() -> None:
    error = containers.ContainerNotFoundError("No running container has the id 'x'. See them all with "
                                              "`beamray container list`.")
    assert re.search(r"`beamray container list`", str(error)) and not str(error).startswith("'")


def test_a_running_function_call_is_named_as_its_container_id_says() -> None:
    from ray.util.state.common import TaskState

    from beamray.runtime.functions import stub_id
    from beamray.specs import FunctionSpec

    spec = FunctionSpec(name="slow", app="", handler="app:slow", func=print)
    task = TaskState(task_id="t" * 48, attempt_number=0, name="app:slow", state="RUNNING", job_id="03000000",
                     actor_id=None, type="NORMAL_TASK", func_or_class_name=f"beamray_function:{stub_id(spec)}", parent_task_id="",
                     node_id="n" * 56, worker_id="c10172cd" + "0" * 48, worker_pid=99, error_type=None,
                     required_resources={"CPU": 0.5}, start_time_ms=1_700_000_000_000)
    snapshot = _snapshot()
    snapshot.tasks = [task]
    [call] = containers._function_calls(snapshot)
    assert call.container_id == f"function-{stub_id(spec)[:8]}-c10172cd"
    assert (call.kind, call.pid, call.cpu, call.ray_task_id) == ("function", 99, 0.5, "t" * 48)
