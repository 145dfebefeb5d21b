"""What runs inside a Ray worker around a user's handler: Beam's container environment.

Per task: ``CONTAINER_ID``/``TASK_ID``/``STUB_ID`` and the spec's env set (and restored afterwards,
since Ray reuses worker processes), secrets read from the store by name (their values never travel in
Ray's task metadata), ``timeout`` enforced with SIGALRM, ``retry_for`` mapped onto Ray's retries.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets as _random_secrets
import signal
import string
import threading
from typing import Any, Iterator

from beamray.exceptions import UnsupportedFeatureError

_REFERENCE = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class RetryableTaskError(Exception):
    """Carries an exception listed in ``retry_for`` so that Ray retries the task (exact type match)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


class FunctionTimeoutError(TimeoutError):
    """A handler ran past its ``timeout``; the name says which one."""


def _expand(value: str, secret_values: dict[str, str]) -> str:
    """Resolve Beam's ``${{ … }}`` references in an env value."""

    def replace(match: re.Match[str]) -> str:
        reference = match.group(1)
        if reference.startswith("secret."):
            from beamray import secrets

            name = reference[len("secret."):]
            return secret_values[name] if name in secret_values else secrets.load(name)
        if reference.startswith("randomInt("):
            low, high = (int(part) for part in reference[len("randomInt("):-1].split(","))
            return str(random.randint(low, high))
        if reference.startswith("secret("):
            length, _, alphabet = reference[len("secret("):-1].partition(",")
            alphabet = alphabet.strip().strip('"') or string.ascii_letters + string.digits
            return "".join(_random_secrets.choice(alphabet) for _ in range(int(length)))
        raise UnsupportedFeatureError(f"env reference ${{{{ {reference} }}}} (db./app. references) is not supported")

    return _REFERENCE.sub(replace, value)


@contextlib.contextmanager
def environment(updates: dict[str, str]) -> Iterator[None]:
    """``updates`` in this process's environment for a while, then the variables as they were."""
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def task_environment(
    env: tuple[tuple[str, str], ...], secret_names: tuple[str, ...], identity: dict[str, str],
    volumes: tuple[Any, ...] = (),
) -> Iterator[None]:
    """Set the task's variables and mount its volumes for one task, then restore the worker's own."""
    from beamray import secrets

    secret_values = secrets.load_many(secret_names) if secret_names else {}
    updates = dict(identity)
    updates.update(secret_values)
    updates.update({key: _expand(value, secret_values) if "${{" in value else value for key, value in env})
    with environment(updates):
        if volumes:
            from beamray.runtime import mounts

            with mounts.task_mounts(volumes):
                yield
        else:
            yield


@contextlib.contextmanager
def deadline(seconds: float | None, name: str) -> Iterator[None]:
    """Raise ``FunctionTimeoutError`` in the running handler once ``seconds`` have passed."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise FunctionTimeoutError(f"Function {name} timed out after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
