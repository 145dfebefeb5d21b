# Beam docs › Remote vs. Local Environment › Use env.is_remote(); torch and pandas are not installed here (only numpy is), and a function plus a __main__ block are added so the check runs on both sides.
from beam import env, function


if env.is_remote():
    import numpy


@function()
def where():
    return env.is_remote()


if __name__ == "__main__":
    print(where.remote(), env.is_remote())
