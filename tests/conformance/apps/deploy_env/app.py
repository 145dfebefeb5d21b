# Beam docs › Integrate into CI/CD › Deploying to Different Environments (app.py, unchanged).
from beam import endpoint
import os

@endpoint(name=f'app-{os.getenv("BEAM_DEPLOY_ENV", "staging")}')
def handler():
  return {}
