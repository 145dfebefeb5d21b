"""beamray's public surface against the real SDK's, read from ``shared/spec/beam-api-signatures.json``.

Every name of ``beam.__all__`` (plus ``experimental.Signal``) that beamray exports is checked: each
parameter the SDK accepts must be an explicit parameter of beamray's signature (a ``**kwargs`` does not
count), in the SDK's positional order, with an equal default. Decorators are also checked through the
handle they return. Names beamray does not implement must be absent from it; SDK members that an exported
name still lacks are listed in ``NOT_YET`` and the list must be exactly right, so it is updated as
features land. Parametrized per name: a new export is checked as soon as it appears. No Ray needed.
"""

from __future__ import annotations

import ast
import builtins
import enum
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

import beamray

REPO = Path(__file__).resolve().parents[1]
SPEC_CANDIDATES = [root / "shared" / "spec" / "beam-api-signatures.json" for root in (REPO, REPO.parent)]
SPEC_PATH = next((path for path in SPEC_CANDIDATES if path.exists()), None)
if SPEC_PATH is None:
    pytest.skip(f"beam-api-signatures.json not found in {[str(p) for p in SPEC_CANDIDATES]}",
                allow_module_level=True)
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())

# What `import beam` offers (0.2.233), plus Signal, which older versions exported as beam.experimental.
SDK_NAMES: list[str] = [*SPEC["_meta"]["beam.__all__"], "experimental.Signal"]

# Every spec entry under those names: classes, decorators, nested classes (Output.Stat) and the members of
# modules (env.try_env, schema.Schema, ...).
ENTRIES: dict[str, dict[str, Any]] = {
    key: entry for key, entry in SPEC.items()
    if not key.startswith("_") and (key in SDK_NAMES or key.split(".")[0] in SDK_NAMES)
}

# SDK members an exported name does not have yet in beamray. Must be exact: remove a name when it lands.
NOT_YET: dict[str, set[str]] = {
    "function": {"shell"},
    "endpoint": {"shell"},
    "asgi": {"shell"},
    "realtime": {"shell"},
    "task_queue": {"shell"},
    "schedule": {"shell", "invocation_details"},
    # The SDK's deploy machinery and internal parsers (beamray parses in adapters/parsing.py, deploys in deploy.py).
    "Pod": {"cleanup_deployment_artifacts", "generate_deployment_artifacts", "get_client", "parse_cpu", "parse_gpu",
            "parse_image", "parse_memory", "parse_on_deploy", "parse_pool", "prepare_runtime",
            "print_invocation_snippet"},
    # The same, plus Pod's deploy/serve/shell, which a Sandbox inherits in the SDK.
    "Sandbox": {"cleanup_deployment_artifacts", "deploy", "generate_deployment_artifacts", "get_client",
                "parse_cpu", "parse_gpu", "parse_image", "parse_memory", "parse_on_deploy", "parse_pool",
                "prepare_runtime", "print_invocation_snippet", "serve", "shell"},
}

# Non-builtin-equal bases beamray keeps for now: name -> SDK builtin bases it does not derive from yet.
BASES_NOT_YET: dict[str, set[str]] = {}

# SDK default (repr) -> the beamray default that behaves the same. Nothing else may differ.
ALLOWED_DEFAULTS: dict[str, Any] = {
    "Image()": None,  # beamray builds Image() inside when None (the SDK builds one at import)
    "{}": None,  # mutable defaults replaced by None: same as empty
    "[]": None,
    "TaskPolicy(max_retries=0, timeout=0, ttl=0)": None,  # default instance built inside when None
    "QueueDepthAutoscaler(max_containers=1, tasks_per_container=1, min_containers=0)": None,
}

# Arguments a decorator needs before it can decorate (to reach the handle it returns).
REQUIRED_DECORATOR_ARGS: dict[str, dict[str, Any]] = {"schedule": {"when": "@hourly"}}

_MISSING = object()
_ENUM_REPR = re.compile(r"<\w+\.\w+: (.*)>")


