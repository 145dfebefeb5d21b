# Docs: Ephemeral Files and Images › Saving Files, on a GPU node: the file is saved where the function
# runs (a simulated A10G node) and its public URL is fetched through the head's gateway; deployed and
# invoked over HTTP, since the docs show no caller.
import json

from beam import Output, function


@function(gpu="A10G")
def save_output():
    import ray

    file_name = "/tmp/my_output.txt"
    with open(file_name, "w") as f:
        f.write("This is an output, saved on an A10G node.")
    output_file = Output(path=file_name)
    output_file.save()
    node_id = ray.get_runtime_context().get_node_id()
    group = next(n for n in ray.nodes() if n["NodeID"] == node_id)["Labels"].get("ray.io/node-group")
    return {"output_url": output_file.public_url(expires=400), "group": group}


if __name__ == "__main__":
    print(json.dumps(save_output.remote()))
