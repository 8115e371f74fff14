"""Per-record leaves of structured dataset files (JSONL, CSV, Parquet) and their Merkle roots.

Each record is turned into canonical bytes, and each record's *record hash* is the RFC 9162 leaf
hash of those bytes, SHA-256(0x00 ‖ bytes). The file's `root` is the RFC 9162 Merkle tree hash
over the record hashes in file order; its `sorted_root` is the Merkle tree hash over the same
record hashes sorted ascending (each used as the data of a leaf), which `record_proofs` uses to
prove that a record is *not* in the file.

Canonical bytes of one record:

- JSONL: one record per non-empty line; the RFC 8785 (JCS) serialisation of the parsed value.
  Duplicate object keys, NaN/Infinity and integers beyond ±(2^53-1) are refused (JCS cannot
  represent them without loss). The locator is the 1-based physical line number.
- CSV (RFC 4180 via the `csv` module, UTF-8): the header row is not a record but is bound into
  every leaf: JCS of ``{"columns": [header…], "values": [cells…]}``. Blank lines are skipped; a
  row with a different number of cells than the header is refused. The locator is the 1-based
  data row number (the header is row 0).
- Parquet (needs `pyarrow`): JCS of ``{"columns": [[name, arrow type]…], "values": [cells…]}``,
  values converted to JSON (bytes as base64 with a ``base64:`` prefix, dates and times as ISO
  8601, decimals and integers beyond ±(2^53-1) as strings, non-finite floats as "NaN",
  "Infinity", "-Infinity"; the column's type in every leaf keeps this unambiguous). The locator
  is the 1-based row number.

Reads files, hashes, and raises `InputError` naming the file and line or row for malformed input;
does not decide which files of a dataset are structured (see `datasets`).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import importlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any

from modelward.core import merkle
from modelward.core.canonical import canonical_json
from modelward.errors import DependencyError, InputError, PathError

DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
_SAFE_INTEGER = 2**53 - 1
_PARQUET_BATCH_ROWS = 4096


class RecordFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


_SUFFIXES = {
    ".jsonl": RecordFormat.JSONL,
    ".ndjson": RecordFormat.JSONL,
    ".csv": RecordFormat.CSV,
    ".parquet": RecordFormat.PARQUET,
}


def record_format_of(path: PurePath) -> RecordFormat | None:
    """The structured format a file name implies, or None for an opaque file."""
    return _SUFFIXES.get(path.suffix.lower())


@dataclass(frozen=True)
class Record:
    """One record: its position in the record tree, where it is in the file, its canonical bytes."""

    index: int
    locator: int
    data: bytes

    @property
    def record_hash(self) -> bytes:
        return merkle.leaf_hash(self.data)


@dataclass(frozen=True)
class RecordRoots:
    """The record trees of one structured file."""

    format: RecordFormat
    count: int
    root: str  # hex Merkle tree hash over record hashes in file order
    sorted_root: str  # hex Merkle tree hash over the sorted record hashes

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format.value,
            "count": self.count,
            "root": self.root,
            "sortedRoot": self.sorted_root,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RecordRoots:
        if not isinstance(data, dict):
            raise InputError("record roots are not a JSON object")
        try:
            record_format = RecordFormat(str(data.get("format")))
        except ValueError as exc:
            raise InputError(f"unknown record format {data.get('format')!r}") from exc
        count = data.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InputError("record roots 'count' is not a non-negative integer")
        return cls(
            format=record_format,
            count=count,
            root=parse_hex_digest(data.get("root"), "record roots 'root'"),
            sorted_root=parse_hex_digest(data.get("sortedRoot"), "record roots 'sortedRoot'"),
        )


def parse_hex_digest(value: Any, what: str) -> str:
    """A lower-case 64-character hex SHA-256 digest, or InputError naming `what`."""
    if (
        not isinstance(value, str)
        or len(value) != 64
        or any(c not in "0123456789abcdef" for c in value)
    ):
        raise InputError(f"{what} is not a lower-case hex SHA-256 digest")
    return value


def iter_records(
    path: Path,
    record_format: RecordFormat | None = None,
    *,
    label: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Record]:
    """Yield the records of a structured file in order. `label` names the file in errors."""
    record_format = record_format or record_format_of(path)
    name = label or str(path)
    if record_format is None:
        raise InputError(f"{name}: not a JSONL, CSV or Parquet file (by its name)")
    if record_format is RecordFormat.JSONL:
        return _iter_jsonl(path, name, max_record_bytes)
    if record_format is RecordFormat.CSV:
        return _iter_csv(path, name, max_record_bytes)
    return _iter_parquet(_import_pyarrow_parquet(), path, name, max_record_bytes)


def record_hashes(
    path: Path,
    record_format: RecordFormat | None = None,
    *,
    label: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> list[bytes]:
    """The record hashes of a structured file, in file order."""
    return [
        r.record_hash
        for r in iter_records(path, record_format, label=label, max_record_bytes=max_record_bytes)
    ]


def sorted_leaves(hashes: list[bytes]) -> list[bytes]:
    """The leaf hashes of the sorted tree: each sorted record hash used as a leaf's data."""
    return [merkle.leaf_hash(h) for h in sorted(hashes)]


