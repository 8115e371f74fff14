"""Which stored blobs a caller may name in a push.

Blobs are stored once by digest and shared by every model, so a digest alone must not let
anyone use bytes they do not hold: a caller who could name another model's file by its digest
(printed in manifests, evidence bundles and OCI manifests) would push it into a model of their
own and pull it from there. A caller may name a blob only if

- they sent its bytes themselves, with a credential of the same reach: the server hashed them
  and recorded an upload claim for the user and the token's model pattern (a token limited to
  `team-b-*` cannot use bytes its user sent with an unlimited token, or with one limited to
  `team-a-*`; an unlimited token may use all of its user's claims), sealed with a key only
  servers hold, so a claim written into the database by anyone else counts for nothing; or
- it is a file of a version of a model they may view (they could pull it anyway), by that
  version's manifest after the version row is checked against its ledger event.

Whether a blob exists is answered by the same rule, so existence says nothing of other models.
"""

from __future__ import annotations

from modelward.core.principal import Principal
from modelward.core.roles import Action
from modelward.errors import ModelwardError, PermissionDeniedError
from modelward.services.access import authorise
from modelward.services.context import RegistryContext, utc_now
from modelward.services.row_seals import derived_key, seal, seal_ok
from modelward.storage.metadata.ledger_repository import format_time

_CLAIM_SEAL = b"modelward upload claim v1"
_VERSIONS_PER_DIGEST = 20  # versions looked at per blob that the caller did not send


def _scope(principal: Principal) -> str:
    return principal.model_pattern or ""


class UploadService:
    def __init__(self, context: RegistryContext, principal: Principal) -> None:
        self.ctx = context
        self.principal = principal
        self._key = derived_key(context, _CLAIM_SEAL)

    def _mac(self, digest: str, user: str, scope: str) -> str:
        return seal(self._key, [digest, user, scope])

    def claim(self, digest: str) -> None:
        """Record that the caller sent bytes hashing to `digest` (the server checked them)."""
        from modelward.storage.metadata.server_repository import UploadClaim, UploadClaims

        user, scope = self.principal.name, _scope(self.principal)
        record = UploadClaim(digest, user, scope, self._mac(digest, user, scope))
        with self.ctx.database.transaction() as conn:
            UploadClaims(conn).record(record, format_time(utc_now()))

    def held(self, digest: str) -> bool:
        """Whether the blob is stored and the caller may name it (HEAD /uploads/{digest})."""
        return not self.not_held([digest])

    def not_held(self, digests: list[str]) -> list[str]:
        """Those of `digests` that are not stored, or that the caller may not name."""
        from modelward.services.registry import check_version_row
        from modelward.storage.metadata.registry_repository import RegistryRepository
        from modelward.storage.metadata.server_repository import UploadClaims

        wanted = sorted(set(digests))
        scope = _scope(self.principal)
        allowed: set[str] = set()
        with self.ctx.database.read() as conn:
            claims = UploadClaims(conn)
            for found in claims.of_user(self.principal.name, wanted):
                reach = scope == "" or found.scope == scope
                if reach and seal_ok(self._key, [found.digest, found.user, found.scope], found.mac):
                    allowed.add(found.digest)
            rest = [d for d in wanted if d not in allowed]
            holding = claims.versions_holding(rest, _VERSIONS_PER_DIGEST) if rest else {}
            repo = RegistryRepository(conn)
            for digest in rest:
                for model, number in holding.get(digest, []):
                    if not self._may_view(model):
                        continue
                    try:
                        record = check_version_row(repo, repo.version(model, number))
                    except ModelwardError:
                        continue  # a row that fails its ledger check vouches for nothing
                    if digest in {f.digest for f in record.manifest().files}:
                        allowed.add(digest)
                        break
        blobs = self.ctx.blobs
        return [d for d in digests if d not in allowed or not blobs.exists(d)]

    def _may_view(self, model: str) -> bool:
        try:
            authorise(self.ctx, self.principal, Action.VIEW, model=model)
        except PermissionDeniedError:
            return False
        return True
