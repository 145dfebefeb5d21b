"""Where beamray keeps its state and which cluster it talks to.

Everything is read when asked for, never at import: ``BEAMRAY_HOME`` (default ``~/.beamray``) holds
``config.json`` (``beamray config set``), the embedded cluster's ``cluster.json`` and the local stores
(``locations.py`` says which). The home is private (0700, see ``private_files``): task arguments, results
and tokens live in it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from beamray.private_files import private_home, write_private

DEFAULT_HTTP_PORT = 8000
CONFIG_KEYS = ("address", "http_port")


def home() -> Path:
    """``BEAMRAY_HOME`` (default ``~/.beamray``), created 0700 or tightened to it on first use."""
    return private_home(Path(os.environ.get("BEAMRAY_HOME") or "~/.beamray").expanduser())


def _config_path() -> Path:
    return home() / "config.json"


def load_config() -> dict[str, Any]:
    path = _config_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


def set_config(key: str, value: Any) -> None:
    if key not in CONFIG_KEYS:
        raise KeyError(f"unknown config key {key!r}; known keys: {', '.join(CONFIG_KEYS)}")
    config = load_config()
    if value is None:
        config.pop(key, None)
    else:
        config[key] = value
    write_private(_config_path(), json.dumps(config, indent=2))


def configured_address() -> str | None:
    """``BEAMRAY_ADDRESS``, else ``RAY_ADDRESS``, else ``config set address``; None means embedded."""
    for value in (os.environ.get("BEAMRAY_ADDRESS"), os.environ.get("RAY_ADDRESS"), load_config().get("address")):
        if value and value not in ("local", "embedded"):
            return value
    return None


def configured_http_port() -> int | None:
    """The gateway port the user chose (``BEAMRAY_HTTP_PORT``, else ``config set http_port``), or None."""
    value = os.environ.get("BEAMRAY_HTTP_PORT") or load_config().get("http_port")
    if not value:
        return None
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"BEAMRAY_HTTP_PORT must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"BEAMRAY_HTTP_PORT must be between 1 and 65535, got {port}")
    return port


def http_port() -> int:
    """The gateway port: the user's choice, else the one the embedded head picked, else 8000."""
    chosen = configured_http_port()
    if chosen is not None:
        return chosen
    try:
        return int(json.loads((home() / "cluster.json").read_text())["http_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_HTTP_PORT
