# Docs: Task Queues (deployed with `beam deploy app.py:handler`) on an H100 (GPU Acceleration). The
# handler reports the node it ran on (Ray's view of it), so the test can see the simulated H100 node.
from beam import task_queue


@task_queue(name="h100-queue", gpu="H100", keep_warm_seconds=1)
def handler(x):
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return {"square": x * x, "node_id": node_id, "group": node["Labels"].get("ray.io/node-group"),
            "resources": node["Resources"]}
