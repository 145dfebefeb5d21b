# Docs: GPU Acceleration / GPU priority lists: the first type the cluster can provide is used.
import json

from beam import function


@function(gpu=["H100", "A10G"])
def wherever():
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return {"node_id": node_id, "group": node["Labels"].get("ray.io/node-group"), "resources": node["Resources"]}


if __name__ == "__main__":
    print(json.dumps(wherever.remote()))
