# Beam docs › Keeping Containers Warm › Configuring Keep Warm (unchanged).
from beam import endpoint


# Container stays alive for 5 min before shutting down automatically
@endpoint(keep_warm_seconds=300)
def handler():
    return {}
