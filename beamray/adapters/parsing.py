"""Beam's argument parsing, exactly as the SDK does it (types, messages, quirks).

Pure functions: no Ray, no I/O. Decorators call these once and keep the results in specs.
References: ``shared/spec/beam-api.md`` §1–2.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence, Union
from urllib.parse import urlparse

from beamray.adapters.types import GpuType, QueueDepthAutoscaler, TaskPolicy

_CPU_MILLICORES = re.compile(r"\d+m")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([a-z]*)")
_MEMORY_UNITS = {"": 1, "m": 1, "mb": 1, "mi": 1, "mib": 1, "g": 1000, "gb": 1000, "gi": 1024, "gib": 1024}

# Registry secret names Beam accepts for a private base image (values live in the secrets store).
IMAGE_CREDENTIAL_KEYS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "DOCKERHUB_USERNAME",
    "DOCKERHUB_PASSWORD", "GITHUB_USERNAME", "GITHUB_TOKEN", "GCP_ACCESS_TOKEN", "NGC_API_KEY",
)


def parse_cpu(cpu: Any) -> int:
    """Cores (0.1–64) or ``"Nm"`` (100m–64000m) → millicores."""
    if isinstance(cpu, (int, float)):  # bool is an int, as in the SDK
        if not 0.1 <= cpu <= 64:
            raise ValueError("CPU value out of range. Must be between 0.1 and 64 cores.")
        return int(cpu * 1000)
    if isinstance(cpu, str):
        if not _CPU_MILLICORES.fullmatch(cpu):  # fullmatch: "100m\n" is a format error, as in the SDK
            raise ValueError("Invalid CPU string format. Must be a digit followed by 'm' (e.g., '1000m').")
        # Beyond Python's int digit limit the value is out of range anyway (not int()'s own ValueError).
        millicores = int(cpu[:-1]) if len(cpu) <= 64 else 0
        if not 100 <= millicores <= 64000:
            raise ValueError("CPU value out of range. Must be between 100m and 64000m.")
        return millicores
    raise TypeError("CPU must be a float or a string.")


def parse_memory(memory: Any) -> Any:
    """``"2Gi"`` → 2048, ``"2G"`` → 2000 (MiB). Other values pass through unchanged, as in the SDK, except
    numbers no container can have (negative, NaN, infinite): those fail here, not when the call is placed."""
    if not isinstance(memory, str):
        if (isinstance(memory, float) and not math.isfinite(memory)) or (_is_number(memory) and memory < 0):
            raise ValueError(f"memory must be a non-negative number of MiB or a string like '2Gi', got {memory!r}")
        return memory
    match = _MEMORY.fullmatch(memory.strip().lower())
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise ValueError("Unsupported memory format")
    amount = float(match.group(1)) * _MEMORY_UNITS[match.group(2)]
    if not math.isfinite(amount):
        raise ValueError("memory is too large to be a size; give it in MiB or GiB, like '2Gi'")
    mib = math.ceil(amount)
    if mib <= 0:
        raise ValueError("memory must be greater than 0")
    return mib


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_GPU_STRIP = ("NVIDIA", "GEFORCE", "TESLA", "QUADRO")
_GPU_ALIASES = (
    "RTXPro6000", "RTX6000Ada", "RTX4000Ada", "RTX6000", "RTX5090", "RTX4090", "V100-32", "V100", "GAUDI2",
    "GH200", "B300", "B200", "H200", "H100", "L40S", "L40", "L4", "T4", "A100-80", "A100-40", "A100", "A6000",
    "A5000", "A4000", "A40", "A30", "A16", "A10G", "A10",
)


def _squash(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def normalize_gpu_type(gpu: str) -> str:
    """``"RTX 4090"`` → ``RTX4090``, ``"nvidia-h100-80gb"`` → ``H100``; unknown names come back squashed."""
    name = _squash(gpu)
    for word in _GPU_STRIP:
        name = name.replace(word, "")
    if name in ("", "0"):
        return ""
    if name == "ANY":
        return "any"
    if "A100" in name and "80G" in name:
        return "A100-80"
    if "A100" in name and "40G" in name:
        return "A100-40"
    for alias in _GPU_ALIASES:
        if _squash(alias) in name:
            return alias
    return name


def parse_gpu(gpu: Any) -> tuple[str, ...]:
    """A type or a priority list → the normalised GpuType values in priority order (empty: no GPU)."""
    if isinstance(gpu, (str, GpuType)):
        items: Sequence[Any] = [gpu] if str(gpu.value if isinstance(gpu, GpuType) else gpu) else []
    elif isinstance(gpu, list):  # the SDK accepts a list only; a tuple is "Invalid GPU type"
        items = gpu
    else:
        raise ValueError("Invalid GPU type")
    parsed = []
    for item in items:
        if isinstance(item, GpuType):
            item = item.value
        if not isinstance(item, str):
            raise ValueError("Invalid GPU type")
        normalized = normalize_gpu_type(item)
        try:
            parsed.append(GpuType(normalized).value)
        except ValueError:
            raise ValueError(f"Invalid GPU type: {item} ('{normalized}' is not a valid GpuType)") from None
    return tuple(value for value in parsed if value)


def resolve_gpu_count(gpu: Any, gpu_count: int) -> int:
    """The SDK's rule: 0 becomes 1 whenever a GPU is named (``gpu=None`` and ``[]`` included)."""
    if not isinstance(gpu_count, int) or isinstance(gpu_count, bool) or gpu_count < 0:
        raise ValueError(f"gpu_count must be a non-negative integer, got {gpu_count!r}")
    if gpu_count == 0:
        named = gpu.value if isinstance(gpu, GpuType) else gpu
        if named != "":
            return 1
    return gpu_count


