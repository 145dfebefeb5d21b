# Docs: Deploying a Pod, on an RTX 4090 worker node: the /pod app runs on the head, the pod on the GPU
# node, so each request crosses nodes (through the container's relay).
from beam import Pod

pod = Pod(
    name="gpu-pod",
    cpu=1,
    memory="1Gi",
    gpu="RTX4090",
    ports=[8000],
    entrypoint=["python", "-m", "http.server", "8000"],
)
