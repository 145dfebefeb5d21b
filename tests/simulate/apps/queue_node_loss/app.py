# Docs: Task Queues with a QueueDepthAutoscaler (two containers), while the test kills one of their nodes.
# Each run leaves a file named after its input and node in a Volume, so the test sees every run.
import os
import time
import uuid

from beam import QueueDepthAutoscaler, Volume, task_queue

RUNS = "./runs"


@task_queue(
    name="node-loss-queue",
    cpu=1,
    memory="3584Mi",  # cpu nodes only: more memory than an a10g node has
    autoscaler=QueueDepthAutoscaler(max_containers=2, tasks_per_container=1),
    keep_warm_seconds=1,
    volumes=[Volume(name="queue-runs", mount_path=RUNS)],
)
def handler(i):
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    with open(os.path.join(RUNS, f"{i}.{node_id}.{uuid.uuid4().hex[:8]}"), "w"):
        pass
    time.sleep(0.4)
    return {"i": i, "node_id": node_id}
