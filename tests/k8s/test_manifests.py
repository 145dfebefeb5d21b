"""Static checks of k8s/kuberay (no cluster, no Ray, no kustomize binary).

Every overlay is rendered with k8s/kuberay/render.py and must pass the offline KubeRay v1.7
validator in shared/kuberay-schemas/validate.py; deliberately broken copies must be rejected; and
the beamray rules hold (head schedules nothing, GPU groups scale from zero, RTX4090 is advertised
as a custom Ray resource, durable control plane on the bundled Redis, token auth everywhere).
"""
import copy
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "k8s" / "kuberay"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"  # shared/ lives beside the repo root
VALIDATE_PY = SHARED / "kuberay-schemas" / "validate.py"

RAY_IMAGE = "rayproject/ray:2.60.0-py311"
RAY_GPU_IMAGE = "rayproject/ray:2.60.0-py311-gpu"
EXPECTED_GROUPS = {
    "base": ["cpu", "a10g", "h100", "rtx4090"],
    "overlays/eks-gpu": ["cpu", "a10g", "h100"],
    "overlays/cpu-only": ["cpu"],
    "overlays/onprem-rtx4090": ["cpu", "rtx4090"],
}
TARGETS = list(EXPECTED_GROUPS)
OVERLAYS = [t for t in TARGETS if t.startswith("overlays/")]
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_module("beamray_k8s_render", KUBERAY / "render.py")


@pytest.fixture(scope="module")
def validator():
    if not VALIDATE_PY.is_file():
        pytest.skip(f"KubeRay validator not found at {VALIDATE_PY}: shared/ must sit beside the repo root")
    return _load_module("kuberay_schemas_validate", VALIDATE_PY)


@pytest.fixture
def validate(validator, tmp_path, capsys):
    """Run validate.py on a list of documents; return (exit status, output, summary counts)."""
    def run(docs, name="manifest.yaml"):
        path = tmp_path / name
        path.write_text(render.dump(docs), encoding="utf-8")
        capsys.readouterr()
        rc = validator.main([str(path)])
        out = capsys.readouterr().out
        m = re.search(r"(\d+) documents: (\d+) valid, (\d+) invalid, (\d+) unchecked", out)
        assert m, out
        return rc, out, dict(zip(("total", "valid", "invalid", "unchecked"), map(int, m.groups())))
    return run


def rendered(target):
    return render.render(KUBERAY / target)