_ENV_REFERENCE = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_REFERENCE_GRAMMAR = (
    re.compile(r"secret\.[A-Za-z_][A-Za-z0-9_\-]*"),
    re.compile(r"db\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_]+"),
    re.compile(r"app\.[A-Za-z0-9_\-]+\.(URL|TCP|HOST|PORT\.\d+)"),
    re.compile(r"secret\(\s*\d+\s*(,\s*\"[^\"]*\"\s*)?\)"),
    re.compile(r"randomInt\(\s*-?\d+\s*,\s*-?\d+\s*\)"),
)


def parse_env(env: Any) -> tuple[tuple[str, str], ...]:
    """``{"K": "V"}`` → ``(("K", "V"),)``; ``${{ … }}`` references are checked against Beam's grammar."""
    if env is None:
        return ()
    if not isinstance(env, dict):
        raise TypeError(f"env must be a dict of str to str, got {type(env).__name__}")
    pairs = []
    for key, value in env.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"Environment variable key must be a non-empty string: {key!r}")
        value = str(value)
        for reference in _ENV_REFERENCE.findall(value):
            if not any(rule.fullmatch(reference) for rule in _REFERENCE_GRAMMAR):
                raise ValueError(f"INVALID_CONFIG: invalid reference '${{{{ {reference} }}}}' in env var {key}")
        pairs.append((key, value))
    return tuple(pairs)


def parse_secrets(secrets: Any) -> tuple[str, ...]:
    if secrets is None:
        return ()
    if isinstance(secrets, str) or not all(isinstance(name, str) and name for name in secrets):
        raise TypeError(f"secrets must be a list of secret names, got {secrets!r}")
    return tuple(secrets)


def parse_retry_for(retry_for: Any) -> tuple[type[BaseException], ...]:
    if retry_for is None:
        return ()
    items: Iterable[Any] = retry_for if isinstance(retry_for, (list, tuple)) else [retry_for]
    parsed = tuple(items)
    for item in parsed:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"retry_for must list exception classes, got {item!r}")
    return parsed


MAX_TIMEOUT_S = 2**31 - 1  # what a timer (and Beam's int32 stub field) can hold: about 68 years


def parse_timeout(timeout: Any) -> float | None:
    """Seconds; ``-1`` (or any value ≤ 0) means no timeout."""
    if not _is_number(timeout):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (timeout <= MAX_TIMEOUT_S):  # also NaN
        raise ValueError(f"timeout must be at most {MAX_TIMEOUT_S} seconds (-1 for none), got {timeout!r}")
    return float(timeout) if timeout > 0 else None


def parse_retries(retries: Any) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    return retries


def apply_task_policy(policy: TaskPolicy | None, retries: int, timeout: Any) -> tuple[int, Any, int]:
    """Non-zero policy fields override the plain kwargs (SDK); returns ``(retries, timeout, ttl)``."""
    policy = policy or TaskPolicy()
    if not isinstance(policy, TaskPolicy):
        raise TypeError(f"task_policy must be a TaskPolicy, got {policy!r}")
    if policy.ttl and not 0 < policy.ttl < 86400:
        raise ValueError(f"task_policy.ttl must be between 0 and 86400 seconds, got {policy.ttl}")
    return policy.max_retries or retries, policy.timeout or timeout, policy.ttl


