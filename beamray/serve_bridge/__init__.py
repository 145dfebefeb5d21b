"""The Ray Serve side of beamray: web deployments and the HTTP gateway. Only this package imports ``ray.serve``."""
