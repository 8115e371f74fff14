"""OCI artifacts for model versions: CNCF ModelPack manifests (model-spec v0.0.7), OCI 1.1
referrer manifests and the referrers tag-schema index, and registry references.

A version becomes one OCI image manifest with artifactType
`application/vnd.cncf.model.manifest.v1+json`, a `application/vnd.cncf.model.config.v1+json`
config and one uncompressed ("raw") layer per file, so each layer's digest is the file's sha256 in
the version's OMS manifest. Signatures, provenance, the ML-BOM and evidence are referrer
manifests whose `subject` is that manifest.

Pure: builds and parses bytes, checks names and digests; no sockets, files or clocks (times are
passed in). Everything parsed here comes from a registry, so every field is checked before use.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from modelward.core.canonical import canonical_json
from modelward.core.manifest import Manifest, path_sort_key
from modelward.errors import InvalidURIError, VerificationError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_JSON).hexdigest()

# CNCF ModelPack model-spec v0.0.7 (specs-go/v1/mediatype.go, annotations.go)
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG_RAW = "application/vnd.cncf.model.weight.config.v1.raw"
DOC_RAW = "application/vnd.cncf.model.doc.v1.raw"
CODE_RAW = "application/vnd.cncf.model.code.v1.raw"
DATASET_RAW = "application/vnd.cncf.model.dataset.v1.raw"
RAW_LAYER_TYPES = frozenset({WEIGHT_RAW, WEIGHT_CONFIG_RAW, DOC_RAW, CODE_RAW, DATASET_RAW})
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_UNTESTED = "org.cncf.model.file.mediatype.untested"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_TITLE = "org.opencontainers.image.title"

# Referrers: the signature is the OMS Sigstore bundle; provenance a DSSE envelope.
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
EVIDENCE = "application/vnd.modelward.evidence.v1"
ANNOTATION_PREDICATE = "dev.sigstore.bundle.predicateType"
ANNOTATION_INTOTO_PREDICATE = "in-toto.io/predicate-type"
ANNOTATION_ROOT_DIGEST = "dev.modelward.root-digest"
ANNOTATION_URI = "dev.modelward.uri"

MAX_MANIFEST_BYTES = 4 << 20  # the size registries accept for a manifest
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(
    r"(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?"
)

_WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".onnx", ".h5", ".keras",
    ".msgpack", ".npz", ".npy", ".pkl", ".pickle", ".joblib", ".tflite", ".pb", ".mlmodel",
    ".llamafile", ".nemo", ".engine", ".plan", ".ot",
)  # fmt: skip
_CONFIG_SUFFIXES = (
    ".json", ".yaml", ".yml", ".toml", ".txt", ".model", ".tiktoken", ".jinja", ".jinja2",
    ".vocab", ".merges", ".ini", ".cfg", ".proto", ".prototxt",
)  # fmt: skip
_DOC_SUFFIXES = (".md", ".rst", ".pdf", ".html", ".png", ".jpg", ".jpeg", ".svg", ".gif")
_DOC_NAMES = ("readme", "license", "licence", "notice", "copying", "model_card", "modelcard")
_CODE_SUFFIXES = (".py", ".sh", ".ipynb", ".js", ".ts", ".go", ".rs", ".c", ".cc", ".cpp", ".h")
_FORMATS = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".pt": "pt",
    ".pth": "pt",
    ".bin": "pt",
    ".h5": "keras",
    ".keras": "keras",
}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise VerificationError(f"{what}: {value!r} is not a sha256 digest")
    return value


@dataclass(frozen=True)
class Reference:
    """`REGISTRY/REPOSITORY:TAG` or `REGISTRY/REPOSITORY@sha256:HEX` (the registry explicit)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """The tag or digest, as used in `/v2/<name>/manifests/<reference>`."""
        value = self.digest or self.tag
        assert value is not None
        return value

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"{self.registry}/{self.repository}{tail}"


