"""The ASGI app that sits in one Serve replica in front of a user's endpoint, asgi or realtime handler.

It does what Beam's container runner does for one request: auth, ``/warmup`` and ``/health``,
``context`` injection, Beam's response shapes (JSON, passthrough, ``data:`` streams), realtime WebSocket
messages, a mounted ASGI app. What the kinds share is ``web_app.WebApp``; each kind has its own module.
"""

from __future__ import annotations

from typing import Any, Callable

from beamray.context import FunctionContext
from beamray.serve_bridge.asgi import MAX_BODY_BYTES, ASGIApp, is_asgi3
from beamray.serve_bridge.endpoint_app import EndpointApp
from beamray.serve_bridge.mounted_app import MountedApp
from beamray.serve_bridge.realtime_app import RealtimeApp
from beamray.specs import WEB_KINDS

__all__ = ["build_app"]


def build_app(
    kind: str,
    handler: Callable[..., Any],
    *,
    make_context: Callable[[str], FunctionContext],
    authorize: Callable[[str | None], bool] | None,
    concurrency: int = 1,
    timeout: float | None = 180.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    callback_url: str = "",
) -> ASGIApp:
    """Build the ASGI app one replica serves for an endpoint, asgi or realtime deployment.

    ``handler`` is the user's function, or for ``kind="asgi"`` the ASGI3 app the user's handler returned.
    ``make_context(task_id)`` builds the ``context`` passed to handlers that name it. ``authorize`` gets the
    raw ``Authorization`` header (``None`` when absent) and says whether to serve; ``None`` means public.
    ``concurrency`` caps handler calls at once (workers × concurrent_requests); ``timeout`` (seconds,
    ``None`` for none) bounds each request; bodies over ``max_body_bytes`` get 413. An endpoint call ends
    with Beam's signed callback to ``callback_url`` (or the request's own ``callback_url`` kwarg).
    """
    if kind not in WEB_KINDS:
        raise ValueError(f"build_app serves endpoint, asgi and realtime, not {kind!r}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if kind == "asgi" and not is_asgi3(handler):
        raise TypeError("Invalid ASGI app returned from handler")
    if kind != "asgi" and not callable(handler):
        raise TypeError(f"{kind} handler must be callable, got {type(handler).__name__}")
    app_class = {"endpoint": EndpointApp, "asgi": MountedApp, "realtime": RealtimeApp}[kind]
    return app_class(handler, make_context, authorize, concurrency, timeout, max_body_bytes, callback_url)
