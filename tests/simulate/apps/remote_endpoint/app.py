# Docs: Web Endpoints, deployed with `beam deploy app.py:where`; it answers with the node it runs on.
from beam import endpoint


@endpoint(name="where", cpu=1, memory="3584Mi")  # more memory than an a10g node has: a cpu node
def where():
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return {"group": node["Labels"].get("ray.io/node-group")}
