# Beam docs › Running Functions Remotely › Running Tasks in the Background; range(100) shrunk to range(3), and the result is printed.
import time
from beam import function


# Run the function in the background
@function(headless=True)
def handler():
    for i in range(3):
        print(i)
        time.sleep(1)

    return {"message": "This is running in the background"}


if __name__ == "__main__":
    print(handler.remote())
