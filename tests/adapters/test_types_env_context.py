"""Beam's value types, ``env`` module, ``FunctionContext`` and ``@function`` defaults, against the SDK.

Expected values come from ``shared/spec/beam-api-signatures.json`` (enum_values, dataclass_fields,
resolved_defaults) and ``beam-api.md`` §2–4. No Ray: decorators are constructed and inspected only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import beamray
from beamray import env as beam_env
from beamray.adapters.function import RemoteFunction
from beamray.adapters.types import (
    Autoscaler,
    GpuType,
    PythonVersion,
    QueueDepthAutoscaler,
    TaskExitCode,
    TaskPolicy,
    TaskStatus,
)
from beamray.context import FunctionContext, wants_context

REPO = Path(__file__).resolve().parents[2]
# shared/ sits inside the checkout or beside it
SPEC_CANDIDATES = [root / "shared" / "spec" / "beam-api-signatures.json" for root in (REPO, REPO.parent)]


@pytest.fixture(scope="module")
def spec() -> dict:
    for path in SPEC_CANDIDATES:
        if path.exists():
            return json.loads(path.read_text())
    pytest.skip(f"beam-api-signatures.json not found in {[str(path) for path in SPEC_CANDIDATES]}")


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A client process: not in a container, not importing user code."""
    monkeypatch.delenv("CONTAINER_ID", raising=False)
    monkeypatch.delenv("BETA9_IMPORTING_USER_CODE", raising=False)
    return monkeypatch


# --- enums -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("enum_cls", [GpuType, PythonVersion, TaskStatus], ids=lambda cls: cls.__name__)
def test_enum_members_equal_the_sdk(spec, enum_cls):
    assert {member.name: member.value for member in enum_cls} == spec[enum_cls.__name__]["enum_values"]


@pytest.mark.parametrize("enum_cls", [GpuType, PythonVersion, TaskStatus], ids=lambda cls: cls.__name__)
def test_enums_are_str_enums_that_compare_to_their_value(enum_cls):
    for member in enum_cls:
        assert isinstance(member, str)
        assert member == member.value
        assert str(member) == member.value


def test_task_status_is_complete_for_terminal_statuses():
    complete = {status for status in TaskStatus if status.is_complete()}
    assert complete == {TaskStatus.Complete, TaskStatus.Error, TaskStatus.Cancelled, TaskStatus.Timeout}


def test_task_exit_codes_equal_the_sdk():
    expected = {"SigTerm": -15, "SigKill": -9, "Success": 0, "Error": 1, "ErrorLoadingApp": 2, "Cancelled": 3,
                "Timeout": 4, "Disconnect": 5}
    assert {name: getattr(TaskExitCode, name) for name in expected} == expected


# --- dataclasses -----------------------------------------------------------------------------------