def compute_record_roots(
    path: Path,
    record_format: RecordFormat | None = None,
    *,
    label: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> RecordRoots:
    resolved = record_format or record_format_of(path)
    if resolved is None:
        raise InputError(f"{label or path}: not a JSONL, CSV or Parquet file (by its name)")
    hashes = record_hashes(path, resolved, label=label, max_record_bytes=max_record_bytes)
    return RecordRoots(
        format=resolved,
        count=len(hashes),
        root=merkle.root_from_leaves(hashes).hex(),
        sorted_root=merkle.root_from_leaves(sorted_leaves(hashes)).hex(),
    )


def json_record_hash(value: Any) -> str:
    """Hex record hash of a JSONL record given as a parsed JSON value."""
    return merkle.leaf_hash(canonical_json(value)).hex()


def csv_record_hash(columns: list[str], values: list[str]) -> str:
    """Hex record hash of one CSV data row under its header."""
    return merkle.leaf_hash(canonical_json({"columns": columns, "values": values})).hex()


# --- JSONL -----------------------------------------------------------------------------------


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RecordSyntaxError(f"duplicate object key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise _RecordSyntaxError(f"{name} is not valid JSON")


class _RecordSyntaxError(Exception):
    pass


def _open_binary(path: Path, name: str) -> Any:
    try:
        return path.open("rb")
    except OSError as exc:
        raise PathError(f"{name}: cannot read: {exc.strerror or exc}") from exc


def _iter_jsonl(path: Path, name: str, max_record_bytes: int) -> Iterator[Record]:
    index = 0
    with _open_binary(path, name) as handle:
        line_number = 0
        while True:
            try:
                raw = handle.readline(max_record_bytes + 2)
            except OSError as exc:
                raise PathError(f"{name}: cannot read: {exc.strerror or exc}") from exc
            if not raw:
                return
            line_number += 1
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if len(line) > max_record_bytes:
                raise InputError(
                    f"{name}:{line_number}: line is longer than {max_record_bytes} bytes"
                )
            if line_number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            yield Record(
                index=index, locator=line_number, data=_jsonl_bytes(line, name, line_number)
            )
            index += 1


def _jsonl_bytes(line: bytes, name: str, line_number: int) -> bytes:
    where = f"{name}:{line_number}"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON: {exc.msg} at column {exc.colno}") from exc
    except _RecordSyntaxError as exc:
        raise InputError(f"{where}: malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise InputError(f"{where}: JSON nested too deeply") from exc
    try:
        return canonical_json(value)
    except InputError as exc:
        raise InputError(f"{where}: record cannot be canonicalised: {exc}") from exc
    except RecursionError as exc:
        raise InputError(f"{where}: JSON nested too deeply") from exc


# --- CSV -------------------------------------------------------------------------------------


def _iter_csv(path: Path, name: str, max_record_bytes: int) -> Iterator[Record]:
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise PathError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] | None = None
        index = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise InputError(f"{name}: line {reader.line_num}: malformed CSV: {exc}") from exc
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: near line {reader.line_num + 1}: not UTF-8") from exc
            except OSError as exc:
                raise PathError(f"{name}: cannot read: {exc.strerror or exc}") from exc
            if not row:
                continue
            if sum(len(cell) for cell in row) > max_record_bytes:
                raise InputError(
                    f"{name}: line {reader.line_num}: row is longer than {max_record_bytes} bytes"
                )
            if header is None:
                header = row
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{name}: row {index + 1} (line {reader.line_num}) has {len(row)} fields, "
                    f"the header has {len(header)}"
                )
            data = canonical_json({"columns": header, "values": row})
            yield Record(index=index, locator=index + 1, data=data)
            index += 1
        if header is None:
            raise InputError(f"{name}: CSV file has no header row")


# --- Parquet ---------------------------------------------------------------------------------


def _import_pyarrow_parquet() -> Any:
    try:
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise DependencyError(
            "reading Parquet datasets needs pyarrow: pip install 'modelward[parquet]'"
        ) from exc
    return parquet


def _iter_parquet(parquet: Any, path: Path, name: str, max_record_bytes: int) -> Iterator[Record]:
    pyarrow = importlib.import_module("pyarrow")
    try:
        parquet_file = parquet.ParquetFile(path)
        schema = parquet_file.schema_arrow
        columns = [[field.name, str(field.type)] for field in schema]
        batches = parquet_file.iter_batches(batch_size=_PARQUET_BATCH_ROWS)
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                values = [_json_value(row.get(column)) for column, _ in columns]
                data = canonical_json({"columns": columns, "values": values})
                if len(data) > max_record_bytes:
                    raise InputError(
                        f"{name}: row {index + 1} is longer than {max_record_bytes} bytes"
                    )
                yield Record(index=index, locator=index + 1, data=data)
                index += 1
    except (pyarrow.ArrowException, OSError) as exc:
        raise InputError(f"{name}: not a readable Parquet file: {exc}") from exc


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes):
        return "base64:" + base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value.total_seconds())
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)
