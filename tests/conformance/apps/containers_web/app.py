# An endpoint as Beam's docs write one (Creating a Web Endpoint), with an env var for `container exec` to see.
import os
import time

from beam import endpoint


@endpoint(name="inspect-web", cpu=0.5, memory=128, env={"CONTAINERS_PROBE": "web-value"})
def handler(**inputs):
    time.sleep(inputs.get("sleep", 0))
    return {"container_id": os.environ["CONTAINER_ID"]}
