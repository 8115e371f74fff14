"""fsck: orphan blobs (no version, release or dataset references them), half-finished writes
and registrations of pending pushes that are no longer running; with repair, their removal.

Repair needs the admin role (checked here, so every interface gets it) and a grace of at least
`MIN_REPAIR_GRACE` seconds; blobs a live pending push may still reference are never removed (see
`modelward.services.pending_writes` for the protocol and what it cannot see).
"""

from __future__ import annotations

import time

from modelward.core.roles import Role
from modelward.errors import InputError, PermissionDeniedError
from modelward.services.context import RegistryContext
from modelward.services.pending_writes import (
    MIN_REPAIR_GRACE,
    new_live_writer,
    pending_writers,
    spared_since,
)
from modelward.services.registry import CheckReport
from modelward.services.users import role_of
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.provenance_repository import ProvenanceRepository
from modelward.storage.metadata.registry_repository import RegistryRepository


def check_blobs(
    ctx: RegistryContext, actor: str, *, repair: bool = False, grace_seconds: float = 3600.0
) -> CheckReport:
    """Find (and with `repair` remove) orphan blobs and half-finished writes.

    Repair needs the admin role and a grace of at least MIN_REPAIR_GRACE seconds. Blobs a
    live pending writer may still reference are never removed (see `pending_writes`)."""
    if grace_seconds < 0 or grace_seconds != grace_seconds:
        raise InputError(f"the grace period must be 0 seconds or more, not {grace_seconds}")
    if repair:
        with ctx.database.read() as conn:
            role = role_of(conn, actor)
        if role != Role.ADMIN:
            raise PermissionDeniedError(
                f"{actor!r} (with role {role.value}) may not repair the registry "
                "(fsck --repair removes blobs); this needs the admin role"
            )
        if grace_seconds < MIN_REPAIR_GRACE:
            raise InputError(
                f"fsck --repair leaves blobs and temporary files younger than "
                f"{MIN_REPAIR_GRACE:g} seconds alone (a write may still be using them); "
                f"--grace must be at least {MIN_REPAIR_GRACE:g}, not {grace_seconds:g}"
            )
    report = CheckReport()
    now = time.time()
    # Writers first, references second: a writer that finished in between has committed.
    writers = pending_writers(ctx.blobs, now)
    since = spared_since(writers)
    with ctx.database.read() as conn:
        referenced = RegistryRepository(conn).referenced_digests()
        referenced |= GateRepository(conn).referenced_digests()
        referenced |= ProvenanceRepository(conn).dataset_digests()
    orphans = []
    seen_at: dict[str, float | None] = {}
    spared = []
    for digest in sorted(d for d in ctx.blobs.list_digests() if d not in referenced):
        stored = ctx.blobs.modified_at(digest)
        if since is not None and (stored is None or stored >= since):
            spared.append(digest)  # a live push may reference it when it commits
            continue
        # A push stores blobs before its transaction commits: leave young ones alone.
        if grace_seconds > 0 and (stored is None or now - stored < grace_seconds):
            continue
        orphans.append(digest)
        seen_at[digest] = stored
    incomplete = ctx.blobs.list_incomplete(grace_seconds)
    dead = [w for w in writers if not w.alive]
    report.details = {
        "orphan_blobs": orphans,
        "incomplete_writes": incomplete,
        "referenced_blobs": len(referenced),
        "pending_pushes": [w.to_dict() for w in writers if w.alive],
        "spared_for_pending_pushes": spared,
        "dead_pending_pushes": [w.token for w in dead],
        "grace_seconds": grace_seconds,
        "repaired": repair,
    }
    report.problems = [f"orphan blob {d}" for d in orphans]
    report.problems += [f"half-finished write {name}" for name in incomplete]
    report.problems += [f"pending push {w.token} is no longer running" for w in dead]
    if repair:
        known = {w.token for w in writers}
        removed = []
        for digest in orphans:
            if new_live_writer(ctx.blobs, known, time.time()):
                break  # a push started meanwhile and may be re-storing this very blob
            if ctx.blobs.modified_at(digest) != seen_at[digest]:
                continue  # re-stored since: a push is about to reference it
            ctx.blobs.remove_blob(digest)
            removed.append(digest)
        kept = [d for d in orphans if d not in removed]
        report.details["kept_for_new_pushes"] = kept
        report.problems = [p for p in report.problems if p.removeprefix("orphan blob ") not in kept]
        ctx.blobs.remove_incomplete(grace_seconds)
        for writer in dead:
            ctx.blobs.clear_pending(writer.token)
    return report