def parse_autoscaler(autoscaler: Any) -> QueueDepthAutoscaler:
    if autoscaler is None:
        return QueueDepthAutoscaler()
    if type(autoscaler) is not QueueDepthAutoscaler:  # the SDK looks the exact type up in _AUTOSCALER_TYPES
        raise ValueError(f"Invalid Autoscaler class: {type(autoscaler).__name__}")
    for field in ("max_containers", "tasks_per_container", "min_containers"):
        value = getattr(autoscaler, field)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"autoscaler {field} must be a whole number, got {value!r}")
    if autoscaler.min_containers < 0 or autoscaler.max_containers < max(1, autoscaler.min_containers):
        raise ValueError(
            f"autoscaler needs 0 <= min_containers <= max_containers and max_containers >= 1, "
            f"got min_containers={autoscaler.min_containers}, max_containers={autoscaler.max_containers}"
        )
    if autoscaler.tasks_per_container < 1:
        raise ValueError(f"tasks_per_container must be >= 1, got {autoscaler.tasks_per_container}")
    return QueueDepthAutoscaler(autoscaler.max_containers, autoscaler.tasks_per_container, autoscaler.min_containers)


def parse_callback_url(url: Any) -> str:
    if url in (None, ""):
        return ""
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"callback_url must be an http(s) URL, got {url!r}")
    return url


def parse_name(name: Any) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,62}", name):
        raise ValueError(
            f"name must be 1-63 letters, digits, '-' or '_' starting with a letter or digit, got {name!r}"
        )
    return name


def parse_schedule(when: Any) -> str:
    """A cron expression (UTC) or Beam's predefined ``@daily``-style names; one that never fires (``0 0 30 2
    *``, a 30th of February) is refused here, not found out by the scheduler."""
    from croniter import CroniterBadDateError, croniter

    if not isinstance(when, str) or not croniter.is_valid(when.strip()):
        raise ValueError(f"Invalid schedule {when!r}: use a cron expression like '*/5 * * * *' (UTC) or one of "
                         "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")
    try:
        croniter(when.strip()).get_next(float)
    except CroniterBadDateError:
        raise ValueError(f"Invalid schedule {when!r}: no date ever matches it") from None
    return when.strip()


SERVE_DEFAULT_TIMEOUT_S = 600  # Beam's server default: 10 minutes without requests


def parse_serve_timeout(timeout: Any) -> float | None:
    """``.serve(timeout=)``: seconds of inactivity before the session ends; 0 → Beam's 10 minutes, -1 → never."""
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < -1:
        raise ValueError(f"timeout must be -1 (never), 0 (10 minutes) or a number of seconds, got {timeout!r}")
    if timeout == -1:
        return None
    return float(timeout or SERVE_DEFAULT_TIMEOUT_S)


def parse_store_name(kind: str, name: Any) -> str:
    """The name of a ``Queue`` or ``Map`` (``kind``): any non-empty string."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")
    return name


def parse_python_packages(packages: Sequence[str]) -> list[str]:
    """The SDK's rule: pip option lines (``-``/``--``) kept as they are, ``#`` lines dropped, spaces removed."""
    sanitized = []
    for package in packages:
        if package.startswith("-"):
            sanitized.append(package)
        elif package.startswith("#"):
            continue
        else:
            sanitized.append(package.replace(" ", ""))
    return sanitized


def parse_image_credentials(creds: Any) -> Union[list[str], dict[str, str]]:
    """Beam limits registry credentials to a fixed set of secret names; reject others at definition time."""
    if creds is None:
        return {}
    if isinstance(creds, dict):
        keys: Sequence[Any] = list(creds)
    elif isinstance(creds, (list, tuple)):
        keys = list(creds)
    else:
        raise TypeError(f"base_image_creds must be a list of secret names or a dict, got {type(creds).__name__}")
    for key in keys:
        if key not in IMAGE_CREDENTIAL_KEYS:
            raise ValueError(
                f"Invalid base_image_creds key: {key!r}. Allowed keys: {', '.join(IMAGE_CREDENTIAL_KEYS)}"
            )
    return dict(creds) if isinstance(creds, dict) else list(creds)