def parse_reference(text: str) -> Reference:
    """Parse an OCI reference; the registry host must be given (no implicit Docker Hub)."""
    where = f"OCI reference {text!r}"
    if not text or len(text) > 4096 or any(ord(c) < 33 for c in text):
        raise InvalidURIError(f"{where}: empty or contains spaces or control characters")
    host, slash, rest = text.partition("/")
    if (
        not slash
        or not _HOST.fullmatch(host)
        or not ("." in host or ":" in host or host == "localhost")
    ):
        raise InvalidURIError(
            f"{where}: give the registry host first, e.g. 127.0.0.1:5000/models/llama:1"
        )
    digest = tag = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise InvalidURIError(f"{where}: the digest must be sha256:<64 lowercase hex>")
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise InvalidURIError(f"{where}: {tag!r} is not a valid tag")
    if not _REPOSITORY.fullmatch(rest) or len(rest) > 255:
        raise InvalidURIError(
            f"{where}: {rest!r} is not a repository name (lowercase letters, digits, "
            "'.', '_', '-' and '/')"
        )
    if digest is None and tag is None:
        raise InvalidURIError(f"{where}: give a tag (:TAG) or a digest (@sha256:…)")
    return Reference(host, rest, None if digest else tag, digest)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @classmethod
    def from_dict(cls, data: Any, what: str) -> Descriptor:
        if not isinstance(data, dict):
            raise VerificationError(f"{what}: a descriptor is not an object")
        media_type, size = data.get("mediaType"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise VerificationError(f"{what}: a descriptor has no mediaType")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise VerificationError(f"{what}: a descriptor has no valid size")
        annotations = data.get("annotations", {})
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise VerificationError(f"{what}: annotations must map strings to strings")
        artifact_type = data.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise VerificationError(f"{what}: artifactType is not a string")
        return cls(
            media_type,
            check_digest(data.get("digest"), what),
            size,
            dict(annotations),
            artifact_type,
        )


EMPTY_CONFIG = Descriptor(OCI_EMPTY, EMPTY_DIGEST, len(EMPTY_JSON))


def classify(name: str, size: int) -> tuple[str, bool]:
    """The ModelPack raw layer media type for a file, and whether the guess is untested (the
    name matched none of the known kinds)."""
    base = name.rsplit("/", 1)[-1].lower()
    suffix = "." + base.rsplit(".", 1)[-1] if "." in base else ""
    if base.startswith(_DOC_NAMES) or suffix in _DOC_SUFFIXES:
        return DOC_RAW, False
    if suffix in _WEIGHT_SUFFIXES:
        return WEIGHT_RAW, False
    if suffix in _CODE_SUFFIXES:
        return CODE_RAW, False
    if suffix in _CONFIG_SUFFIXES:
        return WEIGHT_CONFIG_RAW, False
    return (WEIGHT_RAW if size >= (1 << 20) else WEIGHT_CONFIG_RAW), True


def safe_file_path(value: object, what: str = "layer") -> str:
    """A relative POSIX path that stays inside the output folder, or VerificationError."""
    if not isinstance(value, str) or not value:
        raise VerificationError(f"{what}: no {ANNOTATION_FILEPATH} annotation")
    parts = value.split("/")
    if (
        value.startswith("/")
        or "\\" in value
        or len(value) > 4096
        or any(ord(c) < 32 or c == "\x7f" for c in value)
        or any(part in ("", ".", "..") or len(part) > 255 for part in parts)
        or re.match(r"^[A-Za-z]:", value)
    ):
        raise VerificationError(
            f"{what}: file path {value!r} is not a plain relative path inside the model "
            "(absolute, '..', empty or '.' parts, backslashes and control characters are refused)"
        )
    return value


@dataclass(frozen=True)
class ModelFile:
    """One file of a version as it goes into a ModelPack layer."""

    path: str
    digest: str  # hex sha256
    size: int


def model_config(
    name: str, version: str, created: str, files: list[ModelFile], description: str = ""
) -> bytes:
    """The ModelPack config (`application/vnd.cncf.model.config.v1+json`), canonical JSON."""
    formats = {_FORMATS[s] for f in files for s in _FORMATS if f.path.lower().endswith(s)}
    config: dict[str, Any] = {}
    if len(formats) == 1:
        config["format"] = formats.pop()
    descriptor: dict[str, Any] = {"name": name, "version": version, "createdAt": created}
    if description:
        descriptor["description"] = description
    return canonical_json(
        {
            "descriptor": descriptor,
            "config": config,
            "modelfs": {"type": "layers", "diffIds": [f"sha256:{f.digest}" for f in files]},
        }
    )


def model_layers(files: list[ModelFile], created: str) -> list[Descriptor]:
    """One raw layer per file, in manifest order, annotated as ModelPack says."""
    layers = []
    for entry in sorted(files, key=lambda f: path_sort_key(f.path)):
        safe_file_path(entry.path, entry.path)
        media_type, untested = classify(entry.path, entry.size)
        metadata = {
            "name": entry.path.rsplit("/", 1)[-1],
            "mode": 0o644,
            "uid": 0,
            "gid": 0,
            "size": entry.size,
            "mtime": created,
            "typeflag": ord("0"),
        }
        layers.append(
            Descriptor(
                media_type,
                f"sha256:{entry.digest}",
                entry.size,
                {
                    ANNOTATION_FILEPATH: entry.path,
                    ANNOTATION_FILE_METADATA: json.dumps(metadata, sort_keys=True),
                    ANNOTATION_UNTESTED: "true" if untested else "false",
                    ANNOTATION_TITLE: entry.path,
                },
            )
        )
    return layers


def image_manifest(
    config: Descriptor,
    layers: list[Descriptor],
    *,
    artifact_type: str,
    annotations: dict[str, str] | None = None,
    subject: Descriptor | None = None,
) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    if subject is not None:
        document["subject"] = Descriptor(OCI_MANIFEST, subject.digest, subject.size).to_dict()
    if annotations:
        document["annotations"] = dict(annotations)
    return canonical_json(document)


@dataclass(frozen=True)
class ParsedManifest:
    digest: str
    size: int
    artifact_type: str | None
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None
    annotations: dict[str, str]


def parse_manifest(data: bytes, expected_digest: str, what: str = "manifest") -> ParsedManifest:
    """An OCI image manifest fetched by digest: its bytes must hash to that digest."""
    actual = digest_of(data)
    if actual != expected_digest:
        raise VerificationError(
            f"{what}: the registry sent bytes hashing to {actual}, not {expected_digest}"
        )
    document = _json_object(data, what)
    if document.get("schemaVersion") != 2 or document.get("mediaType") != OCI_MANIFEST:
        raise VerificationError(f"{what}: not an OCI image manifest (schemaVersion 2)")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise VerificationError(f"{what}: no layers list")
    subject = document.get("subject")
    annotations = document.get("annotations", {})
    if not isinstance(annotations, dict):
        raise VerificationError(f"{what}: annotations are not an object")
    artifact_type = document.get("artifactType")
    return ParsedManifest(
        digest=actual,
        size=len(data),
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        config=Descriptor.from_dict(document.get("config"), f"{what} config"),
        layers=tuple(Descriptor.from_dict(layer, f"{what} layer") for layer in layers),
        subject=Descriptor.from_dict(subject, f"{what} subject") if subject is not None else None,
        annotations={str(k): str(v) for k, v in annotations.items()},
    )


def model_files_of(parsed: ParsedManifest) -> list[ModelFile]:
    """The files a ModelPack manifest lays out: raw layers with safe, distinct paths."""
    if parsed.artifact_type != MODEL_ARTIFACT or parsed.config.media_type != MODEL_CONFIG:
        raise VerificationError(
            f"{parsed.digest} is not a ModelPack model (artifactType {parsed.artifact_type!r})"
        )
    files: list[ModelFile] = []
    seen: set[str] = set()
    for layer in parsed.layers:
        if layer.media_type not in RAW_LAYER_TYPES:
            raise VerificationError(
                f"layer {layer.digest} has media type {layer.media_type!r}; only the ModelPack "
                "raw (one file per layer) types are pulled"
            )
        path = safe_file_path(layer.annotations.get(ANNOTATION_FILEPATH), f"layer {layer.digest}")
        if path.lower() in seen:
            raise VerificationError(f"two layers are written to {path!r}")
        seen.add(path.lower())
        files.append(ModelFile(path, layer.digest.removeprefix("sha256:"), layer.size))
    folders = {
        "/".join(f.path.lower().split("/")[:i])
        for f in files
        for i in range(1, len(f.path.split("/")))
    }
    clash = sorted(folders & seen)
    if clash:
        raise VerificationError(f"{clash[0]!r} is both a file and a folder of the model")
    return files


def check_against_signed(files: list[ModelFile], signed: Manifest) -> None:
    """Every layer must be a file of the signed manifest with its digest (and its size, where the
    signature gives one), and every signed file a layer; VerificationError naming the first
    differences otherwise."""
    if signed.serialization.hash_type != "sha256":
        raise VerificationError(
            f"the signature digests files with {signed.serialization.hash_type}; OCI layer "
            "digests are sha256, so they cannot be checked against it before downloading"
        )
    layers = {f.path: f.digest for f in files}
    expected = signed.digests()
    problems = [
        f"layer {p!r} is not in the signed manifest" for p in sorted(set(layers) - set(expected))
    ]
    problems += [f"signed file {p!r} has no layer" for p in sorted(set(expected) - set(layers))]
    problems += [
        f"layer {p!r} has digest sha256:{layers[p]}, the signature says sha256:{expected[p]}"
        for p in sorted(set(layers) & set(expected))
        if layers[p] != expected[p]
    ]
    # OMS resources carry no size (model_signing writes none); when a signature does give one,
    # the layer must have it, so a download is bounded by what was signed
    sizes = {f.path: f.size for f in files}
    problems += [
        f"layer {f.name!r} is {sizes[f.name]} bytes, the signature says {f.size} bytes"
        for f in signed.files
        if f.size is not None and f.name in sizes and sizes[f.name] != f.size
    ]
    if problems:
        raise VerificationError(
            "the OCI manifest does not match the signed manifest: " + "; ".join(problems[:5])
        )


def referrers_index(manifests: list[Descriptor]) -> bytes:
    """An image index listing referrers (the referrers API's answer and the fallback tag)."""
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [m.to_dict() for m in manifests],
        }
    )


def parse_index(data: bytes, what: str) -> list[Descriptor]:
    document = _json_object(data, what)
    if document.get("schemaVersion") != 2 or document.get("mediaType", OCI_INDEX) != OCI_INDEX:
        raise VerificationError(f"{what}: not an OCI image index")
    manifests = document.get("manifests", [])
    if not isinstance(manifests, list):
        raise VerificationError(f"{what}: manifests is not a list")
    return [Descriptor.from_dict(m, what) for m in manifests]


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: `sha256-<hex>` names the index of `digest`'s referrers."""
    algorithm, _, hex_digest = check_digest(digest, "subject").partition(":")
    return f"{algorithm}-{hex_digest}"


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise VerificationError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError(f"{what}: not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise VerificationError(f"{what}: not a JSON object")
    return document
