# Beam docs › GPU Acceleration › Running Tasks on GPU; nvidia-smi is replaced by printing CUDA_VISIBLE_DEVICES (emulated GPUs have no driver).
from beam import endpoint


@endpoint(gpu="H100")
def handler():
    # Prints the available GPU drivers
    import os
    print(os.environ.get("CUDA_VISIBLE_DEVICES"))

    return {"gpu":"true"}
