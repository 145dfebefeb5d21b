# Beam docs › GPU Acceleration › Using Multiple GPUs (unchanged).
from beam import endpoint


@endpoint(gpu="A10G", gpu_count=2)
def handler():
    return {"hello": "world"}