def only(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def raycluster(target):
    return only(rendered(target), "RayCluster", "beamray")


def groups(rc):
    return {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}


def ray_container(group_spec):
    return group_spec["template"]["spec"]["containers"][0]


def gpu_limit(group_spec):
    return ray_container(group_spec).get("resources", {}).get("limits", {}).get("nvidia.com/gpu")


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def bash_custom_resources(value):
    """What `ray start --resources=<value>` receives after bash unquotes it."""
    words = shlex.split(value)
    assert len(words) == 1, f"{value!r} splits into {len(words)} shell words"
    return json.loads(words[0])


def autoscaler_custom_resources(value):
    """How the Ray autoscaler reads rayStartParams.resources from the CR
    (ray/autoscaler/_private/kuberay/autoscaling_config.py, _get_custom_resources)."""
    return json.loads(value[1:-1].replace("\\", ""))


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("target", TARGETS)
def test_overlay_renders_expected_worker_groups(target):
    assert [g["groupName"] for g in raycluster(target)["spec"]["workerGroupSpecs"]] == EXPECTED_GROUPS[target]


def test_onprem_overlay_drops_alb_ingress_and_aws_overlays_keep_it():
    assert not [d for d in rendered("overlays/onprem-rtx4090") if d["kind"] == "Ingress"]
    for target in ("overlays/eks-gpu", "overlays/cpu-only"):
        only(rendered(target), "Ingress", "beamray-gateway")


def test_renderer_fails_when_base_group_order_changes(tmp_path):
    tree = tmp_path / "kuberay"
    shutil.copytree(KUBERAY, tree)
    rc_file = tree / "base" / "raycluster.yaml"
    docs = list(yaml.safe_load_all(rc_file.read_text()))
    wgs = docs[0]["spec"]["workerGroupSpecs"]
    wgs[2], wgs[3] = wgs[3], wgs[2]
    rc_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    with pytest.raises(render.RenderError, match="test failed"):
        render.render(tree / "overlays" / "eks-gpu")


def test_renderer_refuses_kustomize_features_it_does_not_implement(tmp_path):
    tree = tmp_path / "kuberay"
    shutil.copytree(KUBERAY, tree)
    kfile = tree / "overlays" / "cpu-only" / "kustomization.yaml"
    kfile.write_text(kfile.read_text() + "namePrefix: dev-\n")
    with pytest.raises(render.RenderError, match="unsupported kustomization fields"):
        render.render(tree / "overlays" / "cpu-only")


def test_renderer_does_not_share_yaml_anchors_between_groups():
    rc = raycluster("base")
    g = groups(rc)
    ray_container(g["cpu"])["env"].append({"name": "X", "value": "1"})
    assert "X" not in env_of(ray_container(g["a10g"]))
    assert "&id" not in render.dump([rc]) and "*id" not in render.dump([rc])


@pytest.mark.parametrize("target", OVERLAYS)
def test_renderer_matches_kustomize_when_available(target):
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(KUBERAY / target)]
    elif shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True).stdout
        embedded = (json.loads(out or "{}").get("kustomizeVersion") or "v0").lstrip("v").split(".")[0]
        if not embedded.isdigit() or int(embedded) < 4:
            pytest.skip(f"kubectl embeds kustomize {embedded!r}; `patches:` needs kustomize >= 4")
        cmd = ["kubectl", "kustomize", str(KUBERAY / target)]
    else:
        pytest.skip("neither kustomize nor kubectl on PATH; render.py is the only renderer here")
    theirs = [d for d in yaml.safe_load_all(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) if d]
    mine = rendered(target)
    assert {render.resource_id(d): d for d in mine} == {render.resource_id(d): d for d in theirs}


# --------------------------------------------------------------------------- validator


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_pass_kuberay_validator(target, validate):
    rc, out, counts = validate(rendered(target))
    assert rc == 0, out
    assert counts["invalid"] == 0 and counts["valid"] == 1, out  # the RayCluster was schema-checked


