"""The Ray side of beamray: consumes specs, never Beam's raw arguments."""