def resolve(path: str, root: Any = beamray) -> Any:
    """``beamray.<a>.<b>`` or ``_MISSING``."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


EXPORTED = [key for key in ENTRIES if resolve(key) is not _MISSING]
EXPORTED_TOP = [name for name in SDK_NAMES if resolve(name) is not _MISSING]


def sdk_literal(default_repr: str) -> tuple[bool, Any]:
    """``(True, value)`` when the SDK default is a literal; enum reprs count as their value."""
    match = _ENUM_REPR.fullmatch(default_repr)
    if match:
        default_repr = match.group(1)
    try:
        return True, ast.literal_eval(default_repr)
    except (ValueError, SyntaxError):
        return False, None


def plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def default_problem(where: str, sdk_repr: str, param: inspect.Parameter) -> str | None:
    """Why beamray's default of ``param`` differs from the SDK's ``sdk_repr``; None when it conforms."""
    if sdk_repr in ("<required>", "<varargs>"):
        return None
    if param.default is inspect.Parameter.empty:
        return f"{where}: required in beamray, SDK default {sdk_repr}"
    if sdk_repr == "<factory>":
        return None
    if sdk_repr in ALLOWED_DEFAULTS and param.default is ALLOWED_DEFAULTS[sdk_repr]:
        return None
    ours = plain(param.default)
    is_literal, value = sdk_literal(sdk_repr)
    if is_literal:
        same = ours == value and isinstance(ours, bool) == isinstance(value, bool) and (ours is None) == (value is None)
    else:
        same = repr(param.default) == sdk_repr
    return None if same else f"{where}: default {param.default!r}, SDK {sdk_repr}"


def signature_of(obj: Any, drop_first: bool = False) -> inspect.Signature:
    signature = inspect.signature(obj)
    if drop_first:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


def accept_problems(where: str, sdk_params: list[list[str]], signature: inspect.Signature) -> list[str]:
    """Every SDK parameter must be accepted explicitly, with an equal default."""
    params = signature.parameters
    kinds = {param.kind for param in params.values()}
    problems = []
    for sdk_param in sdk_params:
        name, default_repr = sdk_param[0], sdk_param[1]
        if name.startswith("**"):
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                problems.append(f"{where}: no {name}")
        elif name.startswith("*"):
            if inspect.Parameter.VAR_POSITIONAL not in kinds:
                problems.append(f"{where}: no {name}")
        elif name not in params or params[name].kind in (inspect.Parameter.VAR_KEYWORD,
                                                         inspect.Parameter.VAR_POSITIONAL):
            problems.append(f"{where}: does not accept {name!r} explicitly")
        elif params[name].kind is inspect.Parameter.POSITIONAL_ONLY:
            problems.append(f"{where}: {name!r} is positional-only")
        else:
            problem = default_problem(f"{where}({name})", default_repr, params[name])
            if problem:
                problems.append(problem)
    return problems


def member_signature(owner: Any, name: str) -> inspect.Signature | None:
    """The signature a caller sees (no self/cls); None for properties and other non-callables."""
    static = inspect.getattr_static(owner, name) if inspect.isclass(owner) else getattr(owner, name)
    if isinstance(static, (classmethod, staticmethod)) or inspect.ismodule(owner):
        return signature_of(getattr(owner, name))
    if inspect.isfunction(static):
        return signature_of(static, drop_first=True)
    if callable(static):
        try:
            return signature_of(getattr(owner, name))
        except (TypeError, ValueError):
            return None
    return None


def handle_class(name: str, obj: Any) -> Any:
    """What members are checked on: the handle a decorator returns, else the object itself."""
    if ENTRIES.get(name, {}).get("kind") != "decorator":
        return obj

    def handler(*args: Any, **kwargs: Any) -> None:
        return None

    handle = obj(**REQUIRED_DECORATOR_ARGS.get(name, {}))(handler)
    return type(handle)


def sdk_members(name: str) -> dict[str, list[list[str]]]:
    """Methods (a decorator's: its handle's), nested classes and, for a module, its members."""
    members = dict(ENTRIES.get(name, {}).get("methods", {}))
    for key in ENTRIES:
        if key.startswith(name + ".") and "." not in key[len(name) + 1:]:
            members.setdefault(key[len(name) + 1:], [])
    return members


# --- the export list ------------------------------------------------------------------------------


def test_all_lists_only_real_attributes():
    missing = [name for name in beamray.__all__ if getattr(beamray, name, None) is None]
    assert missing == []
    assert len(beamray.__all__) == len(set(beamray.__all__))


def test_exported_sdk_names_are_in_all():
    """``from beam import *`` gives every name of beam.__all__; beamray must list the ones it has."""
    top = [name for name in SPEC["_meta"]["beam.__all__"] if hasattr(beamray, name)]
    assert [name for name in top if name not in beamray.__all__] == []


def test_something_is_exported():
    assert "function" in EXPORTED_TOP


def test_not_yet_names_are_exported():
    """A NOT_YET entry for a name beamray dropped or never exported is stale."""
    assert set(NOT_YET) <= set(EXPORTED_TOP)
    assert set(BASES_NOT_YET) <= set(EXPORTED)


# --- per exported name ----------------------------------------------------------------------------


def sdk_positional(name: str) -> list[str]:
    return [param[0] for param in ENTRIES[name].get("params", [])
            if "kw-only" not in param[3:] and not param[0].startswith("*")]


# Enums and bare exceptions take no SDK parameters: nothing to compare there.
WITH_PARAMS = [key for key in EXPORTED if ENTRIES[key].get("params")]
WITH_POSITIONAL = [key for key in EXPORTED if sdk_positional(key)]
WITH_MEMBER_PARAMS = [name for name in EXPORTED_TOP if any(sdk_members(name).values())]


@pytest.mark.parametrize("name", WITH_PARAMS)
def test_signature_accepts_every_sdk_parameter(name):
    obj = resolve(name)
    assert accept_problems(name, ENTRIES[name]["params"], inspect.signature(obj)) == []


@pytest.mark.parametrize("name", WITH_POSITIONAL)
def test_positional_order_is_the_sdks(name):
    positional = sdk_positional(name)
    ours = [param.name for param in inspect.signature(resolve(name)).parameters.values()
            if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    assert ours[:len(positional)] == positional


@pytest.mark.parametrize("name", EXPORTED_TOP)
def test_missing_sdk_members_are_exactly_not_yet(name):
    owner = handle_class(name, resolve(name))
    missing = {member for member in sdk_members(name) if not hasattr(owner, member)}
    assert missing == NOT_YET.get(name, set())


@pytest.mark.parametrize("name", WITH_MEMBER_PARAMS)
def test_present_members_accept_sdk_parameters(name):
    owner = handle_class(name, resolve(name))
    problems = []
    for member, sdk_params in sdk_members(name).items():
        if not sdk_params or not hasattr(owner, member):
            continue
        signature = member_signature(owner, member)
        if signature is None:
            problems.append(f"{name}.{member}: not callable in beamray")
            continue
        problems += accept_problems(f"{name}.{member}", sdk_params, signature)
    assert problems == []


@pytest.mark.parametrize("name", [key for key in EXPORTED if "enum_values" in ENTRIES[key]])
def test_enum_values_are_the_sdks(name):
    members = {member.name: member.value for member in resolve(name)}
    assert members == ENTRIES[name]["enum_values"]


def builtin_bases(name: str) -> set[str]:
    """The SDK's bases that are builtins (``str``, ``RuntimeError``, ...), ``object`` aside."""
    return {base.split(".", 1)[1] for base in ENTRIES[name].get("bases", [])
            if base.startswith("builtins.") and base != "builtins.object"}


@pytest.mark.parametrize("name", [key for key in EXPORTED if builtin_bases(key)])
def test_builtin_bases_are_the_sdks(name):
    """``except RuntimeError`` / ``isinstance(x, str)`` in Beam code must keep working."""
    obj = resolve(name)
    lacking = {base for base in builtin_bases(name) if not issubclass(obj, getattr(builtins, base))}
    assert lacking == BASES_NOT_YET.get(name, set())


@pytest.mark.parametrize("name", [key for key in EXPORTED if "enum.Enum" in ENTRIES[key].get("bases", [])])
def test_enums_are_enums(name):
    assert issubclass(resolve(name), enum.Enum)
