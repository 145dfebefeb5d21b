"""Beam's argument parsing (``beamray.adapters.parsing``) against ``shared/spec/beam-api.md`` §1.

Every SDK message is matched verbatim and anchored (``^…$``), so a reworded message fails.
Pure functions: no Ray here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from beamray.adapters import parsing
from beamray.adapters.types import Autoscaler, GpuType, QueueDepthAutoscaler, TaskPolicy

CPU_CORES_RANGE = "CPU value out of range. Must be between 0.1 and 64 cores."
CPU_MILLI_RANGE = "CPU value out of range. Must be between 100m and 64000m."
CPU_FORMAT = "Invalid CPU string format. Must be a digit followed by 'm' (e.g., '1000m')."
CPU_TYPE = "CPU must be a float or a string."
MEMORY_FORMAT = "Unsupported memory format"
MEMORY_ZERO = "memory must be greater than 0"
GPU_INVALID = "Invalid GPU type"


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


# --- cpu -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "millicores"),
    [(1, 1000), (2, 2000), (64, 64000), (0.1, 100), (0.125, 125), (0.5, 500), (1.5, 1500), (63.999, 63999)],
)
def test_cpu_cores_become_millicores(cpu, millicores):
    assert parsing.parse_cpu(cpu) == millicores


def test_cpu_cores_are_truncated_not_rounded_like_the_sdk():
    # int(cpu * 1000): 1.001 * 1000 == 1000.9999999999999
    assert parsing.parse_cpu(1.001) == 1000


def test_cpu_bool_counts_as_an_int():
    assert parsing.parse_cpu(True) == 1000
    with pytest.raises(ValueError, match=exactly(CPU_CORES_RANGE)):
        parsing.parse_cpu(False)


@pytest.mark.parametrize("cpu", [0, 0.09, 0.0999, 64.001, 65, 100, -1, float("inf"), float("nan")])
def test_cpu_cores_outside_0_1_and_64_raise_beam_message(cpu):
    with pytest.raises(ValueError, match=exactly(CPU_CORES_RANGE)):
        parsing.parse_cpu(cpu)


@pytest.mark.parametrize(("cpu", "millicores"), [("100m", 100), ("125m", 125), ("1000m", 1000), ("64000m", 64000)])
def test_cpu_millicore_strings_are_kept(cpu, millicores):
    assert parsing.parse_cpu(cpu) == millicores


@pytest.mark.parametrize("cpu", ["0m", "99m", "64001m", "100000m", "9" * 5000 + "m"],
                         ids=["0m", "99m", "64001m", "100000m", "5000-digits"])
def test_cpu_millicores_outside_100m_and_64000m_raise_beam_message(cpu):
    with pytest.raises(ValueError, match=exactly(CPU_MILLI_RANGE)):
        parsing.parse_cpu(cpu)


@pytest.mark.parametrize("cpu", ["1", "0.5", "1.5m", "m", "", "1000 m", " 1000m", "1000M", "-100m", "100m\n", "1c"])
def test_cpu_string_without_m_suffix_raises_beam_message(cpu):
    with pytest.raises(ValueError, match=exactly(CPU_FORMAT)):
        parsing.parse_cpu(cpu)


@pytest.mark.parametrize("cpu", [None, [1], {"cpu": 1}, b"100m", 1j])
def test_cpu_of_another_type_raises_type_error(cpu):
    with pytest.raises(TypeError, match=exactly(CPU_TYPE)):
        parsing.parse_cpu(cpu)


# --- memory ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory", "mib"),
    [
        ("2Gi", 2048), ("2G", 2000), ("2GB", 2000), ("512Mi", 512), ("512M", 512), ("512", 512),
        ("1.5Gi", 1536), ("0.1Mi", 1), (" 1Gi ", 1024), ("2gib", 2048), ("2MiB", 2), ("2mb", 2),
        ("1.5G", 1500), ("0.001G", 1), ("128", 128),
    ],
)
def test_memory_string_becomes_mib(memory, mib):
    assert parsing.parse_memory(memory) == mib


def test_memory_decimal_g_differs_from_binary_gi():
    assert parsing.parse_memory("4G") == 4000
    assert parsing.parse_memory("4Gi") == 4096


@pytest.mark.parametrize("memory", [128, 0, 1.5, None, True])
def test_memory_non_string_passes_through_unvalidated(memory):
    assert parsing.parse_memory(memory) is memory


@pytest.mark.parametrize("memory", [-5, -0.5, float("nan"), float("inf"), float("-inf")])
def test_memory_number_no_container_can_have_raises_value_error(memory):
    # The SDK passes these through; here they would fail later, far from the decorator, or not at all.
    with pytest.raises(ValueError, match="memory must be a non-negative number of MiB"):
        parsing.parse_memory(memory)


@pytest.mark.parametrize("memory", ["9" * 400, "9" * 400 + "Gi", "1" + "0" * 5000], ids=["400-nines", "Gi", "1e5000"])
def test_memory_string_too_large_for_a_float_raises_value_error_not_overflow(memory):
    with pytest.raises(ValueError, match="memory is too large"):
        parsing.parse_memory(memory)


@pytest.mark.parametrize("memory", ["1 Gi", "1Ti", "1Ki", "1e3", "", "   ", "Gi", "-1Gi", "1.Gi", ".5Gi", "1Gi2"])
def test_memory_unknown_format_raises_beam_message(memory):
    with pytest.raises(ValueError, match=exactly(MEMORY_FORMAT)):
        parsing.parse_memory(memory)


@pytest.mark.parametrize("memory", ["0Mi", "0", "0G", "0.0Gi"])
def test_memory_zero_string_raises_greater_than_zero(memory):
    with pytest.raises(ValueError, match=exactly(MEMORY_ZERO)):
        parsing.parse_memory(memory)


# --- gpu -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("t4", "T4"), ("Tesla T4", "T4"), ("RTX 4090", "RTX4090"), ("nvidia-h100-80gb", "H100"),
        ("a100_40gb", "A100-40"), ("A100 80GB", "A100-80"), ("nvidia-a100-sxm4-80gb", "A100-80"),
        ("NVIDIA GeForce RTX 4090", "RTX4090"), ("Quadro RTX 6000", "RTX6000"), ("rtx 6000 ada", "RTX6000Ada"),
        ("rtx pro 6000", "RTXPro6000"), ("l40s", "L40S"), ("v100-32gb", "V100-32"), ("a10g", "A10G"),
        ("gh200", "GH200"), ("", ""), ("0", ""), ("any", "any"), ("ANY", "any"),
    ],
)
def test_normalize_gpu_type_examples(name, normalized):
    assert parsing.normalize_gpu_type(name) == normalized


@pytest.mark.parametrize("gpu", list(GpuType), ids=lambda gpu: gpu.name)
def test_every_gpu_type_value_normalizes_to_itself(gpu):
    assert parsing.normalize_gpu_type(gpu.value) == gpu.value


@pytest.mark.parametrize(
    ("gpu", "parsed"),
    [
        ("T4", ("T4",)), ("a10g", ("A10G",)), (GpuType.H100, ("H100",)), ("any", ("any",)),
        ("", ()), (GpuType.NoGPU, ()), ([], ()),
        (["T4", "A10G"], ("T4", "A10G")), (["A10G", "T4"], ("A10G", "T4")),
        (["rtx 4090", GpuType.A100_80, "h100"], ("RTX4090", "A100-80", "H100")),
    ],
)
def test_parse_gpu_keeps_priority_order(gpu, parsed):
    assert parsing.parse_gpu(gpu) == parsed


def test_parse_gpu_unknown_name_raises_invalid_gpu_type():
    with pytest.raises(ValueError, match=re.escape("Invalid GPU type: FOO")) as info:
        parsing.parse_gpu("FOO")
    assert "'FOO' is not a valid GpuType" in str(info.value)


def test_parse_gpu_unknown_name_in_a_list_raises_invalid_gpu_type():
    with pytest.raises(ValueError, match=re.escape("Invalid GPU type: xyz")) as info:
        parsing.parse_gpu(["T4", "xyz"])
    assert "'XYZ' is not a valid GpuType" in str(info.value)


@pytest.mark.parametrize("gpu", [None, 1, 1.0, {"T4": 1}, ("T4",), {"T4"}])
def test_parse_gpu_non_str_non_list_raises_invalid_gpu_type(gpu):
    with pytest.raises(ValueError, match=exactly(GPU_INVALID)):
        parsing.parse_gpu(gpu)


@pytest.mark.parametrize("gpu", [[1], ["T4", None]])
def test_parse_gpu_non_str_list_item_raises_invalid_gpu_type(gpu):
    with pytest.raises(ValueError, match=re.escape(GPU_INVALID)):
        parsing.parse_gpu(gpu)


@pytest.mark.parametrize(
    ("gpu", "gpu_count", "resolved"),
    [
        ("T4", 0, 1), (GpuType.A10G, 0, 1), (["T4", "A10G"], 0, 1),
        (None, 0, 1), ([], 0, 1),  # SDK quirk: `gpu != ""` is true for both
        ("", 0, 0), (GpuType.NoGPU, 0, 0),
        ("T4", 4, 4), ("", 2, 2), (["H100"], 8, 8),
    ],
)
def test_resolve_gpu_count_follows_sdk_quirks(gpu, gpu_count, resolved):
    assert parsing.resolve_gpu_count(gpu, gpu_count) == resolved


@pytest.mark.parametrize("gpu_count", [-1, True, 1.0, "1"])
def test_resolve_gpu_count_rejects_non_counts(gpu_count):
    with pytest.raises(ValueError, match="gpu_count must be a non-negative integer"):
        parsing.resolve_gpu_count("T4", gpu_count)


# --- env -------------------------------------------------------------------------------------------


def test_parse_env_dict_becomes_ordered_pairs():
    assert parsing.parse_env({"A": "1", "B": "two"}) == (("A", "1"), ("B", "two"))


def test_parse_env_allows_several_equals_in_a_value():
    assert parsing.parse_env({"URL": "a=b=c"}) == (("URL", "a=b=c"),)


def test_parse_env_stringifies_values_like_the_sdk_k_equals_v():
    assert parsing.parse_env({"N": 3}) == (("N", "3"),)


@pytest.mark.parametrize("env", [None, {}])
def test_parse_env_empty(env):
    assert parsing.parse_env(env) == ()


@pytest.mark.parametrize(
    "value",
    [
        "${{ secret.API_KEY }}", "${{secret.API_KEY}}", "${{ secret.my-key }}", "${{ randomInt(1, 100) }}",
        "${{ randomInt(-5,5) }}", '${{ secret(16, "abc") }}', "${{ secret(32) }}", "${{ app.my-app.URL }}",
        "${{ app.api.TCP }}", "${{ app.api.HOST }}", "${{ app.api.PORT.8080 }}", "${{ db.main.PASSWORD }}",
        "https://${{ app.web.HOST }}:${{ app.web.PORT.443 }}/x", "no reference at all",
    ],
)
def test_parse_env_accepts_beam_reference_grammar(value):
    assert parsing.parse_env({"K": value}) == (("K", value),)


@pytest.mark.parametrize(
    "value",
    [
        "${{ secret }}", "${{ secret. }}", "${{ foo.bar }}", "${{ app.web.FOO }}", "${{ app.web }}",
        "${{ app.web.PORT.http }}", "${{ randomInt(1) }}", "${{ secret(abc) }}", "${{ db.main }}",
        "${{ }}", "ok ${{ secret.A }} then ${{ nope }}",
    ],
)
def test_parse_env_bad_reference_is_invalid_config(value):
    with pytest.raises(ValueError, match="INVALID_CONFIG"):
        parsing.parse_env({"K": value})


@pytest.mark.parametrize("env", [["A=1"], "A=1", (("A", "1"),)])
def test_parse_env_non_dict_raises_type_error(env):
    with pytest.raises(TypeError, match="env must be a dict"):
        parsing.parse_env(env)


@pytest.mark.parametrize("key", ["", 1])
def test_parse_env_key_must_be_a_non_empty_string(key):
    with pytest.raises(ValueError, match="Environment variable key must be a non-empty string"):
        parsing.parse_env({key: "v"})


# --- secrets ---------------------------------------------------------------------------------------


def test_parse_secrets_keeps_names_in_order():
    assert parsing.parse_secrets(["B", "A"]) == ("B", "A")
    assert parsing.parse_secrets(None) == ()


@pytest.mark.parametrize("secrets", ["A", [""], [1]])
def test_parse_secrets_rejects_non_name_lists(secrets):
    with pytest.raises(TypeError, match="secrets must be a list of secret names"):
        parsing.parse_secrets(secrets)


# --- task_policy / retries / timeout ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "retries", "timeout", "expected"),
    [
        (None, 3, 3600, (3, 3600, 0)),
        (TaskPolicy(), 3, 3600, (3, 3600, 0)),
        (TaskPolicy(), 1, 60, (1, 60, 0)),  # zero fields keep the plain kwargs
        (TaskPolicy(max_retries=5), 3, 3600, (5, 3600, 0)),
        (TaskPolicy(timeout=10), 3, 3600, (3, 10, 0)),
        (TaskPolicy(max_retries=2, timeout=-1, ttl=600), 3, 3600, (2, -1, 600)),
        (TaskPolicy(ttl=1), 0, 5, (0, 5, 1)),
    ],
)
def test_task_policy_non_zero_fields_override_plain_kwargs(policy, retries, timeout, expected):
    assert parsing.apply_task_policy(policy, retries, timeout) == expected


@pytest.mark.parametrize("ttl", [1, 60, 86399])
def test_task_policy_ttl_inside_bounds(ttl):
    assert parsing.apply_task_policy(TaskPolicy(ttl=ttl), 3, 3600)[2] == ttl


@pytest.mark.parametrize("ttl", [86400, 100000, -1])
def test_task_policy_ttl_outside_0_and_86400_raises(ttl):
    with pytest.raises(ValueError, match=re.escape("task_policy.ttl must be between 0 and 86400 seconds")):
        parsing.apply_task_policy(TaskPolicy(ttl=ttl), 3, 3600)


def test_task_policy_must_be_a_task_policy():
    with pytest.raises(TypeError, match="task_policy must be a TaskPolicy"):
        parsing.apply_task_policy({"max_retries": 1}, 3, 3600)


@pytest.mark.parametrize(("retries", "expected"), [(0, 0), (3, 3), (10, 10)])
def test_parse_retries(retries, expected):
    assert parsing.parse_retries(retries) == expected


@pytest.mark.parametrize("retries", [-1, True, "3", 1.0])
def test_parse_retries_rejects_non_counts(retries):
    with pytest.raises(ValueError, match="retries must be a non-negative integer"):
        parsing.parse_retries(retries)


def test_timeout_minus_one_means_no_timeout():
    assert parsing.parse_timeout(-1) is None


@pytest.mark.parametrize(("timeout", "seconds"), [(3600, 3600.0), (180, 180.0), (1.5, 1.5)])
def test_timeout_positive_is_seconds(timeout, seconds):
    assert parsing.parse_timeout(timeout) == seconds


@pytest.mark.parametrize("timeout", ["10", None, True])
def test_timeout_non_number_raises_type_error(timeout):
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        parsing.parse_timeout(timeout)


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 1e10, 2**31])
def test_timeout_nan_infinite_or_beyond_a_timer_raises_value_error(timeout):
    with pytest.raises(ValueError, match="timeout must be at most 2147483647 seconds"):
        parsing.parse_timeout(timeout)


def test_timeout_nan_in_a_task_policy_is_refused_too():
    _retries, timeout, _ttl = parsing.apply_task_policy(TaskPolicy(timeout=float("nan")), 0, 60)
    with pytest.raises(ValueError, match="timeout must be at most"):
        parsing.parse_timeout(timeout)


# --- autoscaler ------------------------------------------------------------------------------------


def test_autoscaler_default_is_queue_depth():
    assert parsing.parse_autoscaler(None) == QueueDepthAutoscaler(max_containers=1, tasks_per_container=1,
                                                                 min_containers=0)


def test_autoscaler_queue_depth_is_kept():
    autoscaler = QueueDepthAutoscaler(max_containers=5, tasks_per_container=2, min_containers=1)
    assert parsing.parse_autoscaler(autoscaler) == autoscaler


@dataclass
class MyAutoscaler(QueueDepthAutoscaler):
    pass


@pytest.mark.parametrize(
    ("autoscaler", "class_name"),
    [("queue", "str"), ({"max_containers": 2}, "dict"), (Autoscaler(), "Autoscaler"), (MyAutoscaler(), "MyAutoscaler")],
)
def test_autoscaler_other_class_raises_invalid_autoscaler_class(autoscaler, class_name):
    with pytest.raises(ValueError, match=exactly(f"Invalid Autoscaler class: {class_name}")):
        parsing.parse_autoscaler(autoscaler)


@pytest.mark.parametrize(
    "autoscaler",
    [QueueDepthAutoscaler(max_containers=0), QueueDepthAutoscaler(min_containers=-1),
     QueueDepthAutoscaler(max_containers=1, min_containers=2)],
)
def test_autoscaler_inconsistent_bounds_raise(autoscaler):
    with pytest.raises(ValueError, match="autoscaler needs 0 <= min_containers <= max_containers"):
        parsing.parse_autoscaler(autoscaler)


@pytest.mark.parametrize("field", ["max_containers", "tasks_per_container", "min_containers"])
@pytest.mark.parametrize("value", [float("nan"), 2.5, True, "3"])
def test_autoscaler_fields_must_be_whole_numbers(field, value):
    autoscaler = QueueDepthAutoscaler(**{field: value})
    with pytest.raises(ValueError, match=f"autoscaler {field} must be a whole number"):
        parsing.parse_autoscaler(autoscaler)


def test_autoscaler_tasks_per_container_must_be_positive():
    with pytest.raises(ValueError, match="tasks_per_container must be >= 1"):
        parsing.parse_autoscaler(QueueDepthAutoscaler(tasks_per_container=0))


# --- retry_for -------------------------------------------------------------------------------------


class QuotaError(Exception):
    pass


@pytest.mark.parametrize(
    ("retry_for", "parsed"),
    [
        (None, ()), ([], ()), (ValueError, (ValueError,)), ([ValueError, QuotaError], (ValueError, QuotaError)),
        ((KeyError,), (KeyError,)), ([KeyboardInterrupt], (KeyboardInterrupt,)),
    ],
)
def test_parse_retry_for_lists_exception_classes(retry_for, parsed):
    assert parsing.parse_retry_for(retry_for) == parsed


@pytest.mark.parametrize("retry_for", ["ValueError", [ValueError, "x"], [int], [ValueError()]])
def test_parse_retry_for_rejects_non_exception_classes(retry_for):
    with pytest.raises(TypeError, match="retry_for must list exception classes"):
        parsing.parse_retry_for(retry_for)


# --- callback_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://example.com/cb", "https://hooks.example.com:8443/a?b=c"])
def test_callback_url_http_is_kept(url):
    assert parsing.parse_callback_url(url) == url


@pytest.mark.parametrize("url", [None, ""])
def test_callback_url_unset_becomes_empty_string_like_the_sdk(url):
    assert parsing.parse_callback_url(url) == ""


@pytest.mark.parametrize("url", ["example.com/cb", "ftp://example.com", "https://", "http:/x", 42])
def test_callback_url_must_be_http_url(url):
    with pytest.raises(ValueError, match="callback_url must be an http"):
        parsing.parse_callback_url(url)


# --- name ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "app", "my-app_2", "A", "9lives", "x" * 63])
def test_name_valid(name):
    assert parsing.parse_name(name) == name


@pytest.mark.parametrize("name", ["", "-app", "_app", "my app", "app.v1", "x" * 64, 5, "app/1"])
def test_name_invalid_raises(name):
    with pytest.raises(ValueError, match="name must be 1-63 letters, digits"):
        parsing.parse_name(name)


# --- schedules, serve timeouts, Queue / Map names --------------------------------------------------


@pytest.mark.parametrize("when", ["@hourly", " */5 * * * * ", "0 0 29 2 *"])
def test_schedule_valid(when):
    assert parsing.parse_schedule(when) == when.strip()


@pytest.mark.parametrize("when", ["every 1d", "61 * * * *", "0 0 30 2 *", "0 0 31 4 *", 5, None])
def test_schedule_invalid_raises(when):
    with pytest.raises(ValueError, match="Invalid schedule"):
        parsing.parse_schedule(when)


@pytest.mark.parametrize("timeout, seconds", [(0, 600.0), (-1, None), (45, 45.0)])
def test_serve_timeout(timeout, seconds):
    assert parsing.parse_serve_timeout(timeout) == seconds


@pytest.mark.parametrize("timeout", [-3, 1.5, "60", True])
def test_serve_timeout_invalid_raises(timeout):
    with pytest.raises(ValueError, match="timeout must be -1"):
        parsing.parse_serve_timeout(timeout)


@pytest.mark.parametrize("name", ["", None, 3])
def test_store_name_invalid_raises(name):
    with pytest.raises(ValueError, match="Queue name must be a non-empty string"):
        parsing.parse_store_name("Queue", name)
