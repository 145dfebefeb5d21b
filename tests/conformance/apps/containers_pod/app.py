# Beam docs › Deploying a Pod, with an env var for `container exec` to see.
from beam import Pod

pod = Pod(
    name="inspect-pod",
    cpu=0.5,
    memory="256Mi",
    ports=[8011],
    env={"CONTAINERS_PROBE": "pod-value"},
    entrypoint=["python", "-m", "http.server", "8011"],
)
