"""Judging Jinja2 chat templates by their syntax tree, never by rendering them.

A template is parsed with Jinja2's own parser, then every node is checked: no attribute or item
access to names that start with an underscore, no item access by a computed string, no calls
except a fixed set of functions and string/dict/list methods, no filters or tests outside the
built-in safe sets, no `import`, `include` or `extends` (they reach other files on the server).
It does not render or compile the template.
"""

from __future__ import annotations

from collections.abc import Iterator

SAFE_FUNCTIONS = frozenset({"range", "dict", "namespace", "raise_exception", "strftime_now",
                            "joiner", "cycler", "caller", "len"})  # fmt: skip
SAFE_METHODS = frozenset({
    "items", "keys", "values", "get", "strip", "lstrip", "rstrip", "split", "rsplit",
    "startswith", "endswith", "upper", "lower", "title", "capitalize", "replace", "join",
    "count", "index", "find", "rfind", "append", "splitlines", "isdigit", "isalpha", "isspace",
    "cycle", "next", "reset", "zfill", "center", "ljust", "rjust", "removeprefix", "removesuffix",
})  # fmt: skip
SAFE_FILTERS = frozenset({
    "abs", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e",
    "escape", "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent",
    "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "pprint",
    "random", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
    "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim",
    "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
})  # fmt: skip
SAFE_TESTS = frozenset({
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even",
    "false", "filter", "float", "ge", "greaterthan", "gt", "in", "integer", "iterable", "le",
    "lessthan", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas", "sequence",
    "string", "test", "true", "undefined", "upper",
})  # fmt: skip
_NAME_ARG_FILTERS = frozenset({"map", "select", "reject", "selectattr", "rejectattr", "sort",
                               "groupby", "sum", "unique", "min", "max", "dictsort"})  # fmt: skip


class TemplateSyntaxProblem(Exception):
    """The template does not parse; the message is Jinja2's."""


def template_problems(source: str) -> list[str]:
    """Every reason the template could reach unsafe code; empty when it is safe."""
    from jinja2 import Environment, TemplateSyntaxError, nodes

    env = Environment(extensions=["jinja2.ext.loopcontrols"])
    try:
        tree = env.parse(source)
    except (TemplateSyntaxError, RecursionError, MemoryError) as exc:
        raise TemplateSyntaxProblem(str(exc).splitlines()[0] if str(exc) else "syntax") from exc
    macros = {m.name for m in tree.find_all(nodes.Macro)}
    problems: list[str] = []

    def add(node: nodes.Node, text: str) -> None:
        line = getattr(node, "lineno", "?")
        message = f"line {line}: {text}"
        if message not in problems and len(problems) < 20:
            problems.append(message)

    for node in _walk(tree):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            add(node, f"reads the attribute {node.attr!r}, which reaches Python internals")
        elif isinstance(node, nodes.Getitem):
            key = node.arg
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                if key.value.startswith("_"):
                    add(node, f"reads the item {key.value!r}, which reaches Python internals")
            elif isinstance(key, nodes.Concat | nodes.Add | nodes.Filter | nodes.Call | nodes.Mod):
                add(node, "reads an item by a computed name, which can reach any attribute")
        elif isinstance(node, nodes.Call):
            callee = node.node
            if isinstance(callee, nodes.Name):
                if callee.name not in SAFE_FUNCTIONS and callee.name not in macros:
                    add(node, f"calls {callee.name!r}, which is not a safe function")
            elif isinstance(callee, nodes.Getattr):
                if callee.attr not in SAFE_METHODS:
                    add(node, f"calls the method {callee.attr!r}, which is not in the safe set")
            else:
                add(node, "calls a computed value")
        elif isinstance(node, nodes.Filter) and node.name is not None:
            _check_filter(node, add)
        elif isinstance(node, nodes.Test):
            if node.name not in SAFE_TESTS:
                add(node, f"uses the test {node.name!r}, which is not in the safe set")
        elif isinstance(node, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
            add(node, "loads another template from the server")
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and "__" in node.value:
            add(node, f"contains the string {node.value[:40]!r}, a piece of a Python internal name")
    return problems


def _check_filter(node: object, add: object) -> None:
    from jinja2 import nodes

    assert isinstance(node, nodes.Filter)
    report = add  # typed loosely to keep the walker simple
    name = node.name
    if name == "attr":
        arg = node.args[0] if node.args else None
        if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)) or str(
            arg.value
        ).startswith("_"):
            report(node, "uses the attr filter with a name that can reach Python internals")  # type: ignore[operator]
        return
    if name not in SAFE_FILTERS:
        report(node, f"uses the filter {name!r}, which is not in the safe set")  # type: ignore[operator]
        return
    if name in _NAME_ARG_FILTERS:
        for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
            if (
                isinstance(arg, nodes.Const)
                and isinstance(arg.value, str)
                and (arg.value == "attr" or arg.value.startswith("_") or "._" in arg.value)
            ):
                report(node, f"passes {arg.value!r} to the {name} filter")  # type: ignore[operator]
            elif not isinstance(arg, nodes.Const):
                report(node, f"passes a computed name to the {name} filter")  # type: ignore[operator]


def _walk(root: object) -> Iterator[object]:
    from jinja2 import nodes

    stack: list[nodes.Node] = [root]  # type: ignore[list-item]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())