def test_repository_tree_passes_kuberay_validator(validator, capsys):
    """Raw files too: base RayCluster, eksctl config, example Secrets, kustomizations."""
    rc = validator.main([str(KUBERAY), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "0 invalid" in out


def _cpu_as_float(docs):
    ray_container(groups(only(docs, "RayCluster"))["cpu"])["resources"]["limits"]["cpu"] = 1.5


def _ft_annotation_with_options(docs):
    only(docs, "RayCluster")["metadata"].setdefault("annotations", {})["ray.io/ft-enabled"] = "true"


def _sixty_char_name(docs):
    only(docs, "RayCluster")["metadata"]["name"] = "beamray-" + "x" * 52


def _unquoted_custom_resource(docs):
    groups(only(docs, "RayCluster"))["rtx4090"]["rayStartParams"]["resources"] = '{"RTX4090": 1}'


def _group_resources_mixed_with_start_params(docs):
    groups(only(docs, "RayCluster"))["rtx4090"]["resources"] = {"RTX4090": "1"}


def _numeric_start_param(docs):
    only(docs, "RayCluster")["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0


def _redis_address_env_with_options(docs):
    head = only(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"].append({"name": "RAY_REDIS_ADDRESS", "value": "beamray-redis:6379"})


def _gpu_request_differs_from_limit(docs):
    ray_container(groups(only(docs, "RayCluster"))["a10g"])["resources"]["requests"]["nvidia.com/gpu"] = "2"


@pytest.mark.parametrize("breakage, message", [
    (_cpu_as_float, "must be an integer or a string"),
    (_ft_annotation_with_options, "ray.io/ft-enabled annotation and gcsFaultToleranceOptions are both set"),
    (_sixty_char_name, "longer than 53 characters"),
    (_unquoted_custom_resource, "shell-quoted JSON object"),
    (_group_resources_mixed_with_start_params, "set in both rayStartParams and resources"),
    (_numeric_start_param, "is not of type 'string'"),
    (_redis_address_env_with_options, "RAY_REDIS_ADDRESS"),
    (_gpu_request_differs_from_limit, "requests must equal limits"),
])
def test_validator_rejects_broken_copy(breakage, message, validate):
    docs = copy.deepcopy(rendered("base"))
    breakage(docs)
    rc, out, counts = validate(docs)
    assert rc == 1, out
    assert counts["invalid"] == 1, out
    assert message in out, out


# --------------------------------------------------------------------------- beamray rules


@pytest.mark.parametrize("target", TARGETS)
def test_head_schedules_no_work_and_exposes_gateway_and_dashboard(target):
    head = raycluster(target)["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    c = head["template"]["spec"]["containers"][0]
    assert c["image"] == RAY_IMAGE
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["serve"] == 8000 and ports["dashboard"] == 8265
    assert ports["client"] == 10001 and ports["gcs-server"] == 6379


@pytest.mark.parametrize("target", TARGETS)
def test_gpu_groups_scale_to_zero_and_tolerate_gpu_taint(target):
    rc = raycluster(target)
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert rc["spec"]["autoscalerOptions"]["version"] == "v2"
    gpu_groups = {n for n, g in groups(rc).items() if gpu_limit(g)}
    assert gpu_groups == set(EXPECTED_GROUPS[target]) - {"cpu"}
    for name, g in groups(rc).items():
        c = ray_container(g)
        if name not in gpu_groups:
            assert c["image"] == RAY_IMAGE
            continue
        assert g["minReplicas"] == 0 and g.get("replicas", 0) == 0, name
        assert g["maxReplicas"] >= 1, name
        assert c["image"] == RAY_GPU_IMAGE, name
        tolerations = g["template"]["spec"]["tolerations"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations, name
        assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"]


@pytest.mark.parametrize("target", ["base", "overlays/onprem-rtx4090"])
def test_rtx4090_group_advertises_RTX4090_resource_per_gpu(target):
    g = groups(raycluster(target))["rtx4090"]
    n_gpus = int(gpu_limit(g))
    assert n_gpus >= 1
    value = g["rayStartParams"]["resources"]
    assert bash_custom_resources(value) == {"RTX4090": n_gpus}
    assert autoscaler_custom_resources(value) == {"RTX4090": n_gpus}
    assert not g.get("resources"), "operator rejects group resources together with rayStartParams.resources"
    assert "num-gpus" not in g["rayStartParams"]  # KubeRay derives it from the nvidia.com/gpu limit
    assert g["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"}


@pytest.mark.parametrize("group, accel, instance, n_gpus", [
    ("a10g", "A10G", "g5.2xlarge", 1),
    ("h100", "H100", "p5.48xlarge", 8),
])
def test_aws_gpu_groups_declare_autodetected_accelerator_type(group, accel, instance, n_gpus):
    g = groups(raycluster("overlays/eks-gpu"))[group]
    value = g["rayStartParams"]["resources"]
    assert bash_custom_resources(value) == {f"accelerator_type:{accel}": 1}
    assert autoscaler_custom_resources(value) == {f"accelerator_type:{accel}": 1}
    assert g["template"]["spec"]["nodeSelector"] == {"node.kubernetes.io/instance-type": instance}
    assert int(gpu_limit(g)) == n_gpus


def test_h100_group_mounts_memory_backed_dev_shm():
    g = groups(raycluster("overlays/eks-gpu"))["h100"]
    vols = {v["name"]: v for v in g["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in ray_container(g)["volumeMounts"]}
    assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("target", TARGETS)
def test_every_ray_container_has_token_auth_and_beamray_env(target):
    rc = raycluster(target)
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": "beamray-auth"}
    assert rc["spec"]["rayVersion"] == "2.60.0"
    containers = [rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [ray_container(g) for g in rc["spec"]["workerGroupSpecs"]]
    for c in containers:
        env = env_of(c)
        names = [e["name"] for e in c["env"]]
        assert env["RAY_AUTH_MODE"]["value"] == "token", c["name"]
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "beamray-auth", "key": "auth_token"}
        assert env["BEAMRAY_HTTP_PORT"]["value"] == "8000"
        url = env["BEAMRAY_REDIS_URL"]["value"]
        parsed = urlparse(url)
        assert (parsed.scheme, parsed.hostname, parsed.port, parsed.path) == ("redis", "beamray-redis", 6379, "/1"), url
        # $(VAR) is only expanded by Kubernetes when VAR is defined earlier in the list.
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", url):
            assert names.index(var) < names.index("BEAMRAY_REDIS_URL"), var
        assert env["BEAMRAY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "beamray-redis", "key": "password"}
        assert not {"REDIS_PASSWORD", "RAY_REDIS_ADDRESS", "RAY_enable_autoscaler_v2"} & set(env), c["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_gcs_fault_tolerance_uses_options_api_and_bundled_redis(target):
    docs = rendered(target)
    rc = only(docs, "RayCluster", "beamray")
    assert "ray.io/ft-enabled" not in rc["metadata"].get("annotations", {})
    ft = rc["spec"]["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] == "beamray-redis:6379"
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"] == {"name": "beamray-redis", "key": "password"}
    svc = only(docs, "Service", "beamray-redis")
    assert [p["port"] for p in svc["spec"]["ports"]] == [6379]
    dep = only(docs, "Deployment", "beamray-redis")
    assert svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"]
    pod = dep["spec"]["template"]["spec"]
    redis = pod["containers"][0]
    assert redis["args"][redis["args"].index("--appendonly") + 1] == "yes"
    assert redis["args"][redis["args"].index("--maxmemory-policy") + 1] == "noeviction"
    assert env_of(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "beamray-redis", "key": "password"}
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    only(docs, "PersistentVolumeClaim", claim)


def _quantity_maps(obj, path="$"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("requests", "limits") and isinstance(v, dict):
                yield f"{path}.{k}", v
            else:
                yield from _quantity_maps(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _quantity_maps(v, f"{path}[{i}]")


@pytest.mark.parametrize("target", TARGETS)
def test_quantities_are_strings_and_names_are_dns1035(target):
    docs = rendered(target)
    found = 0
    for d in docs:
        name = d["metadata"]["name"]
        assert DNS1035.match(name) and len(name) <= 53, name
        for where, quantities in _quantity_maps(d):
            found += 1
            for k, q in quantities.items():
                assert isinstance(q, str), f"{d['kind']}/{name} {where}.{k} = {q!r} is not a string"
    assert found >= 4
    for g in raycluster(target)["spec"]["workerGroupSpecs"]:
        assert DNS1035.match(g["groupName"]), g["groupName"]


def test_gateway_service_targets_head_and_alb_ingress_targets_gateway():
    docs = rendered("overlays/eks-gpu")
    svc = only(docs, "Service", "beamray-gateway")
    assert svc["spec"]["selector"] == {"ray.io/cluster": "beamray", "ray.io/node-type": "head"}
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8000, "dashboard": 8265}
    ing = only(docs, "Ingress", "beamray-gateway")
    assert ing["spec"]["ingressClassName"] == "alb"
    ann = ing["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert ann["alb.ingress.kubernetes.io/scheme"] in ("internal", "internet-facing")
    paths = {p["path"]: p for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/"]["backend"]["service"] == {"name": "beamray-gateway", "port": {"number": 8000}}


@pytest.mark.parametrize("target", ["overlays/eks-gpu", "overlays/cpu-only"])
def test_the_alb_answers_serves_own_endpoints_itself(target):
    """``/-/routes`` lists every deployment to anyone: the ALB's first rule answers ``/-/…`` with a 404."""
    ing = only(rendered(target), "Ingress", "beamray-gateway")
    first = ing["spec"]["rules"][0]["http"]["paths"][0]
    assert (first["path"], first["pathType"]) == ("/-/", "Prefix")
    assert first["backend"]["service"] == {"name": "serve-internals", "port": {"name": "use-annotation"}}
    action = json.loads(ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.serve-internals"])
    assert action["type"] == "fixed-response" and action["fixedResponseConfig"]["statusCode"] == "404"


@pytest.mark.parametrize("target", OVERLAYS)
def test_ray_ports_and_redis_admit_only_the_clusters_pods_but_the_gateway(target):
    docs = rendered(target)
    ray = only(docs, "NetworkPolicy", "beamray-ray")["spec"]
    head = raycluster(target)["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert ray["podSelector"]["matchLabels"] == {"ray.io/cluster": "beamray"} and ray["policyTypes"] == ["Ingress"]
    open_to_all = [rule for rule in ray["ingress"] if "from" not in rule]
    assert [[port["port"] for port in rule["ports"]] for rule in open_to_all] == [[8000]]
    assert {"podSelector": {"matchLabels": {"ray.io/cluster": "beamray"}}} in ray["ingress"][0]["from"]
    redis = only(docs, "NetworkPolicy", "beamray-redis")["spec"]
    redis_pod = only(docs, "Deployment", "beamray-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis["podSelector"]["matchLabels"].items() <= redis_pod.items()
    [rule] = redis["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"ray.io/cluster": "beamray"}}}]
    assert [port["port"] for port in rule["ports"]] == [6379]
    assert head["app.kubernetes.io/name"] == "beamray"  # KubeRay adds ray.io/cluster to every Ray Pod itself


def test_secrets_are_examples_only_with_placeholders_and_operator_key():
    docs = list(yaml.safe_load_all((KUBERAY / "examples" / "secrets.example.yaml").read_text()))
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs}
    assert set(secrets) == {"beamray-auth", "beamray-redis"}
    assert set(secrets["beamray-auth"]) == {"auth_token"}  # KubeRay's RAY_AUTH_TOKEN_SECRET_KEY
    assert set(secrets["beamray-redis"]) == {"password"}
    assert all("REPLACE-ME" in v for s in secrets.values() for v in s.values())
    for target in TARGETS:  # never applied by `kubectl apply -k`, so real secrets are not overwritten
        assert not [d for d in rendered(target) if d["kind"] == "Secret"], target


def test_eksctl_gpu_node_groups_scale_from_zero_and_match_worker_selectors():
    cfg = yaml.safe_load((KUBERAY / "eks" / "cluster.yaml").read_text())
    assert (cfg["apiVersion"], cfg["kind"]) == ("eksctl.io/v1alpha5", "ClusterConfig")
    ngs = {ng["name"]: ng for ng in cfg["managedNodeGroups"]}
    gpu_ngs = {n: ng for n, ng in ngs.items() if ng.get("taints")}
    assert set(gpu_ngs) == {"gpu-a10g", "gpu-h100"}
    for name, ng in gpu_ngs.items():
        assert ng["minSize"] == 0 and ng["desiredCapacity"] == 0 and ng["maxSize"] >= 1, name
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in ng["taints"], name
    assert not ngs["system"].get("taints") and ngs["system"]["minSize"] >= 1
    selected = {g["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]
                for g in groups(raycluster("overlays/eks-gpu")).values()
                if "node.kubernetes.io/instance-type" in g["template"]["spec"].get("nodeSelector", {})}
    assert selected == {ng["instanceType"] for ng in gpu_ngs.values()} == {"g5.2xlarge", "p5.48xlarge"}


def test_readme_walkthrough_names_the_real_paths():
    text = (KUBERAY / "README.md").read_text()
    for needle in ("kubectl apply -k k8s/kuberay/overlays/eks-gpu", "helm install", "8265",
                   "BEAMRAY_ADDRESS", "RAY_AUTH_TOKEN", "beamray deploy app.py:handler",
                   "python k8s/kuberay/render.py", "RTX4090", "accelerator_type"):
        assert needle in text, needle
    for target in OVERLAYS:
        assert (KUBERAY / target / "kustomization.yaml").is_file()
