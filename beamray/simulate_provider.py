"""The node provider of ``beamray cluster up --simulate``: Ray's fake multi-node provider, plus node memory.

Ray's autoscaler (in the head's monitor process) loads this class by its path (provider type
``external``). Each node it creates is a raylet on this machine with the node type's logical resources.
Ray's own provider passes every resource but CPU, GPU and object store memory as a custom resource,
and Ray refuses ``memory`` as one; a KubeRay group always has memory (its Pod's limit), so this
provider hands it over the way Ray's autoscaler sets a real node's resources: the override variable.
"""

from __future__ import annotations

import json
from typing import Any

from beamray import ray_private
from beamray.runtime.worker import environment

FakeMultiNodeProvider, FAKE_HEAD_NODE_ID = ray_private.fake_multinode_provider()



class SimulatedNodeProvider(FakeMultiNodeProvider):  # type: ignore[misc, valid-type]
    """Ray's ``FakeMultiNodeProvider`` whose nodes also advertise the node type's ``memory`` and carry its
    name as the ``ray.io/node-group`` label, as KubeRay's Pods do (``RAY_NODE_TYPE_NAME``)."""

    def _create_node_with_resources_and_labels(self, node_config: dict[str, Any], tags: dict[str, str],
                                               count: int, resources: dict[str, Any],
                                               labels: dict[str, str]) -> None:
        rest = {key: value for key, value in resources.items() if key != "memory"}
        memory = {"memory": resources["memory"]} if "memory" in resources else {}
        settings = {ray_private.resources_override_variable(): json.dumps(memory),
                    ray_private.NODE_TYPE_NAME_VARIABLE: tags[ray_private.NODE_TYPE_TAG]}
        with self.lock, environment(settings):
            super()._create_node_with_resources_and_labels(node_config, tags, count, rest, labels)
