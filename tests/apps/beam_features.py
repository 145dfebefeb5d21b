"""An unchanged Beam program using env, context, secrets-free config and the beta9 import name."""

import sys

import beta9
from beam import GpuType, env, function


@function(cpu=0.25, memory="256Mi", env={"MODE": "test"})
def describe(tag, context=None):
    import os

    return {"tag": tag, "remote": env.is_remote(), "mode": os.environ["MODE"], "has_task": bool(context.task_id)}


if __name__ == "__main__":
    assert beta9.function is function and GpuType.A10G == "A10G"
    print(describe.remote(sys.argv[1]))
