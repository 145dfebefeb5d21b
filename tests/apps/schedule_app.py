"""An unchanged Beam schedule (every two seconds, croniter's seconds field) for the tests."""

from beamray import schedule


@schedule(when="* * * * * */2", name="ticker", cpu=0.1)
def ticker():
    return {"tick": True}
