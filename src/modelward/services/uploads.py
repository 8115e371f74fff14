"""Which stored blobs a caller may name in a push.

Blobs are stored once by digest and shared by every model, so a digest alone must not let
anyone use bytes they do not hold: a caller who could name another model's file by its digest
(printed in manifests, evidence bundles and OCI manifests) would push it into a model of their
own and pull it from there. A caller may name a blob only if they sent its bytes themselves (the
server hashed them: an upload claim), or if it is a file of a version of a model they may view
(they could pull it anyway). Whether a blob exists is answered by the same rule, so existence
says nothing of other models either.
"""

from __future__ import annotations

from modelward.core.principal import Principal
from modelward.core.roles import Action
from modelward.errors import PermissionDeniedError
from modelward.services.access import authorise
from modelward.services.context import RegistryContext, utc_now
from modelward.storage.metadata.ledger_repository import format_time


class UploadService:
    def __init__(self, context: RegistryContext, principal: Principal) -> None:
        self.ctx = context
        self.principal = principal

    def claim(self, digest: str) -> None:
        """Record that the caller sent bytes hashing to `digest` (the server checked them)."""
        from modelward.storage.metadata.server_repository import UploadClaims

        with self.ctx.database.transaction() as conn:
            UploadClaims(conn).record(digest, self.principal.name, format_time(utc_now()))

    def held(self, digest: str) -> bool:
        """Whether the blob is stored and the caller may name it (HEAD /uploads/{digest})."""
        return not self.not_held([digest])

    def not_held(self, digests: list[str]) -> list[str]:
        """Those of `digests` that are not stored, or that the caller may not name."""
        from modelward.storage.metadata.server_repository import UploadClaims

        wanted = sorted(set(digests))
        with self.ctx.database.read() as conn:
            claims = UploadClaims(conn)
            mine = claims.claimed(self.principal.name, wanted)
            rest = [d for d in wanted if d not in mine]
            holding = claims.models_holding(rest) if rest else {}
        viewable: dict[str, bool] = {}

        def may_view(model: str) -> bool:
            if model not in viewable:
                try:
                    authorise(self.ctx, self.principal, Action.VIEW, model=model)
                    viewable[model] = True
                except PermissionDeniedError:
                    viewable[model] = False
            return viewable[model]

        refused = {d for d in rest if not any(may_view(m) for m in sorted(holding.get(d, ())))}
        blobs = self.ctx.blobs
        return [d for d in digests if d in refused or not blobs.exists(d)]
