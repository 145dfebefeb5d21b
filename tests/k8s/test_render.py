"""``beamray k8s render`` and ``beamray k8s validate`` through click's CliRunner (no cluster, no kubectl).

Apps come from tests/apps/gpu_apps.py (one handler each, or the whole file). Every rendered document must
pass the offline KubeRay v1.7 validator (shared/kuberay-schemas/validate.py), and every request must fit
its worker group as the Ray autoscaler itself reads the group (its KubeRay autoscaling config code).
"""
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from beamray import k8s
from beamray.adapters.types import GpuType
from beamray.cli.k8s import k8s_group
from beamray.specs import ResourceSpec

REPO = Path(__file__).resolve().parents[2]
APP = "tests/apps/gpu_apps.py"
VALIDATE_PY = REPO.parent / "shared" / "kuberay-schemas" / "validate.py"
HANDLERS = ["a10g_endpoint", "h100_function", "rtx4090_queue", "priority_function", "two_gpu_endpoint",
            "cpu_function", "hourly", "t4_function", "a6000_function"]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GIB = 2**30


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Import the app as Beam's CLI would (module path relative to the repo)."""
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def validator():
    if not VALIDATE_PY.is_file():
        pytest.skip(f"KubeRay validator not found at {VALIDATE_PY}: shared/ must sit beside the repo root")
    spec = importlib.util.spec_from_file_location("kuberay_schemas_validate_for_render", VALIDATE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(*args):
    return CliRunner().invoke(k8s_group, list(args), catch_exceptions=False)


def render(target=APP, *args):
    result = invoke("render", target, *args)
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.stdout)), result


def raycluster(docs):
    (rc,) = [d for d in docs if d["kind"] == "RayCluster"]
    return rc


def groups(docs):
    return {g["groupName"]: g for g in raycluster(docs)["spec"]["workerGroupSpecs"]}


def container(group):
    return group["template"]["spec"]["containers"][0]


def limits(group):
    return container(group)["resources"]["limits"]


def bash_custom_resources(value):
    """What `ray start --resources=<value>` receives after bash unquotes it."""
    words = shlex.split(value)
    assert len(words) == 1, value
    return json.loads(words[0])


