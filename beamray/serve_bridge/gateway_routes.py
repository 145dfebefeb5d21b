"""The gateway's view of the registry: which running version an alias URL means.

Loading the registry is a store scan (on Redis a SCAN plus an MGET), so anyone who can send requests must
not be able to make the gateway load it at will: loads run off the event loop, concurrent requests share
the one in flight, and they start at most once per ``MIN_REFRESH_S``. While the store cannot answer,
the last records loaded keep routing (a gateway that never loaded any answers 503). A request is answered from records
at most ``CACHE_S`` old; when those do not know its URL (a version deployed a moment ago) or name a web
version by number (which reaches the gateway only while the ingress catches up or once it was stopped),
it waits for a load that started after it arrived, so what it gets reflects every deploy before it.
"""

from __future__ import annotations

import asyncio
import time

from beamray.exceptions import StoreUnavailableError
from beamray.registry import DeploymentRecord, Registry
from beamray.specs import QUEUED_KINDS, Kind

_KIND_NAMES = frozenset(kind.value for kind in Kind)

CACHE_S = 1.0
MIN_REFRESH_S = 1.0

Found = tuple[DeploymentRecord | None, str, bool]


class Routes:
    """Path → (record, path inside the deployment, public form?)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry or Registry()
        self._records: list[DeploymentRecord] = []
        self._loaded_at = float("-inf")  # when the load behind ``_records`` started (monotonic)
        self._tried_at = float("-inf")  # when the last load started, failed ones too
        self._load: asyncio.Future[None] | None = None
        self.loads = 0  # registry loads so far (the gateway's stats)

    async def resolve(self, path: str) -> Found:
        arrived = time.monotonic()
        found, confirm = _match(await self._since(arrived - CACHE_S), path)
        if confirm:
            found, _ = _match(await self._since(arrived), path)
        return found

    async def _since(self, moment: float) -> list[DeploymentRecord]:
        """The running records from a load that started at ``moment`` or later."""
        while self._loaded_at < moment:
            if self._load is None:
                self._load = asyncio.ensure_future(self._reload())
                self._load.add_done_callback(lambda load: load.cancelled() or load.exception())  # seen
            try:
                await asyncio.shield(self._load)
            except Exception as exc:  # the store is down: what was known still routes
                if self._loaded_at == float("-inf"):
                    raise StoreUnavailableError(f"the deployment registry is unreachable ({exc}); try again") \
                        from None
                return self._records
        return self._records

    async def _reload(self) -> None:
        try:
            await asyncio.sleep(max(0.0, self._tried_at + MIN_REFRESH_S - time.monotonic()))
            started = self._tried_at = time.monotonic()
            self.loads += 1
            records = await asyncio.to_thread(self._registry.records)
            self._records = [r for r in records if r.status == "running"]
            self._loaded_at = started
        finally:
            self._load = None


def _match(records: list[DeploymentRecord], path: str) -> tuple[Found, bool]:
    """What ``path`` resolves to in ``records``, and whether only a newer load may say (see the module)."""
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2 or parts[0] not in _KIND_NAMES:
        return (None, "", False), False
    kind, rest = parts[0], parts[1:]
    if rest[0] in ("id", "public") and len(rest) >= 2:
        matches = [r for r in records if r.kind == kind and r.stub_id == rest[1]]
        record = matches[0] if matches else None
        if record is not None and rest[0] == "public" and record.authorized:
            record = None  # an authorized deployment has no public URL
        return (record, "/" + "/".join(rest[2:]), rest[0] == "public"), record is None
    name, rest = rest[0], rest[1:]
    versions = [r for r in records if r.kind == kind and r.name == name]
    numbered = False
    if rest and rest[0] == "latest":
        rest = rest[1:]
    elif rest and rest[0].startswith("v") and rest[0][1:].isdigit():
        versions = [r for r in versions if r.version == int(rest[0][1:])]
        numbered = kind not in QUEUED_KINDS and kind != Kind.POD  # these live here; a web version passes through
        rest = rest[1:]
    record = versions[-1] if versions else None
    return (record, "/" + "/".join(rest), False), record is None or numbered
