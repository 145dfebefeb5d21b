# Beam docs › Running Functions Remotely › Passing Function Args (unchanged).
from beam import function

@function()
def greet(name: str):
    return f"Hello {name}"

if __name__ == "__main__":
    print(greet.remote("World"))  # "Hello World"
