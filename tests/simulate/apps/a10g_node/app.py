# Docs: GPU Acceleration / Running Tasks on GPU. The handler reports the node it ran on (Ray's view of
# it), so the test can see the simulated A10G node the autoscaler added.
import json

from beam import function


@function(gpu="A10G")
def on_a10g():
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return {"node_id": node_id, "group": node["Labels"].get("ray.io/node-group"), "resources": node["Resources"]}


if __name__ == "__main__":
    print(json.dumps(on_a10g.remote()))
