# Docs: Distributed Maps (the Map example of Beam's "Queues and Maps" pages).
from beam import Map, function

scores = Map(name="scores")


@function(cpu=0.1)
def record(player: str, points: int):
    scores[player] = points


if __name__ == "__main__":
    list(record.map([("ada", 3), ("grace", 5)]))
    print(scores["ada"], scores["grace"])
    print(sorted(scores))
    del scores["ada"]
    print(len(scores))
