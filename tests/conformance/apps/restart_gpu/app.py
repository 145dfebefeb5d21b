# Docs: Endpoints with gpu="T4": restored only while the cluster has (emulated) T4s.
from beam import endpoint


@endpoint(name="restart-gpu", cpu=0.1, gpu="T4")
def handler(**inputs):
    return {"gpu": "T4"}
