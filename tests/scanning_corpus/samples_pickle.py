"""Pickle attacks: the classic imports and the published bypasses of other scanners.

Each payload would call something harmless (`print`, `echo`) if it were ever loaded; it is not.
References name the advisory or issue that describes the trick.
"""

from __future__ import annotations

import gzip
from typing import Any

from tests.scanning_corpus import builders as b
from tests.scanning_corpus.asm import Pickle, call_pickle

G = "MW-PKL-GLOBAL"


def _bad(name: str, data: bytes, rule_id: str, note: str) -> dict[str, Any]:
    return {
        "name": name,
        "data": data,
        "label": "malicious",
        "verdict": "unsafe",
        "rule_id": rule_id,
        "note": note,
    }


def _classic() -> list[dict[str, Any]]:
    calls = [
        ("os_system_p0.pkl", "os", "system", ("echo hi",), None),
        ("os_system_p2.pkl", "os", "system", ("echo hi",), 2),
        ("posix_system.pkl", "posix", "system", ("echo hi",), 2),
        ("nt_system.pkl", "nt", "system", ("echo hi",), 2),
        ("subprocess_check_output.pkl", "subprocess", "check_output", ("echo",), 3),
        ("subprocess_popen.pkl", "subprocess", "Popen", ("echo",), 4),
        ("builtins_eval.pkl", "builtins", "eval", ("print('x')",), 3),
        ("builtins_exec.pkl", "builtins", "exec", ("print('x')",), 4),
        ("builtin_py2_eval.pkl", "__builtin__", "eval", ("print('x')",), 2),
        ("builtins_import.pkl", "builtins", "__import__", ("os",), 2),
        ("importlib_import_module.pkl", "importlib", "import_module", ("os",), 4),
        ("runpy_run_module.pkl", "runpy", "run_module", ("this",), 4),
        ("runpy_run_path.pkl", "runpy", "_run_code", ("print(1)", "{}"), 4),
        ("pkgutil_resolve_name.pkl", "pkgutil", "resolve_name", ("os:system",), 4),
        ("marshal_loads.pkl", "marshal", "loads", ("c",), 4),
        ("timeit_timeit.pkl", "timeit", "timeit", ("print(1)",), 4),
        ("code_interact.pkl", "code", "InteractiveInterpreter", (), 4),
        ("cprofile_run.pkl", "cProfile", "run", ("print(1)",), 4),
        ("profile_run.pkl", "profile", "run", ("print(1)",), 4),
        ("pdb_run.pkl", "pdb", "run", ("print(1)",), 4),
        ("trace_run.pkl", "trace", "Trace", (), 4),
        ("doctest_debug_script.pkl", "doctest", "debug_script", ("print(1)",), 4),
        ("pip_main.pkl", "pip", "main", ("--version",), 4),
        ("ensurepip_run_pip.pkl", "ensurepip", "_run_pip", ("--version",), 4),
        ("venv_create.pkl", "venv", "create", ("/tmp/never",), 4),
        ("pty_spawn.pkl", "pty", "spawn", ("true",), 4),
        ("shutil_rmtree.pkl", "shutil", "rmtree", ("/nonexistent",), 4),
        ("io_fileio.pkl", "_io", "FileIO", ("/tmp/never", "w"), 4),
        ("distutils_write_file.pkl", "distutils.file_util", "write_file", ("/tmp/never",), 4),
        ("webbrowser_open.pkl", "webbrowser", "open", ("http://127.0.0.1/",), 4),
        ("ctypes_cdll.pkl", "ctypes", "CDLL", ("libc.so.6",), 4),
        ("nested_pickle_loads.pkl", "_pickle", "loads", ("x",), 4),
        ("numpy_f2py_eval.pkl", "numpy.f2py.crackfortran", "myeval", ("print(1)",), 4),
        ("torch_hub_load.pkl", "torch.hub", "load", ("repo", "m"), 4),
        ("asyncio_subprocess.pkl", "asyncio.unix_events", "_UnixSubprocessTransport", (), 4),
        ("interpreters_run_string.pkl", "_interpreters", "run_string", ("print(1)",), 4),
        ("operator_attrgetter.pkl", "operator", "attrgetter", ("system",), 4),
        ("functools_partial.pkl", "functools", "partial", ("print",), 4),
        ("idlelib_run.pkl", "idlelib.pyshell", "main", (), 4),
        ("builtins_breakpoint.pkl", "builtins", "breakpoint", (), 4),
        ("types_functiontype.pkl", "types", "FunctionType", ("c", "{}"), 4),
        ("collections_defaultdict.pkl", "collections", "defaultdict", ("print",), 4),
    ]
    samples = []
    for name, module, attr, args, proto in calls:
        samples.append(
            _bad(
                name,
                call_pickle(module, attr, *args, proto=proto),
                G,
                f"{module}.{attr} via GLOBAL+REDUCE",
            )
        )
    return samples


