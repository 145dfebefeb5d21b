# Docs: Parallelizing Functions: .map fans out one call per input.
import json
import time

from beam import function


@function(cpu=1)
def square(x):
    import ray

    time.sleep(0.2)
    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return {"square": x * x, "node_id": node_id, "group": node["Labels"].get("ray.io/node-group")}


if __name__ == "__main__":
    print(json.dumps(list(square.map(range(50)))))
