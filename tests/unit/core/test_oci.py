"""core.oci: references, ModelPack layers and config (validated with the spec's own JSON schema),
and the checks a pulled manifest must pass before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from modelward.core import oci
from modelward.core.manifest import FileDigest, Manifest, Serialization
from modelward.errors import InvalidURIError, VerificationError

SCHEMA = Path(__file__).resolve().parents[2] / "fixtures" / "modelpack" / "config-schema.json"
A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/models/llama:v1", ("127.0.0.1:5000", "models/llama", "v1", None)),
        ("localhost/x@sha256:" + A, ("localhost", "x", None, "sha256:" + A)),
        ("ghcr.io/org/team/model:1.0-rc_1", ("ghcr.io", "org/team/model", "1.0-rc_1", None)),
        ("[::1]:5000/m:t", ("[::1]:5000", "m", "t", None)),
    ],
)
def test_references_parse(text: str, expected: tuple[object, ...]) -> None:
    ref = oci.parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "models/llama:v1",  # no registry host
        "127.0.0.1:5000/models/llama",  # neither tag nor digest
        "127.0.0.1:5000/Models/llama:v1",  # upper case repository
        "127.0.0.1:5000/m@sha256:abc",  # short digest
        "127.0.0.1:5000/m:" + "t" * 200,  # tag too long
        "127.0.0.1:5000/m:v1 extra",
        "127.0.0.1:5000/../m:v1",
    ],
)
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidURIError):
        oci.parse_reference(text)


def test_layers_carry_the_file_digests_and_modelpack_annotations() -> None:
    files = [oci.ModelFile("tokenizer/tokenizer.json", B, 10), oci.ModelFile("model.gguf", A, 9)]
    layers = oci.model_layers(files, "2026-01-01T00:00:00Z")
    assert [x.annotations[oci.ANNOTATION_FILEPATH] for x in layers] == [
        "model.gguf",
        "tokenizer/tokenizer.json",
    ]
    assert [x.media_type for x in layers] == [oci.WEIGHT_RAW, oci.WEIGHT_CONFIG_RAW]
    assert [x.digest for x in layers] == ["sha256:" + A, "sha256:" + B]
    metadata = json.loads(layers[1].annotations[oci.ANNOTATION_FILE_METADATA])
    assert metadata == {
        "name": "tokenizer.json",
        "mode": 0o644,
        "uid": 0,
        "gid": 0,
        "size": 10,
        "mtime": "2026-01-01T00:00:00Z",
        "typeflag": ord("0"),
    }
    assert layers[0].annotations[oci.ANNOTATION_UNTESTED] == "false"


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("README.md", 10, (oci.DOC_RAW, False)),
        ("LICENSE", 10, (oci.DOC_RAW, False)),
        ("model-00001-of-00002.safetensors", 10, (oci.WEIGHT_RAW, False)),
        ("tokenizer.model", 10, (oci.WEIGHT_CONFIG_RAW, False)),
        ("modeling_custom.py", 10, (oci.CODE_RAW, False)),
        ("weights.dat", 2 << 20, (oci.WEIGHT_RAW, True)),
        ("notes", 10, (oci.WEIGHT_CONFIG_RAW, True)),
    ],
)
def test_classification(name: str, size: int, expected: tuple[str, bool]) -> None:
    assert oci.classify(name, size) == expected


def test_the_config_is_valid_under_the_modelpack_schema() -> None:
    files = [oci.ModelFile("model.safetensors", A, 9), oci.ModelFile("config.json", B, 3)]
    config = json.loads(oci.model_config("llama", "3", "2026-01-01T00:00:00.5Z", files, "tiny"))
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(config)
    assert config["modelfs"]["diffIds"] == ["sha256:" + A, "sha256:" + B]
    assert config["config"] == {"format": "safetensors"}
    with pytest.raises(jsonschema.ValidationError):  # the schema does check what we send
        jsonschema.Draft202012Validator(schema).validate({**config, "extra": 1})


def _parsed(
    layers: list[dict[str, object]], artifact: str = oci.MODEL_ARTIFACT
) -> oci.ParsedManifest:
    document = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "artifactType": artifact,
        "config": {"mediaType": oci.MODEL_CONFIG, "digest": "sha256:" + A, "size": 2},
        "layers": layers,
    }
    data = json.dumps(document).encode()
    return oci.parse_manifest(data, oci.digest_of(data))


def _layer(path: str, digest: str = A, media_type: str = oci.WEIGHT_RAW) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + digest,
        "size": 1,
        "annotations": {oci.ANNOTATION_FILEPATH: path},
    }


@pytest.mark.parametrize(
    "path",
    ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a/.", "C:evil", "a\\b", "a\x00b", ""],
)
def test_unsafe_file_paths_are_refused(path: str) -> None:
    with pytest.raises(VerificationError):
        oci.model_files_of(_parsed([_layer(path)]))


@pytest.mark.parametrize(
    ("layers", "fragment"),
    [
        ([_layer("a"), _layer("A", B)], "two layers"),
        ([_layer("a"), _layer("a/b", B)], "both a file and a folder"),
        ([_layer("a", media_type="application/vnd.cncf.model.weight.v1.tar")], "raw"),
    ],
)
def test_layouts_that_cannot_be_written_faithfully_are_refused(
    layers: list[dict[str, object]], fragment: str
) -> None:
    with pytest.raises(VerificationError, match=fragment):
        oci.model_files_of(_parsed(layers))


def test_only_modelpack_artifacts_are_pulled() -> None:
    with pytest.raises(VerificationError, match="not a ModelPack model"):
        oci.model_files_of(_parsed([_layer("a")], artifact="application/vnd.example+json"))


def test_a_layer_size_must_be_the_size_the_signature_gives() -> None:
    signed = Manifest("m", (FileDigest("a", "sha256", A, 5), FileDigest("b", "sha256", B)))
    oci.check_against_signed([oci.ModelFile("a", A, 5), oci.ModelFile("b", B, 9)], signed)
    with pytest.raises(VerificationError, match="the signature says 5 bytes"):
        oci.check_against_signed([oci.ModelFile("a", A, 10**12), oci.ModelFile("b", B, 9)], signed)


def test_a_manifest_must_hash_to_the_digest_asked_for() -> None:
    with pytest.raises(VerificationError, match="hashing to"):
        oci.parse_manifest(b'{"schemaVersion": 2}', "sha256:" + A)


def test_layers_must_be_exactly_the_signed_files() -> None:
    signed = Manifest("m", (FileDigest("a", "sha256", A), FileDigest("b", "sha256", B)))
    oci.check_against_signed([oci.ModelFile("a", A, 1), oci.ModelFile("b", B, 1)], signed)
    for files, fragment in [
        ([oci.ModelFile("a", A, 1)], "signed file 'b' has no layer"),
        ([*[oci.ModelFile("a", A, 1), oci.ModelFile("b", B, 1)], oci.ModelFile("c", A, 1)], "'c'"),
        ([oci.ModelFile("a", B, 1), oci.ModelFile("b", A, 1)], "the signature says"),
    ]:
        with pytest.raises(VerificationError, match=fragment):
            oci.check_against_signed(files, signed)
    blake = Manifest("m", signed.files, Serialization(hash_type="blake3"))
    with pytest.raises(VerificationError, match="blake3"):
        oci.check_against_signed([oci.ModelFile("a", A, 1), oci.ModelFile("b", B, 1)], blake)
