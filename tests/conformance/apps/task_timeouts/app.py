# Beam docs › Running Functions Remotely › Task Timeouts; the docs show no caller, so a __main__ block prints both results.
from beam import function


# Set a 24 hour timeout
@function(timeout=86400)
def long_timeout():
    return {"hello world"}


# Disable timeouts completely
@function(timeout=-1)
def no_timeout():
    return {"message": "hello world"}


if __name__ == "__main__":
    print(long_timeout.remote())
    print(no_timeout.remote())
