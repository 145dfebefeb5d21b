"""Beam's ``@realtime`` example (docs: Realtime and Streaming), deployed and driven by a WebSocket client
doing what the docs' JavaScript clients do."""

from __future__ import annotations

import json

from websockets.sync.client import connect

from tests.conformance.support import deployed, websocket_url


def test_realtime_app_echoes_each_message_back(user):
    project = user.project("realtime_echo")
    with deployed(user, project, "app.py:stream") as deployment:
        assert (deployment["name"], deployment["kind"]) == ("stream", "realtime")
        # authorized=False: no token; the version URL and the alias URLs Beam prints.
        for path in (f"/realtime/stream/v{deployment['version']}", "/realtime/stream", "/realtime/stream/latest"):
            with connect(websocket_url(user, path), open_timeout=60) as socket:
                socket.send("Hello Server!")  # the native WebSocket example
                assert json.loads(socket.recv(timeout=30)) == {"response": "Hello Server!"}, path

                payload = {"event": "Echo this back"}  # the Beam JS SDK example sends JSON text
                socket.send(json.dumps(payload))
                assert json.loads(socket.recv(timeout=30)) == {"response": json.dumps(payload)}, path
