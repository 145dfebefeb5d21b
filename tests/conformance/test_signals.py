"""Beam's "Send Events Between Apps": a trainer endpoint sets ``experimental.Signal("reload-model")`` and
the inference endpoint's handler reloads its model, then clears the signal."""

from __future__ import annotations

import json
import time

from tests.conformance.conftest import wait_for
from tests.conformance.support import deployed, gateway


def test_signal_set_by_the_trainer_reloads_the_inference_model_once(user):
    http = gateway(user)
    inference_project = user.project("signal_inference")
    trainer_project = user.project("signal_trainer")
    with deployed(user, inference_project, "app.py:predict") as inference, \
            deployed(user, trainer_project, "app.py:train") as trainer:
        assert (inference["name"], trainer["name"]) == ("inference", "trainer")

        def loads() -> int:
            response = http.post(inference["url"], json={})
            assert response.status_code == 200, response.text
            assert response.json()["success"] == "true"
            return response.json()["loads"]

        assert loads() == 1  # on_start=load_latest_model ran once
        volumes = json.loads(user.beamray("volume", "list", "--json").stdout)
        assert "brand_classifier" in [volume["name"] for volume in volumes]  # the app's Volume exists

        assert http.post(trainer["url"], json={}).status_code == 200  # s.set(ttl=60)
        wait_for(lambda: loads() == 2, 20, interval=0.5, what="the signal handler to run in the inference app")
        time.sleep(2.5)  # the handler cleared the signal: it does not fire again ("Clearing Signals")
        assert loads() == 2
