# Beam docs › Public Endpoints › Creating a Public Endpoint (auth.py, unchanged).
from beam import endpoint


@endpoint(authorized=False)  # Disable authentication
def create_public_endpoint():

    print("This API can be invoked without an auth token")
    return {"success": "true"}
