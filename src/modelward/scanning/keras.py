"""Keras models: the model config in `.keras` archives and legacy HDF5 files.

Keras rebuilds a model from its config by class name; a Lambda layer carries Python bytecode
or source, and an object whose module is not Keras's own makes the loader import that module.
Both are reported. The config is walked iteratively with a depth bound. For HDF5 files the
config is found as the JSON text of the `model_config` attribute (attributes are stored
unfiltered, so the text appears verbatim); HDF5 itself is not otherwise parsed.
"""

from __future__ import annotations

import json
from typing import Any

from modelward.scanning.context import ScanContext, at
from modelward.scanning.pickle_values import Buffer

KERAS_MODULE_PREFIXES = ("keras", "keras.", "tf_keras", "keras_hub.", "keras_nlp.", "keras_cv.")
MAX_DEPTH = 200


def scan_keras_config(raw: bytes, ctx: ScanContext, where: str) -> None:
    try:
        config = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        ctx.add("MW-KERAS-CONFIG", where, f"the model config is not valid JSON: {exc}")
        return
    check_keras_object(config, ctx, where)


def check_keras_object(config: Any, ctx: ScanContext, where: str) -> None:
    stack: list[tuple[Any, int, str]] = [(config, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            ctx.add("MW-KERAS-CONFIG", where, "the config is nested deeper than the limit")
            return
        if isinstance(node, list):
            stack.extend((item, depth + 1, path) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        _check_entry(node, ctx, where, path)
        name = node.get("name") if isinstance(node.get("name"), str) else None
        inner = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
        label = inner or name or path
        stack.extend((value, depth + 1, label) for value in node.values())


def _check_entry(node: dict[str, Any], ctx: ScanContext, where: str, path: str) -> None:
    class_name = node.get("class_name")
    label = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
    location = at(where, f"layer {label or path or '?'}")
    if class_name == "Lambda" or "__lambda__" in node:
        ctx.add(
            "MW-KERAS-LAMBDA",
            location,
            "the model has a Lambda layer, whose Python code runs when the model is loaded",
        )
        return
    module = node.get("module")
    if (
        isinstance(class_name, str)
        and isinstance(module, str)
        and not (module == "keras" or module.startswith(KERAS_MODULE_PREFIXES))
    ):
        ctx.add(
            "MW-KERAS-CUSTOM",
            location,
            f"{class_name} comes from module {module!r}; loading imports it",
        )
        return
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered and not registered.startswith("keras"):
        ctx.add(
            "MW-KERAS-CUSTOM",
            location,
            f"the object {registered!r} is a custom registered class that loading must import",
        )
    if class_name == "function" and isinstance(node.get("config"), str) and module is None:
        ctx.add(
            "MW-KERAS-CUSTOM", location, f"the config refers to the function {node['config']!r}"
        )


def scan_hdf5(data: Buffer, ctx: ScanContext, where: str) -> None:
    decoder = json.JSONDecoder()
    size = len(data)
    covered = 0
    found = False
    for marker in (b'{"class_name"', b'{"module"'):
        pos = data.find(marker, 0) if hasattr(data, "find") else -1
        while 0 <= pos < size:
            if pos >= covered:
                window = bytes(data[pos : pos + ctx.limits.max_json_bytes])
                text = window.decode("utf-8", "replace")
                try:
                    obj, used = decoder.raw_decode(text)
                except (ValueError, RecursionError):
                    obj, used = None, 1
                if isinstance(obj, dict):
                    found = True
                    check_keras_object(obj, ctx, at(where, "model_config"))
                    covered = pos + len(text[:used].encode("utf-8"))
            pos = data.find(marker, pos + 1)
    _ = found
