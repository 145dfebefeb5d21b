"""The deployments the bad-input suite sends its requests to: an authorized endpoint and a task queue."""

import time

from beamray import endpoint, task_queue


@endpoint(name="faults-echo", cpu=0.1, authorized=True)
def echo(**kwargs):
    return {"keys": sorted(kwargs)}


@task_queue(name="faults-slow", cpu=0.1)
def slow(seconds: float = 0.0):
    time.sleep(seconds)
    return {"slept": seconds}
