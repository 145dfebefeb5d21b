"""EndpointSpec → Ray Serve deployment options: one pure function, testable without a cluster.

Serve's router backs off and collapses once a replica's ``max_ongoing_requests`` is exceeded (probe §6.2:
333 rps at 4 clients, 16 rps at 32), so replicas accept up to ``max_pending_tasks`` requests and queue
them in-process; the handler itself runs ``workers × concurrent_requests`` at a time.
"""

from __future__ import annotations

from typing import Any

from beamray.specs import ServingSpec

GRACEFUL_SHUTDOWN_S = 1.0


def concurrency(serving: ServingSpec) -> int:
    return serving.workers * serving.concurrent_requests


def deployment_options(serving: ServingSpec, ray_actor_options: dict[str, Any]) -> dict[str, Any]:
    """Serve options: replicas from Beam's autoscaler, idle lifetime from ``keep_warm_seconds``."""
    options: dict[str, Any] = {
        "max_ongoing_requests": max(concurrency(serving), serving.max_pending_tasks),
        "ray_actor_options": ray_actor_options,
        "graceful_shutdown_wait_loop_s": GRACEFUL_SHUTDOWN_S,
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_S * 5,
        "health_check_period_s": 5,
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
    }
    if serving.min_containers == serving.max_containers:
        options["num_replicas"] = serving.max_containers
        return options
    keep_warm = serving.keep_warm_seconds
    options["autoscaling_config"] = {
        "min_replicas": serving.min_containers,
        "max_replicas": serving.max_containers,
        # One replica starts at deploy time so that a failing on_start fails the deploy, not a later request.
        "initial_replicas": max(1, serving.min_containers),
        "target_ongoing_requests": serving.tasks_per_container,
        # Beam adds a container as soon as the queue is deeper than tasks_per_container; a delay here is
        # paid in full by every cold start (Serve waits it out from zero replicas too).
        "upscale_delay_s": 0.0,
        "downscale_delay_s": keep_warm,
        "downscale_to_zero_delay_s": keep_warm,
        "metrics_interval_s": 1.0,
        "look_back_period_s": 2.0,
    }
    return options
