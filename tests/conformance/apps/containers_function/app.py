# Beam docs › Running Functions (`.remote()`): a call that runs long enough to be seen in `container list`.
import os
import time

from beam import function


@function(cpu=0.5)
def slow(seconds):
    print("container", os.environ["CONTAINER_ID"], flush=True)
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":
    print(slow.remote(90))
