"""Sentences that explain why an import outside the allow-list matters.

The allow-list alone decides what is refused; this table only makes the message concrete for
the imports attackers use most (shell, eval, import-by-name, file and network access, nested
unpicklers). An import that is in no table is still refused, with a generic sentence.
"""

from __future__ import annotations

_MODULE_EFFECTS: dict[str, str] = {
    "os": "runs shell commands or touches files",
    "posix": "runs shell commands (os under another name)",
    "nt": "runs shell commands (os on Windows)",
    "subprocess": "starts programs",
    "pty": "starts programs",
    "commands": "runs shell commands",
    "shutil": "copies, moves or deletes files",
    "socket": "opens network connections",
    "importlib": "imports any module by name",
    "pkgutil": "resolves any object by name",
    "runpy": "runs Python modules or files",
    "code": "compiles and runs Python source",
    "codeop": "compiles Python source",
    "marshal": "loads compiled code",
    "pickle": "starts a nested unpickler that is not checked",
    "_pickle": "starts a nested unpickler that is not checked",
    "dill": "starts a nested unpickler that is not checked",
    "cloudpickle": "rebuilds functions from code objects",
    "joblib": "loads nested pickles",
    "operator": "calls methods or reads attributes by name",
    "_operator": "calls methods or reads attributes by name",
    "functools": "wraps other callables",
    "timeit": "runs Python source",
    "profile": "runs Python source",
    "cProfile": "runs Python source",
    "pdb": "runs Python source",
    "bdb": "runs Python source",
    "trace": "runs Python source",
    "doctest": "runs Python source",
    "ctypes": "calls native code",
    "webbrowser": "opens URLs",
    "urllib": "makes network requests",
    "requests": "makes network requests",
    "http": "makes network requests",
    "pip": "installs packages",
    "ensurepip": "runs pip",
    "venv": "creates environments and runs programs",
    "sys": "changes the interpreter",
    "types": "builds functions and code objects",
    "asyncio": "starts programs through event-loop internals",
    "numpy.f2py": "evaluates Python expressions",
    "torch.hub": "downloads and runs code",
    "torch.jit": "compiles and runs code",
    "torch._inductor": "compiles and runs code",
    "idlelib": "runs Python source",
    "lib2to3": "runs Python source",
    "distutils": "writes files and runs programs",
}

_BUILTIN_EFFECTS: dict[str, str] = {
    "eval": "evaluates Python source",
    "exec": "runs Python source",
    "compile": "compiles Python source",
    "__import__": "imports any module by name",
    "getattr": "reads any attribute, reaching any function",
    "setattr": "changes attributes of live objects",
    "delattr": "removes attributes of live objects",
    "open": "opens files",
    "globals": "exposes the interpreter's globals",
    "locals": "exposes the interpreter's locals",
    "vars": "exposes object namespaces",
    "breakpoint": "starts a debugger",
    "input": "blocks on input",
    "help": "starts the interactive help",
    "type": "builds new classes",
    "memoryview": "exposes raw memory",
}


def _effect(module: str, name: str) -> str | None:
    effect = None
    if module in ("builtins", "__builtin__"):
        effect = _BUILTIN_EFFECTS.get(name.split(".")[0])
    if effect is None:
        parts = module.split(".")
        for length in range(len(parts), 0, -1):
            effect = _MODULE_EFFECTS.get(".".join(parts[:length]))
            if effect is not None:
                break
    return effect


def is_known_gadget(module: str, name: str) -> bool:
    """Whether `module.name` is one of the imports attackers use (shell, eval, files, ...)."""
    return _effect(module, name) is not None


def describe_global(module: str, name: str) -> str:
    """One sentence on why importing `module.name` while loading is refused."""
    effect = _effect(module, name)
    target = f"{module}.{name}"
    if effect is not None:
        return (
            f"the pickle imports {target}, which {effect}; loading this file would reach it "
            "(not on the allow-list)"
        )
    return (
        f"the pickle imports {target}, which is not on the allow-list; loading the file would "
        "import and may call it (allow it with --allow if it is trusted)"
    )