def _getattr_chain() -> bytes:
    # builtins.getattr(builtins.__import__('os'), 'system')('echo')
    p = Pickle(2).global_("builtins", "getattr").mark()
    p.global_("builtins", "__import__").mark().str("os").tuple().reduce()
    p.str("system").tuple().reduce()
    return p.mark().str("echo").tuple().reduce().stop()


def _bypasses() -> list[dict[str, Any]]:
    samples = [_bad("getattr_chain.pkl", _getattr_chain(), G, "builtins.getattr chain")]
    # picklescan#14: BINPUT and MEMOIZE mixed so memo indices disagree with a naive tracker.
    p = Pickle(4).str("os").binput(0).str("system").binput(1)
    p.str("torch._utils").memoize().str("_rebuild_tensor_v2").memoize()
    p.binget(0).binget(1).stack_global().mark().str("echo").tuple().reduce()
    samples.append(_bad("memo_confusion.pkl", p.stop(), G, "picklescan issue 14 memo trick"))
    # STACK_GLOBAL operands given as protocol 0 STRING and SHORT_BINSTRING opcodes.
    p = Pickle(4).string("os").short_binstring("system").stack_global()
    samples.append(
        _bad(
            "stack_global_string_ops.pkl",
            p.mark().str("echo").tuple().reduce().stop(),
            G,
            "STRING operands for STACK_GLOBAL",
        )
    )
    p = Pickle(4).binunicode("subprocess").binunicode("getoutput").stack_global()
    samples.append(
        _bad(
            "stack_global_binunicode.pkl",
            p.mark().str("echo").tuple().reduce().stop(),
            G,
            "BINUNICODE operands",
        )
    )
    # Dotted names: proto 4 resolves attributes through submodules (torch.serialization.os).
    samples.append(
        _bad(
            "dotted_submodule.pkl",
            call_pickle("torch.serialization", "os.system", "echo", proto=4),
            G,
            "a dotted name reaches os through an allowed-looking module",
        )
    )
    samples.append(
        _bad(
            "dotted_allowed_prefix.pkl",
            call_pickle("torch._utils", "_rebuild_tensor_v2.__globals__", proto=4),
            G,
            "an allowed name with an attribute path behind it",
        )
    )
    # INST, OBJ, NEWOBJ and NEWOBJ_EX instead of REDUCE.
    samples.append(
        _bad(
            "inst_opcode.pkl",
            Pickle(None).mark().string("echo").inst("os", "system").stop(),
            G,
            "INST (fickling PR 108 used pty.spawn)",
        )
    )
    samples.append(
        _bad(
            "obj_opcode.pkl",
            Pickle(1).mark().global_("os", "system").str("echo").obj().stop(),
            G,
            "OBJ",
        )
    )
    samples.append(
        _bad(
            "newobj_opcode.pkl",
            Pickle(2).global_("subprocess", "Popen").mark().str("echo").tuple().newobj().stop(),
            G,
            "NEWOBJ",
        )
    )
    samples.append(
        _bad(
            "newobj_ex_opcode.pkl",
            Pickle(4)
            .global_("subprocess", "Popen")
            .mark()
            .str("echo")
            .tuple()
            .empty_dict()
            .newobj_ex()
            .stop(),
            G,
            "NEWOBJ_EX",
        )
    )
    # BUILD on an imported class rewires it (setattr through slot state).
    p = Pickle(2).global_("collections", "OrderedDict").none().empty_dict()
    p.str("__repr__").global_("collections", "Counter").setitem().tuple2().build()
    samples.append(
        _bad(
            "build_on_global.pkl",
            p.stop(),
            "MW-PKL-BUILD-GLOBAL",
            "BUILD monkeypatches an allowed class",
        )
    )
    # STACK_GLOBAL with names produced by a call: cannot be resolved statically.
    p = Pickle(4).global_("builtins", "str").mark().str("os").tuple().reduce()
    p.global_("builtins", "str").mark().str("system").tuple().reduce().stack_global()
    samples.append(
        _bad(
            "computed_global.pkl",
            p.mark().str("echo").tuple().reduce().stop(),
            "MW-PKL-GLOBAL-UNRESOLVED",
            "module name computed at load time",
        )
    )
    # copyreg extension registry code.
    samples.append(
        _bad(
            "ext_code.pkl",
            Pickle(2).ext1(1).mark().str("echo").tuple().reduce().stop(),
            "MW-PKL-EXT",
            "EXT1 opcode",
        )
    )
    # Calling a value built during loading (an allowed constructor's result).
    p = Pickle(2).global_("collections", "OrderedDict").empty_tuple().reduce().empty_tuple()
    samples.append(
        _bad("call_result.pkl", p.reduce().stop(), "MW-PKL-CALL", "REDUCE on a non-global callable")
    )
    # A benign first pickle followed by a malicious one (loaders that read twice).
    samples.append(
        _bad(
            "second_pickle.pkl",
            b"\x80\x02K\x01." + call_pickle("os", "system", "x"),
            G,
            "payload in the second pickle of a stream",
        )
    )
    # Protocol 0 payload with garbage after REDUCE: pickle.load runs it, then fails.
    samples.append(
        _bad(
            "payload_then_garbage.pkl",
            bytes(Pickle(None).call("os", "system", "echo").raw(b"\xff\xfe garbage").out),
            G,
            "loads run the call before reaching the error",
        )
    )
    # Extension and name tricks: a pickle dressed as other formats.
    payload = call_pickle("os", "system", "echo")
    for fake in (
        "model.safetensors",
        "weights.npy",
        "config.json",
        "notes.txt",
        "pytorch_model.bin",
    ):
        samples.append(_bad(f"disguised_{fake}", payload, G, "extension trick"))
    samples.append(_bad("payload.pkl.gz", gzip.compress(payload, mtime=0), G, "gzip'd pickle"))
    return samples


def _embedded() -> list[dict[str, Any]]:
    payload = call_pickle("os", "system", "echo", proto=3)
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    npy = b.npy_bytes(header, payload)
    return [
        _bad("object_array_payload.npy", npy, G, "npy object array carries a pickle"),
        _bad("object_array_payload.npz", b.zip_of({"a.npy": npy}), G, "npz member"),
        _bad(
            "joblib_trailing_payload.joblib",
            b.joblib_array(payload),
            G,
            "a second pickle after joblib's inline array",
        ),
        _bad(
            "torch_legacy_payload.bin",
            b.torch_legacy(call_pickle("os", "system", "x")),
            G,
            "legacy torch main pickle",
        ),
    ]


def pickle_attack_samples() -> list[dict[str, Any]]:
    return _classic() + _bypasses() + _embedded()
