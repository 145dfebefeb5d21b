"""Small unchanged Beam apps asking for GPUs, for ``beamray k8s render`` (tests/k8s/test_render.py).

Render one handler with ``gpu_apps.py:HANDLER``, or all of them with ``gpu_apps.py``. Nothing here runs.
"""

from beam import Image, endpoint, function, schedule, task_queue

CUSTOM_IMAGE = "registry.example.com/team/beamray-llm:2.60.0"


@endpoint(name="embed", cpu=2, memory="8Gi", gpu="A10G")
def a10g_endpoint(**inputs):
    return {"ok": True}


@function(cpu=16, memory="128Gi", gpu="H100", image=Image(base_image=CUSTOM_IMAGE))
def h100_function(x):
    return x


@task_queue(cpu=4, memory="16Gi", gpu="RTX4090")
def rtx4090_queue(**inputs):
    return inputs


@function(cpu=4, memory="24Gi", gpu=["H100", "A10G"])
def priority_function(x):
    return x


@endpoint(cpu=8, memory="32Gi", gpu="A10G", gpu_count=2)
def two_gpu_endpoint(**inputs):
    return {}


@function(cpu=4, memory="16Gi")
def cpu_function(x):
    return x


@schedule(when="0 * * * *", cpu=0.5, memory=512)
def hourly():
    return None


@function(cpu=1, memory="4Gi", gpu="T4")
def t4_function(x):
    return x


@function(cpu=2, memory="8Gi", gpu="A6000")
def a6000_function(x):
    return x


@function(cpu=1, memory="1Gi", gpu="any")
def any_gpu_function(x):
    return x
