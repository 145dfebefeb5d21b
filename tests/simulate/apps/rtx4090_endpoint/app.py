# Docs: Web Endpoints on an RTX 4090 (GPU Acceleration), deployed with `beam deploy app.py:handler`; it
# answers with the node it runs on.
from beam import endpoint


@endpoint(name="rtx4090-where", gpu="RTX4090")
def handler():
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return {"node_id": node_id, "group": node["Labels"].get("ray.io/node-group"), "resources": node["Resources"]}