def autoscaler_view(group):
    """The group's resources as the Ray autoscaler derives them from the RayCluster spec."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _get_ray_resources_from_group_spec

    return _get_ray_resources_from_group_spec(group, is_head=False)


def assert_gpu_group(group, selector, gpus, advertised):
    assert group["minReplicas"] == 0 and group["replicas"] == 0 and group["maxReplicas"] >= 1
    assert group["template"]["spec"]["nodeSelector"] == selector
    assert GPU_TOLERATION in group["template"]["spec"]["tolerations"]
    resources = container(group)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == str(gpus)
    assert resources["limits"] == resources["requests"]
    value = group["rayStartParams"]["resources"]
    assert bash_custom_resources(value) == advertised
    assert {k: v for k, v in autoscaler_view(group).items() if k in advertised} == advertised
    assert not group.get("resources") and "num-gpus" not in group["rayStartParams"]
    assert container(group)["image"] == k8s.GPU_IMAGE or group["groupName"] == "h100"


def validate_docs(validator, docs, tmp_path, capsys, name="rendered.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    capsys.readouterr()
    rc = validator.main([str(path)])
    return rc, capsys.readouterr().out


# --------------------------------------------------------------------------- one app per GPU shape


def test_a10g_endpoint_gets_the_g5_group_of_the_eks_overlay():
    docs, _ = render(f"{APP}:a10g_endpoint")
    g = groups(docs)
    assert list(g) == ["cpu", "a10g"]
    assert_gpu_group(g["a10g"], {"node.kubernetes.io/instance-type": "g5.2xlarge"}, 1, {"accelerator_type:A10G": 1})
    assert limits(g["a10g"]) == {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "1"}  # = the hand-written group
    assert "volumes" not in g["a10g"]["template"]["spec"]


def test_h100_function_gets_a_whole_p5_node_with_memory_backed_dev_shm_and_its_base_image():
    docs, result = render(f"{APP}:h100_function")
    g = groups(docs)["h100"]
    assert_gpu_group(g, {"node.kubernetes.io/instance-type": "p5.48xlarge"}, 8, {"accelerator_type:H100": 1})
    assert limits(g) == {"cpu": "176", "memory": "1600Gi", "nvidia.com/gpu": "8"}
    assert g["idleTimeoutSeconds"] == 120
    vols = {v["name"]: v for v in g["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(g)["volumeMounts"]}
    assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    from tests.apps.gpu_apps import CUSTOM_IMAGE

    assert container(g)["image"] == CUSTOM_IMAGE
    line = result.stdout.splitlines().index(f"          image: {CUSTOM_IMAGE}")
    comment = result.stdout.splitlines()[line - 1]
    assert comment.strip().startswith("#") and "Ray 2.60.0" in comment and "beamray" in comment
    assert result.stdout.count("Image(base_image=...)") == 1  # not on the Redis image after the last group
    assert container(groups(docs)["cpu"])["image"] == k8s.CPU_IMAGE  # the CPU group keeps the stock image


def test_rtx4090_queue_advertises_custom_resource_per_gpu_on_gfd_labelled_nodes():
    docs, _ = render(f"{APP}:rtx4090_queue", "--base", "k8s/kuberay/overlays/onprem-rtx4090")
    g = groups(docs)["rtx4090"]
    assert_gpu_group(g, {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"}, 1, {"RTX4090": 1})
    assert limits(g) == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert not [d for d in docs if d["kind"] == "Ingress"]  # the on-prem overlay's other documents come along


def test_priority_list_gets_a_group_for_every_type():
    docs, _ = render(f"{APP}:priority_function")
    g = groups(docs)
    assert list(g) == ["cpu", "a10g", "h100"]
    assert_gpu_group(g["a10g"], {"node.kubernetes.io/instance-type": "g5.4xlarge"}, 1, {"accelerator_type:A10G": 1})
    assert_gpu_group(g["h100"], {"node.kubernetes.io/instance-type": "p5.48xlarge"}, 8, {"accelerator_type:H100": 1})


def test_gpu_count_two_moves_to_a_multi_gpu_instance_and_says_it_is_not_provisioned():
    docs, result = render(f"{APP}:two_gpu_endpoint")
    g = groups(docs)["a10g"]
    assert_gpu_group(g, {"node.kubernetes.io/instance-type": "g5.12xlarge"}, 4, {"accelerator_type:A10G": 1})
    assert "/dev/shm" in [m["mountPath"] for m in container(g)["volumeMounts"]]
    assert "eks/cluster.yaml has no node group of g5.12xlarge" in result.stderr
    assert "# eks/cluster.yaml has no node group of g5.12xlarge" in result.stdout


def test_cpu_only_app_gets_only_a_cpu_group_with_headroom():
    docs, _ = render(f"{APP}:cpu_function")
    g = groups(docs)
    assert list(g) == ["cpu"]
    assert limits(g["cpu"]) == {"cpu": "4", "memory": "24Gi"}  # 16Gi x 1.25, rounded up the ladder
    assert container(g["cpu"])["image"] == k8s.CPU_IMAGE
    assert "nvidia.com/gpu" not in container(g["cpu"])["resources"]["requests"]


def test_types_without_instance_mapping_select_karpenters_gpu_name_with_a_comment():
    docs, result = render(f"{APP}:a6000_function")
    g = groups(docs)["a6000"]
    assert_gpu_group(g, {"karpenter.k8s.aws/instance-gpu-name": "a6000"}, 1, {"A6000": 1})
    assert "# No known instance mapping for A6000" in result.stdout


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_request_fits_its_groups_as_the_autoscaler_reads_them(handler):
    from beamray.runtime.resources import ray_options, requested

    docs, _ = render(f"{APP}:{handler}")
    import tests.apps.gpu_apps as app  # after render: its `from beam import ...` needs the drop-in

    g = groups(docs)
    resources = getattr(app, handler).parent.spec_for(getattr(app, handler).func).resources
    for gpu in resources.gpu or (None,):
        offered = autoscaler_view(g[gpu.lower() if gpu else "cpu"])
        for key, amount in requested(ray_options(resources, gpu)).items():
            assert offered.get(key, 0) >= amount, (handler, gpu, key, amount, offered)
        memory_limit = offered["memory"]
        assert memory_limit >= k8s.MEMORY_HEADROOM * resources.memory_mib * 2**20


@pytest.mark.parametrize("target", [f"{APP}:{h}" for h in HANDLERS] + [APP])
def test_every_rendered_document_passes_the_kuberay_validator(target, validator, tmp_path, capsys):
    docs, _ = render(target, "--gpus", "L4")
    rc, out = validate_docs(validator, docs, tmp_path, capsys)
    assert rc == 0, out
    assert re.search(r"\d+ documents: 1 valid, 0 invalid", out), out


# --------------------------------------------------------------------------- the whole app, options


def test_whole_app_groups_are_sorted_deterministic_and_extras_added():
    docs, first = render(APP, "--gpus", "L4, T4")
    _, second = render(APP, "--gpus", "T4,L4")
    assert first.stdout == second.stdout
    assert list(groups(docs)) == ["cpu", "a10g", "a6000", "h100", "l4", "rtx4090", "t4"]
    assert [d["kind"] for d in docs] == ["RayCluster", "PersistentVolumeClaim", "Deployment", "Service",
                                         "Service", "Ingress", "NetworkPolicy", "NetworkPolicy"]  # eks-gpu's order
    assert groups(docs)["l4"]["template"]["spec"]["nodeSelector"] == {"node.kubernetes.io/instance-type": "g6.2xlarge"}
    assert "gpu='any' is served by the A10G group" in first.stderr
    cpu = limits(groups(docs)["cpu"])
    assert cpu == {"cpu": "4", "memory": "24Gi"}  # cpu_function outgrows the hourly schedule


def test_name_renames_the_cluster_and_the_gateway_selector(tmp_path):
    out = tmp_path / "app.yaml"
    result = invoke("render", f"{APP}:a10g_endpoint", "--name", "embedder", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "=> Wrote" in result.stdout and "RayCluster embedder" in result.stdout
    docs = list(yaml.safe_load_all(out.read_text()))
    assert raycluster(docs)["metadata"]["name"] == "embedder"
    (gateway,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "beamray-gateway"]
    assert gateway["spec"]["selector"]["ray.io/cluster"] == "embedder"
    bad = invoke("render", f"{APP}:a10g_endpoint", "--name", "Not_DNS")
    assert bad.exit_code == 1 and "DNS-1035" in bad.output


def test_render_rejects_a_target_that_is_not_a_beam_object():
    result = invoke("render", f"{APP}:CUSTOM_IMAGE")
    assert result.exit_code == 2 and "not a decorated Beam object" in result.output
    missing = invoke("render", "tests/apps/no_such_app.py")
    assert missing.exit_code == 2


def test_requests_no_instance_can_hold_are_refused():
    too_big = k8s.AppRequest("app:big", "function", ResourceSpec(cpu=8, memory_mib=1024, gpu=("H100",), gpu_count=16))
    with pytest.raises(k8s.ManifestError, match="no H100 instance fits app:big"):
        k8s.plan_groups([too_big])


def test_one_group_cannot_run_two_images():
    a = k8s.AppRequest("app:a", "function", ResourceSpec(gpu=("A10G",), gpu_count=1), base_image="x:1")
    b = k8s.AppRequest("app:b", "endpoint", ResourceSpec(gpu=("A10G",), gpu_count=1), base_image="y:1")
    with pytest.raises(k8s.ManifestError, match="several images"):
        k8s.plan_groups([a, b])


def test_any_gpu_alone_needs_a_type():
    alone = k8s.AppRequest("app:any", "function", ResourceSpec(gpu=("any",), gpu_count=1))
    with pytest.raises(k8s.ManifestError, match="--gpus"):
        k8s.plan_groups([alone])
    plans, _ = k8s.plan_groups([alone], extra_gpus=["T4"])
    assert [p.name for p in plans] == ["cpu", "t4"] and plans[1].handlers == ["app:any"]


def test_every_beam_gpu_type_maps_to_a_ray_resource_and_back():
    from beamray.gpus import beam_gpu_type, gpu_resource

    for gpu in GpuType:
        if gpu.value not in ("", "any"):
            assert beam_gpu_type(gpu_resource(gpu.value)) == gpu.value, gpu


def test_compiler_imports_no_ray():
    code = "import sys, beamray.k8s, beamray.cli.k8s; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --------------------------------------------------------------------------- validate


def test_validate_defaults_to_base_and_every_overlay(validator):
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    for target in ("base", "overlays/cpu-only", "overlays/eks-gpu", "overlays/onprem-rtx4090"):
        assert f"k8s/kuberay/{target} (rendered)" in result.output
    assert "=> All valid (4 inputs)" in result.output


def test_validate_exits_1_listing_the_broken_document(validator, tmp_path):
    docs, _ = render(f"{APP}:rtx4090_queue")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    groups(docs)["rtx4090"]["rayStartParams"]["resources"] = '{"RTX4090": 1}'  # not shell-quoted
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = invoke("validate", str(good), str(broken), "k8s/kuberay/overlays/cpu-only")
    assert result.exit_code == 1, result.output
    assert "shell-quoted JSON object" in result.output
    summary = result.output.split("=> 1 invalid:")[1]
    assert f"{broken}: doc 1 RayCluster/beamray" in summary and str(good) not in summary


def test_validate_without_the_shared_validator_says_where_it_looked(tmp_path):
    result = invoke("validate", "--schemas", str(tmp_path))
    assert result.exit_code == 1
    assert f"KubeRay validator not found at {tmp_path / 'validate.py'}" in result.output
