"""ONNX models: the protobuf walked without the onnx package, external data kept in the bundle.

Every graph (the main graph, subgraphs inside If/Loop/Scan attributes, training graphs and
model-local functions) is visited iteratively with a depth bound. Tensors stored outside the
model name a `location`; it must be a relative path that stays inside the bundle (no absolute
paths, drive letters, backslashes or `..`). The engine then checks the file exists. Nodes from
operator domains outside the standard ones are reported as information: loading them needs a
custom-op library the model cannot bring along.
"""

from __future__ import annotations

from modelward.scanning.context import ScanContext, at
from modelward.scanning.pickle_values import Buffer
from modelward.scanning.protobuf import ProtobufError, text_value, varint_value, walk_fields
from modelward.scanning.zipfmt import unsafe_member_path

STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft"}
)
MAX_GRAPH_DEPTH = 64

# message kinds and, per kind, which fields hold which nested kinds
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph"},
    "sparse": {1: "tensor", 2: "tensor"},
}


def scan_onnx(data: Buffer, ctx: ScanContext, where: str) -> None:
    custom: set[str] = set()
    try:
        stack: list[tuple[str, int, int, int]] = [("model", 0, len(data), 0)]
        while stack:
            kind, start, end, depth = stack.pop()
            if depth > MAX_GRAPH_DEPTH:
                raise ProtobufError("graphs are nested deeper than the limit")
            if kind == "tensor":
                _check_tensor(data, start, end, ctx, where)
                continue
            children = _CHILDREN.get(kind, {})
            for number, wire, value_start, value_end in walk_fields(data, start, end):
                if kind == "node" and number == 7 and wire == 2:
                    domain = text_value(data, value_start, value_end)
                    if domain not in STANDARD_DOMAINS:
                        custom.add(domain)
                child = children.get(number)
                if child is not None and wire == 2:
                    stack.append((child, value_start, value_end, depth + 1))
    except ProtobufError as exc:
        ctx.add("MW-ONNX-STRUCTURE", where, f"the ONNX model is not well formed: {exc}")
        return
    for domain in sorted(custom)[:20]:
        ctx.add(
            "MW-ONNX-CUSTOM-OP",
            where,
            f"the graph uses operators from the domain {domain!r}, which need a custom library",
        )


def _check_tensor(data: Buffer, start: int, end: int, ctx: ScanContext, where: str) -> None:
    name = ""
    external = False
    entries: dict[str, str] = {}
    for number, wire, value_start, value_end in walk_fields(data, start, end):
        if number == 8 and wire == 2:
            name = text_value(data, value_start, value_end)
        elif number == 14 and wire == 0:
            external = varint_value(data, value_start, value_end) == 1
        elif number == 13 and wire == 2:
            key = value = ""
            for inner, inner_wire, s, e in walk_fields(data, value_start, value_end):
                if inner == 1 and inner_wire == 2:
                    key = text_value(data, s, e)
                elif inner == 2 and inner_wire == 2:
                    value = text_value(data, s, e)
            entries[key] = value
    if not external:
        return
    location = at(where, f"tensor {name!r}")
    path = entries.get("location")
    if not path:
        ctx.add("MW-ONNX-STRUCTURE", location, "external data has no location")
        return
    problem = unsafe_member_path(path)
    if problem:
        ctx.add("MW-ONNX-EXTERNAL", location, f"the external data location {path!r} {problem[3:]}")
        return
    try:
        offset = int(entries.get("offset", "0") or 0)
        length = int(entries.get("length", "-1") or -1)
    except ValueError:
        ctx.add("MW-ONNX-STRUCTURE", location, "external data offset or length is not a number")
        return
    ctx.external_refs.append((where, path, offset, length))
