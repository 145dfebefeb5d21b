# Docs: GPU Acceleration / Running Tasks on GPU, asking for a type no worker group offers.
from beam import function


@function(gpu="T4")
def on_t4():
    return "ran on a T4 node"


if __name__ == "__main__":
    print(on_t4.remote())
