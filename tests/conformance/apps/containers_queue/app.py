# A task queue as Beam's docs write one (Core Concepts › Task Queues), kept warm so its worker stays listed.
import time

from beam import task_queue


@task_queue(name="inspect-queue", cpu=0.5, memory=128, keep_warm_seconds=300,
            env={"CONTAINERS_PROBE": "queue-value"})
def handler(**inputs):
    time.sleep(inputs.get("sleep", 0))
    return {"done": True}
