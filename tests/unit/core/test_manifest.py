from __future__ import annotations

import hashlib

import pytest

from modelward.core.manifest import FileDigest, Manifest, Serialization
from modelward.errors import InputError


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_root_digest_is_sha256_over_raw_digests_in_path_order() -> None:
    files = (
        FileDigest("a-c", "sha256", _digest("1")),
        FileDigest("a/b", "sha256", _digest("2")),
    )
    manifest = Manifest("m", files)
    # path-component order puts a/b before a-c, unlike plain string order
    assert [f.name for f in manifest.files] == ["a/b", "a-c"]
    expected = hashlib.sha256(bytes.fromhex(_digest("2")) + bytes.fromhex(_digest("1")))
    assert manifest.root_digest == expected.hexdigest()


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(InputError, match="twice"):
        Manifest("m", (FileDigest("x", "sha256", _digest("1")),) * 2)


def test_diff_names_added_removed_and_changed() -> None:
    expected = Manifest(
        "m", (FileDigest("a", "sha256", _digest("a")), FileDigest("b", "sha256", _digest("b")))
    )
    actual = Manifest(
        "m", (FileDigest("a", "sha256", _digest("A")), FileDigest("c", "sha256", _digest("c")))
    )
    diff = expected.diff_against(actual)
    assert diff.added == ("c",)
    assert diff.removed == ("b",)
    assert diff.changed == (("a", _digest("a"), _digest("A")),)
    assert not diff.empty
    assert expected.diff_against(expected).empty


def test_round_trip_and_tampered_root_rejected() -> None:
    manifest = Manifest(
        "m",
        (FileDigest("a", "sha256", _digest("a"), 3),),
        Serialization(ignore_paths=("z", ".git")),
    )
    data = manifest.to_dict()
    assert Manifest.from_dict(data) == manifest
    data["root_digest"] = _digest("other")
    with pytest.raises(InputError, match="root digest"):
        Manifest.from_dict(data)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a", "algorithm": "md5", "digest": "00"},
        {"name": "a", "algorithm": "sha256", "digest": "zz" * 32},
        {"name": "a", "algorithm": "sha256", "digest": "00"},
        {"name": "", "algorithm": "sha256", "digest": "00" * 32},
        {"name": "a", "algorithm": "sha256", "digest": "00" * 32, "size": -1},
        "not an object",
    ],
)
def test_malformed_entries_are_refused(entry: object) -> None:
    with pytest.raises(InputError):
        FileDigest.from_dict(entry)


def test_serialization_rejects_unknown_method_and_hash() -> None:
    with pytest.raises(InputError, match="shards"):
        Serialization.from_dict({"method": "shards", "hash_type": "sha256"})
    with pytest.raises(InputError, match="md5"):
        Serialization.from_dict({"method": "files", "hash_type": "md5"})
    legacy = Serialization.from_dict(
        {"method": "files", "hash_type": "sha256", "allow_symlinks": "false"}
    )
    assert legacy.allow_symlinks is False
