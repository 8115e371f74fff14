"""Change classes: what kind of change a new version is, checked against the files that changed.

A push declares `--change` (weights, data, prompt, safety-policy, quantization, architecture,
tokenizer, config) and `--compat` (compatible, eval-only, breaking). `classify_change` diffs two
manifests (file name → digest), gives each changed file a role by its name (weights, tokenizer,
prompt, config, quantization, safety-policy, adapter, documentation, other) and reports every way
the declaration is contradicted, as a fact policies can deny. It reads no files and trusts only
names and digests; it cannot see inside a changed config.json.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelward.errors import InputError


class ChangeClass(StrEnum):
    WEIGHTS = "weights"
    DATA = "data"
    PROMPT = "prompt"
    SAFETY_POLICY = "safety-policy"
    QUANTIZATION = "quantization"
    ARCHITECTURE = "architecture"
    TOKENIZER = "tokenizer"
    CONFIG = "config"


class Compat(StrEnum):
    COMPATIBLE = "compatible"
    EVAL_ONLY = "eval-only"
    BREAKING = "breaking"


class FileRole(StrEnum):
    WEIGHTS = "weights"
    ADAPTER = "adapter"
    TOKENIZER = "tokenizer"
    PROMPT = "prompt"
    QUANTIZATION = "quantization"
    SAFETY_POLICY = "safety-policy"
    CONFIG = "config"
    DOCUMENTATION = "documentation"
    OTHER = "other"


_COMPAT_RANK = {Compat.COMPATIBLE: 0, Compat.EVAL_ONLY: 1, Compat.BREAKING: 2}

# First match wins; patterns are matched against the lower-cased base name, and a few against the
# whole lower-cased path (those containing "/").
_ROLE_PATTERNS: tuple[tuple[FileRole, tuple[str, ...]], ...] = (
    (
        FileRole.ADAPTER,
        (
            "adapter_model.*",
            "adapter_config.json",
            "*/adapters/*",
            "adapters/*",
            "*lora*.safetensors",
            "*lora*.bin",
        ),
    ),
    (
        FileRole.QUANTIZATION,
        ("quantize_config.json", "quantization_config.json", "quant_config.json", "*.imatrix"),
    ),
    (
        FileRole.PROMPT,
        (
            "chat_template*",
            "*.jinja",
            "*.jinja2",
            "prompt*",
            "system_prompt*",
            "system_instructions*",
            "*/prompts/*",
            "prompts/*",
        ),
    ),
    (
        FileRole.SAFETY_POLICY,
        (
            "safety_policy*",
            "safety-policy*",
            "guardrails*",
            "moderation*",
            "*/policies/*",
            "policies/*",
            "*/safety/*",
            "safety/*",
        ),
    ),
    (
        FileRole.TOKENIZER,
        (
            "tokenizer*",
            "vocab*",
            "merges.txt",
            "*.model",
            "*.tiktoken",
            "special_tokens_map.json",
            "added_tokens.json",
            "spiece.model",
            "sentencepiece*",
        ),
    ),
    (
        FileRole.WEIGHTS,
        (
            "*.safetensors",
            "*.safetensors.index.json",
            "*.bin",
            "*.bin.index.json",
            "*.pt",
            "*.pth",
            "*.ckpt",
            "*.gguf",
            "*.ggml",
            "*.onnx",
            "*.onnx_data",
            "*.h5",
            "*.keras",
            "*.tflite",
            "*.msgpack",
            "*.npz",
            "*.npy",
            "*.pb",
            "*.mlmodel",
            "*.engine",
            "*.plan",
        ),
    ),
    (
        FileRole.CONFIG,
        (
            "config.json",
            "generation_config.json",
            "preprocessor_config.json",
            "processor_config.json",
            "params.json",
            "*.yaml",
            "*.yml",
            "*.toml",
            "*config*.json",
        ),
    ),
    (
        FileRole.DOCUMENTATION,
        (
            "readme*",
            "license*",
            "licence*",
            "notice*",
            "model_card*",
            "modelcard*",
            "*.md",
            "*.txt",
            "*.rst",
            ".gitattributes",
        ),
    ),
)

# Which file roles each declared class may change. Documentation may change under any class.
_ALLOWED_ROLES: Mapping[ChangeClass, frozenset[FileRole]] = {
    ChangeClass.WEIGHTS: frozenset({FileRole.WEIGHTS, FileRole.ADAPTER}),
    ChangeClass.DATA: frozenset({FileRole.WEIGHTS, FileRole.ADAPTER}),
    ChangeClass.PROMPT: frozenset({FileRole.PROMPT}),
    ChangeClass.SAFETY_POLICY: frozenset({FileRole.SAFETY_POLICY}),
    ChangeClass.QUANTIZATION: frozenset({FileRole.WEIGHTS, FileRole.QUANTIZATION, FileRole.CONFIG}),
    ChangeClass.ARCHITECTURE: frozenset(set(FileRole) - {FileRole.DOCUMENTATION}),
    ChangeClass.TOKENIZER: frozenset({FileRole.TOKENIZER, FileRole.CONFIG}),
    ChangeClass.CONFIG: frozenset({FileRole.CONFIG}),
}

# The roles a declared class is expected to touch; if none of them changed, the class is doubtful.
_EXPECTED_ROLES: Mapping[ChangeClass, frozenset[FileRole]] = {
    ChangeClass.WEIGHTS: frozenset({FileRole.WEIGHTS, FileRole.ADAPTER}),
    ChangeClass.DATA: frozenset({FileRole.WEIGHTS, FileRole.ADAPTER}),
    ChangeClass.PROMPT: frozenset({FileRole.PROMPT}),
    ChangeClass.SAFETY_POLICY: frozenset({FileRole.SAFETY_POLICY}),
    ChangeClass.QUANTIZATION: frozenset({FileRole.WEIGHTS, FileRole.QUANTIZATION}),
    ChangeClass.ARCHITECTURE: frozenset({FileRole.WEIGHTS, FileRole.CONFIG}),
    ChangeClass.TOKENIZER: frozenset({FileRole.TOKENIZER}),
    ChangeClass.CONFIG: frozenset({FileRole.CONFIG}),
}

# The least compatibility level a declaration can honestly claim.
_MINIMUM_COMPAT_FOR_CLASS: Mapping[ChangeClass, Compat] = {
    ChangeClass.ARCHITECTURE: Compat.BREAKING,
    ChangeClass.TOKENIZER: Compat.BREAKING,
    ChangeClass.WEIGHTS: Compat.EVAL_ONLY,
    ChangeClass.DATA: Compat.EVAL_ONLY,
    ChangeClass.QUANTIZATION: Compat.EVAL_ONLY,
    ChangeClass.PROMPT: Compat.EVAL_ONLY,
    ChangeClass.SAFETY_POLICY: Compat.EVAL_ONLY,
    ChangeClass.CONFIG: Compat.COMPATIBLE,
}
_MINIMUM_COMPAT_FOR_ROLE: Mapping[FileRole, Compat] = {
    FileRole.TOKENIZER: Compat.BREAKING,
    FileRole.WEIGHTS: Compat.EVAL_ONLY,
    FileRole.ADAPTER: Compat.EVAL_ONLY,
    FileRole.QUANTIZATION: Compat.EVAL_ONLY,
    FileRole.PROMPT: Compat.EVAL_ONLY,
    FileRole.SAFETY_POLICY: Compat.EVAL_ONLY,
    FileRole.CONFIG: Compat.COMPATIBLE,
    FileRole.DOCUMENTATION: Compat.COMPATIBLE,
    FileRole.OTHER: Compat.COMPATIBLE,
}


def parse_change_class(name: str) -> ChangeClass:
    try:
        return ChangeClass(name)
    except ValueError:
        known = "|".join(c.value for c in ChangeClass)
        raise InputError(f"unknown change class {name!r}; use one of {known}") from None


def parse_compat(name: str) -> Compat:
    try:
        return Compat(name)
    except ValueError:
        known = "|".join(c.value for c in Compat)
        raise InputError(f"unknown compatibility {name!r}; use one of {known}") from None


def file_role(path: str) -> FileRole:
    """The role of a bundle file, judged by its (POSIX, relative) path."""
    lowered = path.lower()
    base = lowered.rsplit("/", 1)[-1]
    for role, patterns in _ROLE_PATTERNS:
        for pattern in patterns:
            subject = lowered if "/" in pattern else base
            if fnmatch.fnmatchcase(subject, pattern):
                return role
    return FileRole.OTHER


@dataclass(frozen=True)
class Contradiction:
    code: str
    message: str
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "files": list(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contradiction:
        return cls(code=data["code"], message=data["message"], files=tuple(data["files"]))


@dataclass(frozen=True)
class ChangeReport:
    """The file diff by role and every contradiction with the declared class and compat."""

    declared_class: ChangeClass | None
    declared_compat: Compat | None
    first_version: bool
    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]
    roles: Mapping[str, FileRole]
    contradictions: tuple[Contradiction, ...]

    @property
    def consistent(self) -> bool:
        return not self.contradictions

    def roles_changed(self) -> list[str]:
        return sorted({role.value for role in self.roles.values()})

    def files_by_role(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for name in sorted(self.roles):
            grouped.setdefault(self.roles[name].value, []).append(name)
        return grouped

    def to_fact(self) -> dict[str, Any]:
        """The `change` entry of the facts document."""
        return {
            "class": self.declared_class.value if self.declared_class else None,
            "compat": self.declared_compat.value if self.declared_compat else None,
            "first_version": self.first_version,
            "consistent": self.consistent,
            "roles_changed": self.roles_changed(),
            "files": {
                "added": len(self.added),
                "removed": len(self.removed),
                "modified": len(self.modified),
                "by_role": self.files_by_role(),
            },
            "contradictions": [c.to_dict() for c in self.contradictions],
        }

    def to_dict(self) -> dict[str, Any]:
        return self.to_fact()


def classify_change(
    previous: Mapping[str, str] | None,
    current: Mapping[str, str],
    declared_class: ChangeClass | str | None,
    declared_compat: Compat | str | None,
) -> ChangeReport:
    """Diff two manifests (name → digest) and check the declaration against the diff.

    `previous` None means this is the model's first version: nothing can contradict a declaration
    then, except that one must be given. A missing declaration is itself a contradiction.
    """
    _check_manifest(current, "current manifest")
    change_class = parse_change_class(declared_class) if declared_class else None
    compat = parse_compat(declared_compat) if declared_compat else None
    before = {} if previous is None else _check_manifest(previous, "previous manifest")
    added = tuple(sorted(set(current) - set(before)))
    removed = tuple(sorted(set(before) - set(current)))
    modified = tuple(sorted(n for n in set(before) & set(current) if before[n] != current[n]))
    changed = (*added, *removed, *modified)
    roles = {name: file_role(name) for name in changed}

    contradictions: list[Contradiction] = []
    if change_class is None:
        contradictions.append(Contradiction("class-missing", "no change class was declared"))
    if compat is None:
        contradictions.append(Contradiction("compat-missing", "no compatibility was declared"))
    if previous is not None and change_class is not None:
        contradictions += _class_contradictions(change_class, roles, bool(changed))
    if previous is not None and change_class is not None and compat is not None:
        contradictions += _compat_contradictions(change_class, compat, roles, removed)

    return ChangeReport(
        declared_class=change_class,
        declared_compat=compat,
        first_version=previous is None,
        added=added,
        removed=removed,
        modified=modified,
        roles=roles,
        contradictions=tuple(contradictions),
    )


def _class_contradictions(
    change_class: ChangeClass, roles: Mapping[str, FileRole], anything_changed: bool
) -> list[Contradiction]:
    found: list[Contradiction] = []
    if not anything_changed:
        return [
            Contradiction(
                "no-change", f"declared a {change_class.value} change but no file changed"
            )
        ]
    allowed = _ALLOWED_ROLES[change_class] | {FileRole.DOCUMENTATION}
    outside: dict[FileRole, list[str]] = {}
    for name, role in roles.items():
        if role not in allowed:
            outside.setdefault(role, []).append(name)
    for role in sorted(outside):
        files = tuple(sorted(outside[role]))
        found.append(
            Contradiction(
                f"unexpected-{role.value}",
                f"declared a {change_class.value} change but {role.value} files changed: "
                + ", ".join(files[:5])
                + (f" and {len(files) - 5} more" if len(files) > 5 else ""),
                files,
            )
        )
    expected = _EXPECTED_ROLES[change_class]
    if not any(role in expected for role in roles.values()):
        wanted = ", ".join(sorted(role.value for role in expected))
        found.append(
            Contradiction(
                "expected-change-missing",
                f"declared a {change_class.value} change but no {wanted} file changed",
            )
        )
    return found


def _compat_contradictions(
    change_class: ChangeClass,
    compat: Compat,
    roles: Mapping[str, FileRole],
    removed: tuple[str, ...],
) -> list[Contradiction]:
    found: list[Contradiction] = []
    needed = _MINIMUM_COMPAT_FOR_CLASS[change_class]
    if _COMPAT_RANK[compat] < _COMPAT_RANK[needed]:
        found.append(
            Contradiction(
                "compat-too-low",
                f"a {change_class.value} change is at least {needed.value}, not {compat.value}",
            )
        )
    stricter: dict[FileRole, list[str]] = {}
    for name, role in roles.items():
        role_needs = _MINIMUM_COMPAT_FOR_ROLE[role]
        if _COMPAT_RANK[compat] < _COMPAT_RANK[role_needs]:
            stricter.setdefault(role, []).append(name)
    for role in sorted(stricter):
        files = tuple(sorted(stricter[role]))
        role_needs = _MINIMUM_COMPAT_FOR_ROLE[role]
        found.append(
            Contradiction(
                "compat-too-low-for-files",
                f"{role.value} files changed ({', '.join(files[:5])}), which is at least "
                f"{role_needs.value}, not {compat.value}",
                files,
            )
        )
    if compat is Compat.COMPATIBLE:
        dropped = tuple(n for n in removed if roles.get(n) is not FileRole.DOCUMENTATION)
        if dropped:
            found.append(
                Contradiction(
                    "files-removed",
                    "declared compatible but files were removed: " + ", ".join(dropped[:5]),
                    dropped,
                )
            )
    return found


def _check_manifest(manifest: Any, what: str) -> dict[str, str]:
    if not isinstance(manifest, Mapping):
        raise InputError(f"the {what} must map file names to digests")
    for name, digest in manifest.items():
        if not isinstance(name, str) or not name or not isinstance(digest, str) or not digest:
            raise InputError(f"the {what} has an entry that is not a name and a digest")
    return dict(manifest)
