# Docs: Endpoints, deployed as `beamray deploy sub/app.py:handler` from the project's parent folder.
from beam import endpoint
from helpers import answer


@endpoint(name="from-parent", cpu=0.1)
def handler(**inputs):
    return {"answer": answer()}