def _fields(cls: type) -> list[list[str]]:
    return [[field.name, repr(field.default), field.type] for field in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls", [TaskPolicy, QueueDepthAutoscaler, FunctionContext], ids=lambda cls: cls.__name__)
def test_dataclass_fields_defaults_and_annotations_equal_the_sdk(spec, cls):
    assert _fields(cls) == spec[cls.__name__]["dataclass_fields"]


def test_task_policy_defaults_are_zero_despite_the_sdk_docstring():
    assert TaskPolicy() == TaskPolicy(max_retries=0, timeout=0, ttl=0)
    assert repr(TaskPolicy()) == "TaskPolicy(max_retries=0, timeout=0, ttl=0)"


def test_queue_depth_autoscaler_defaults_and_base_class(spec):
    autoscaler = QueueDepthAutoscaler()
    assert isinstance(autoscaler, Autoscaler)
    assert repr(autoscaler) == spec["function"]["resolved_defaults"]["autoscaler"]
    assert QueueDepthAutoscaler(3, 2, 1) == QueueDepthAutoscaler(max_containers=3, tasks_per_container=2,
                                                                 min_containers=1)


# --- env -------------------------------------------------------------------------------------------


def test_local_when_container_id_unset(local_env):
    assert beam_env.is_local() is True
    assert beam_env.is_remote() is False


def test_local_when_container_id_empty(local_env):
    local_env.setenv("CONTAINER_ID", "")
    assert beam_env.is_local() is True
    assert beam_env.is_remote() is False


def test_remote_when_container_id_set(local_env):
    local_env.setenv("CONTAINER_ID", "container-123")
    assert beam_env.is_local() is False
    assert beam_env.is_remote() is True


@pytest.mark.parametrize(("value", "importing"), [("true", True), ("True", False), ("1", False), ("", False)])
def test_called_on_import_only_for_exact_true(local_env, value, importing):
    local_env.setenv("BETA9_IMPORTING_USER_CODE", value)
    assert beam_env.called_on_import() is importing


def test_called_on_import_false_when_unset(local_env):
    assert beam_env.called_on_import() is False


def test_local_entrypoint_calls_immediately_when_local_and_returns_none(local_env):
    calls = []
    result = beam_env.local_entrypoint(lambda: calls.append("ran"))
    assert calls == ["ran"]
    assert result is None


def test_local_entrypoint_does_nothing_in_a_container(local_env):
    local_env.setenv("CONTAINER_ID", "container-123")
    calls = []
    assert beam_env.local_entrypoint(lambda: calls.append("ran")) is None
    assert calls == []


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("4", 1, 4), ("2.5", 1.0, 2.5), ("hello", "x", "hello"),
        (None, 7, 7), ("", 7, 7), ("0", 7, 7), ("0.0", 1.5, 1.5),  # empty or 0-ish falls back to the default
        ("not-a-number", 7, 7),
    ],
)
def test_try_env_reads_beam_prefix_and_casts_to_default_type(local_env, value, default, expected):
    local_env.delenv("BEAM_SETTING", raising=False)
    if value is not None:
        local_env.setenv("BEAM_SETTING", value)
    result = beam_env.try_env("setting", default)
    assert result == expected
    assert type(result) is type(default)


def test_try_env_upper_cases_the_name(local_env):
    local_env.setenv("BEAM_MY_WORKERS", "3")
    assert beam_env.try_env("my_workers", 1) == 3


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", "On"])
def test_try_env_bool_true_words(local_env, value):
    local_env.setenv("BEAM_FLAG", value)
    assert beam_env.try_env("flag", False) is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", "anything"])
def test_try_env_bool_other_words_are_false(local_env, value):
    local_env.setenv("BEAM_FLAG", value)
    assert beam_env.try_env("flag", True) is False


def test_try_env_bool_default_true_is_false_when_unset(local_env):
    local_env.delenv("BEAM_FLAG", raising=False)
    assert beam_env.try_env("flag", True) is False


# --- FunctionContext -------------------------------------------------------------------------------


def test_function_context_defaults():
    context = FunctionContext()
    assert dataclasses.asdict(context) == {
        "container_id": None, "stub_id": None, "stub_type": None, "callback_url": None, "task_id": None,
        "timeout": None, "on_start_value": None, "bind_port": 0, "python_version": "",
    }


def test_context_is_passed_only_to_a_parameter_named_context():
    def with_context(x, context):
        return x

    def with_ctx(x, ctx):
        return x

    def with_kwargs(x, **kwargs):
        return x

    assert wants_context(with_context) is True
    assert wants_context(with_ctx) is False
    assert wants_context(with_kwargs) is False


# --- @function -------------------------------------------------------------------------------------


def square(x: int) -> int:
    """Square a number."""
    return x * x


def test_function_defaults_resolve_like_the_sdk(spec):
    decorator = beamray.function()
    resolved = spec["function"]["resolved_defaults"]
    args = decorator.runner_args
    assert args.cpu_millicores == int(resolved["cpu"]) == 125
    assert args.memory == int(resolved["memory"]) == 128
    assert args.gpu == GpuType.NoGPU
    assert args.gpu_count == int(resolved["gpu_count"]) == 0
    assert repr(args.callback_url) == resolved["callback_url"]
    assert repr(list(args.volumes)) == resolved["volumes"]
    assert repr(list(args.secrets)) == resolved["secrets"]
    assert repr(list(args.env)) == resolved["env"]
    assert repr(args["headless"]) == resolved["headless"]
    policy = TaskPolicy(max_retries=args.retries, timeout=int(args.timeout), ttl=args.ttl)
    assert repr(policy) == resolved["task_policy"] == "TaskPolicy(max_retries=3, timeout=3600, ttl=0)"


