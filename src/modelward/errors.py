"""The one error root of modelward and its typed subclasses.

Domain code raises these; each interface (CLI, HTTP) has exactly one translator that maps them to
an exit code or a status. No error carries an exit code itself.

    ModelwardError
    ├── InputError                 the caller's input is wrong (arguments, files, names, URIs)
    │   ├── PathError              a path is missing, unreadable, a special file, a loop, …
    │   ├── SymlinkError           a symbolic link where none is allowed, or one leaving the model
    │   ├── KeyFormatError         a key or certificate that cannot be read or is of the wrong type
    │   ├── SignatureFormatError   a signature file that is not a well-formed bundle
    │   ├── InvalidNameError       a model/dataset/alias name that breaks the naming rules
    │   ├── InvalidURIError        a URI that is not models:/…, datasets:/… or sha256:…
    │   └── NoteFormatError        a signed note, checkpoint or tlog-proof that is not well-formed
    ├── ChangedDuringReadError     a file changed while it was being hashed
    ├── VerificationError          a definite "no": bytes, digests or signatures do not match
    │   ├── DigestMismatchError    stored or read bytes do not hash to their name
    │   ├── SignatureMismatchError a signature does not verify, or the key is not the signer's
    │   └── ProofError             a Merkle proof or tree does not check out
    │       └── SplitViewError     a log signed two different trees of the same size
    ├── NotFoundError              a model, version, alias, dataset, user or record does not exist
    │   └── RegistryNotFoundError  no registry has been initialised where one was looked for
    ├── ConflictError              the state moved underneath an operation (retry it)
    │   └── StaleSizeError         a witness holds another tree size than the one assumed
    ├── PermissionDeniedError      the actor's role does not allow the operation
    ├── PolicyError                a policy cannot be parsed or compiled
    ├── DeniedError                a gate, scan or check said "no" with reasons
    ├── StorageError               a database or blob store failed (locked, unreachable, full)
    │   └── RateLimitedError       too many requests (or failed sign-ins) for now: try later
    └── DependencyError            an optional extra is not installed (carries the install hint)
"""

from __future__ import annotations


class ModelwardError(Exception):
    """Root of every error modelward raises on purpose."""


class InputError(ModelwardError):
    """The input given to an operation is wrong; nothing was changed."""


class PathError(InputError):
    """A path is missing, unreadable, of the wrong kind, or loops."""


class SymlinkError(InputError):
    """A symbolic link was found where links are refused."""


class KeyFormatError(InputError):
    """A key or certificate cannot be read, or is of an unsupported type."""


class SignatureFormatError(InputError):
    """A signature file is not a well-formed bundle of the expected format."""


class InvalidNameError(InputError):
    """A name breaks the naming rules (separators, control characters, length)."""


class InvalidURIError(InputError):
    """A URI is not of a known form."""


class NoteFormatError(InputError):
    """A signed note, tlog checkpoint or tlog-proof text is not well-formed."""


class ChangedDuringReadError(ModelwardError):
    """A file changed (size or mtime) while it was being read."""


class VerificationError(ModelwardError):
    """A definite "no": something does not match what was signed or recorded."""


class DigestMismatchError(VerificationError):
    """Bytes do not hash to the digest they are stored or recorded under."""


class SignatureMismatchError(VerificationError):
    """A signature does not verify with the given key or trust roots."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof, or a recomputed tree, does not check out."""


class SplitViewError(ProofError):
    """A log signed two checkpoints of the same size with different roots (equivocation)."""


class NotFoundError(ModelwardError):
    """The thing asked for does not exist."""


class RegistryNotFoundError(NotFoundError):
    """No registry exists at the configured location."""


class ConflictError(ModelwardError):
    """The state changed underneath the operation; nothing was written."""


class StaleSizeError(ConflictError):
    """A witness's latest cosigned size is not the one the request assumed; `current_size` says
    what it is, so the caller can send a proof from there."""

    def __init__(self, message: str, current_size: int) -> None:
        super().__init__(message)
        self.current_size = current_size


class PermissionDeniedError(ModelwardError):
    """The acting user's role does not allow this operation."""


class PolicyError(ModelwardError):
    """A policy cannot be parsed, or one of its rules cannot be compiled."""


class DeniedError(ModelwardError):
    """A check decided "no"; `reasons` lists why."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


class StorageError(ModelwardError):
    """A database or blob store failed: locked, unreachable, full or corrupt."""


class RateLimitedError(StorageError):
    """Too many requests, failed authentications or queued jobs from one caller for now."""


class DependencyError(ModelwardError):
    """An optional dependency is missing; the message says what to install."""
