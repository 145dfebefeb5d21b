# Beam docs › Timeouts and Retries › Customizing Timeouts (timeout.py, unchanged; deployed and its 350 s task cancelled through the task API).
from beam import function
import time


@function(timeout=600) # Override default timeout
def timeout():
    import time

    # Without the timeout specified above, this function would timeout at 300s
    time.sleep(350)


if __name__ == "__main__":
    timeout()
