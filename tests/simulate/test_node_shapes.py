"""The simulated node types come from the manifests ``kubectl apply -k`` uses, read as KubeRay's autoscaler
reads them, and fit what beamray asks Ray for (pure: no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beamray import simulate
from beamray.exceptions import ClusterError
from beamray.runtime.resources import _fits, ray_options, requested
from beamray.specs import ResourceSpec

OVERLAYS = Path(__file__).resolve().parents[2] / "k8s" / "kuberay" / "overlays"


def groups(path: Path) -> dict[str, simulate.NodeGroup]:
    config = simulate.autoscaling_config(simulate.read_raycluster(path))
    return {group.name: group for group in simulate.node_groups(config)}


def test_eks_gpu_overlay_gives_one_node_type_per_worker_group_with_its_shape():
    shapes = groups(OVERLAYS / "eks-gpu")
    assert list(shapes) == ["cpu", "a10g", "h100"]  # the overlay drops rtx4090
    assert shapes["a10g"].resources == {"CPU": 6, "GPU": 1, "memory": 24 * 2**30, "accelerator_type:A10G": 1}
    assert (shapes["a10g"].min_replicas, shapes["a10g"].max_replicas) == (0, 8)
    assert shapes["h100"].resources["GPU"] == 8 and shapes["cpu"].min_replicas == 1


def test_idle_timeouts_are_the_manifests_scaled_down():
    shapes = groups(OVERLAYS / "eks-gpu")
    assert shapes["cpu"].idle_timeout_s == 300 / simulate.IDLE_TIME_SCALE  # autoscalerOptions
    assert shapes["h100"].idle_timeout_s == 120 / simulate.IDLE_TIME_SCALE  # the group's own


def test_the_rtx4090_group_advertises_the_resource_beamray_asks_for():
    shapes = groups(OVERLAYS / "onprem-rtx4090")
    ask = requested(ray_options(ResourceSpec(gpu=("RTX4090",), gpu_count=1), "RTX4090"))
    assert _fits(ask, shapes["rtx4090"].resources)


def test_an_a10g_function_fits_the_a10g_group_and_no_other():
    ask = requested(ray_options(ResourceSpec(gpu=("A10G",), gpu_count=1), "A10G"))
    assert [name for name, group in groups(OVERLAYS / "eks-gpu").items() if _fits(ask, group.resources)] == ["a10g"]


def test_a_rendered_file_reads_like_its_overlay(tmp_path):
    from beamray import k8s

    renderer = k8s.load_renderer(k8s.find_renderer(OVERLAYS / "eks-gpu"))
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(renderer.dump(renderer.render(OVERLAYS / "eks-gpu")))
    assert groups(rendered) == groups(OVERLAYS / "eks-gpu")


def test_the_autoscaler_runs_the_groups_on_the_fake_provider_with_small_object_stores():
    config = simulate.autoscaling_config(simulate.read_raycluster(OVERLAYS / "cpu-only"))
    assert config["provider"]["module"] == simulate.PROVIDER_CLASS
    assert config["head_node_type"] == simulate.HEAD_TYPE
    assert config["available_node_types"][simulate.HEAD_TYPE]["resources"]["CPU"] == 0  # num-cpus: "0"
    assert config["available_node_types"]["cpu"]["resources"]["object_store_memory"] == simulate.OBJECT_STORE_BYTES


def test_a_file_without_a_raycluster_is_refused(tmp_path):
    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(ClusterError, match="exactly one ray.io/v1 RayCluster"):
        simulate.read_raycluster(manifest)


def test_cluster_up_refuses_hand_made_shapes_with_simulate(monkeypatch):
    from click.testing import CliRunner

    from beamray.cli.cluster import cluster_group

    for key in ("BEAMRAY_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    result = CliRunner().invoke(cluster_group, ["up", "--simulate", str(OVERLAYS / "eks-gpu"), "--gpu", "A10G"])
    assert result.exit_code == 2 and "--simulate takes the node shapes from the manifest" in result.output
