# Docs: Parallelizing Functions: .map over 200 inputs, while the test kills one of the nodes.
import json
import time

from beam import function


@function(cpu=1, memory="3584Mi")  # cpu nodes only
def slow_square(x):
    time.sleep(0.25)
    return x * x


if __name__ == "__main__":
    print(json.dumps(list(slow_square.map(range(200)))))