def test_function_app_defaults_to_name_then_cwd(local_env, tmp_path):
    assert beamray.function(name="svc").runner_args.app == "svc"
    assert beamray.function(app="grp", name="svc").runner_args.app == "grp"
    local_env.chdir(tmp_path)
    assert beamray.function().runner_args.app == tmp_path.name


def test_function_parses_cpu_and_memory_at_decoration():
    args = beamray.function(cpu="500m", memory="2Gi").runner_args
    assert (args.cpu_millicores, args.memory) == (500, 2048)
    args = beamray.function(cpu=2, memory="2G").runner_args
    assert (args.cpu_millicores, args.memory) == (2000, 2000)


def test_function_bad_cpu_raises_beam_message_at_decoration():
    with pytest.raises(ValueError, match=r"^Invalid CPU string format\. Must be a digit followed by 'm'"):
        beamray.function(cpu="1")


def test_function_bad_gpu_is_only_reported_at_first_use():
    wrapper = beamray.function(gpu="FOO")(square)  # lazily checked, as in the SDK
    assert wrapper.parent.runner_args.gpu_count == 1
    with pytest.raises(ValueError, match="Invalid GPU type: FOO"):
        wrapper.parent.spec_for(square)


def test_function_gpu_named_sets_gpu_count_one():
    assert beamray.function(gpu="T4").runner_args.gpu_count == 1
    assert beamray.function(gpu=["T4", "A10G"], gpu_count=2).runner_args.gpu_count == 2


def test_function_task_policy_overrides_retries_and_timeout():
    decorator = beamray.function(retries=1, timeout=60, task_policy=TaskPolicy(max_retries=5, timeout=10, ttl=30))
    assert (decorator.runner_args.retries, decorator.runner_args.timeout, decorator.runner_args.ttl) == (5, 10, 30)


def test_function_zero_task_policy_keeps_plain_kwargs():
    decorator = beamray.function(retries=1, timeout=60, task_policy=TaskPolicy())
    assert (decorator.runner_args.retries, decorator.runner_args.timeout, decorator.runner_args.ttl) == (1, 60, 0)


def test_function_timeout_minus_one_means_none():
    assert beamray.function(timeout=-1).runner_args.timeout is None


def test_function_spec_carries_parsed_values():
    spec = beamray.function(cpu=0.5, memory="1Gi", gpu=["h100", "a10g"], env={"A": "1"}, secrets=["S"],
                            name="sq", retry_for=[KeyError])(square).parent.spec_for(square)
    assert spec.name == "sq"
    assert spec.handler.endswith(":square")
    assert (spec.resources.cpu, spec.resources.memory_mib) == (0.5, 1024)
    assert (spec.resources.gpu, spec.resources.gpu_count) == (("H100", "A10G"), 1)
    assert (spec.runtime.env, spec.runtime.secrets) == ((("A", "1"),), ("S",))
    assert (spec.retries, spec.timeout, spec.retry_for) == (3, 3600, (KeyError,))


def test_function_wrapper_keeps_func_parent_and_metadata():
    decorator = beamray.function()
    wrapper = decorator(square)
    assert isinstance(wrapper, RemoteFunction)
    assert wrapper.func is square
    assert wrapper.parent is decorator
    assert (wrapper.__name__, wrapper.__doc__) == ("square", "Square a number.")


def test_function_bare_call_in_a_container_runs_locally(local_env):
    local_env.setenv("CONTAINER_ID", "container-123")
    wrapper = beamray.function()(square)
    assert wrapper(7) == 49
    assert wrapper._runner is None  # never reached for the cluster


def test_function_bare_call_while_importing_user_code_returns_none(local_env):
    local_env.setenv("BETA9_IMPORTING_USER_CODE", "true")
    local_env.setenv("CONTAINER_ID", "container-123")
    calls = []
    wrapper = beamray.function()(lambda: calls.append("ran") or "result")
    assert wrapper() is None
    assert calls == []
    assert wrapper._runner is None


def test_function_local_runs_in_process(local_env):
    seen = []

    def record(x, *, y=0):
        seen.append((x, y))
        return x + y

    wrapper = beamray.function()(record)
    assert wrapper.local(1, y=2) == 3
    assert seen == [(1, 2)]
    assert wrapper._runner is None
