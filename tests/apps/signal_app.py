"""An endpoint that reloads on a Signal set by another app (Beam's "Send Events Between Apps")."""

from beamray import endpoint, experimental

state = {"reloads": 0}


def reload_model():
    state["reloads"] += 1


signal = experimental.Signal(name="reload-model", handler=reload_model, clear_after_interval=2)


@endpoint(name="inference", cpu=0.1)
def inference():
    return {"reloads": state["reloads"]}
