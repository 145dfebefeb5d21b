# Docs: Data Storage / Volumes: a file written to a Volume by one function is read by another, here
# on another node (an A10G node writes, a CPU node reads).
import json
import os

from beam import Volume, function

VOLUME_PATH = "./shared"
volume = Volume(name="simulated-nodes", mount_path=VOLUME_PATH)


def node_group():
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return next(n for n in ray.nodes() if n["NodeID"] == node_id)["Labels"].get("ray.io/node-group")


@function(gpu="A10G", volumes=[volume])
def write():
    with open(os.path.join(VOLUME_PATH, "hello.txt"), "w") as f:
        f.write("written on a10g")
    return node_group()


@function(cpu=1, memory="3584Mi", volumes=[volume])  # more memory than an a10g node has
def read():
    with open(os.path.join(VOLUME_PATH, "hello.txt")) as f:
        return {"text": f.read(), "group": node_group()}


if __name__ == "__main__":
    print(json.dumps({"writer": write.remote(), "reader": read.remote()}))
