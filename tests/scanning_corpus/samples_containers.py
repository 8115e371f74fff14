"""Attacks through containers and templates: torch zips, zip header tricks, archive paths,
Keras Lambda layers and custom objects, Jinja chat templates, ONNX external data paths."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from tests.scanning_corpus import builders as b
from tests.scanning_corpus.asm import call_pickle

SSTI = "{{ cycler.__init__.__globals__.os.popen('echo').read() }}"
SSTI_ATTR = "{{ ''|attr('__cl' ~ 'ass__') }}{% for m in messages %}{{ m.content }}{% endfor %}"
SSTI_ITEM = "{% set k = '_' ~ '_class_' ~ '_' %}{{ messages[k ~ ''] }}"


def _bad(name: str, data: bytes, rule_id: str, note: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "data": data,
        "label": "malicious",
        "verdict": "unsafe",
        "rule_id": rule_id,
        "note": note,
        **extra,
    }


def _patch_crc(zip_bytes: bytes, member: str) -> bytes:
    """Corrupt a member's CRC in both headers (torch's reader ignores CRCs; zipfile raises)."""
    data = bytearray(zip_bytes)
    name = member.encode()
    pos = 0
    while (pos := data.find(name, pos + 1)) > 0:
        for sig, crc_at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
            header = pos - (30 if sig == b"PK\x03\x04" else 46)
            if header >= 0 and data[header : header + 4] == sig:
                data[header + crc_at : header + crc_at + 4] = b"\xde\xad\xbe\xef"
    return bytes(data)


def _rename_local(zip_bytes: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new)
    data = bytearray(zip_bytes)
    pos = data.find(b"PK\x03\x04")
    while pos >= 0:
        start = pos + 30
        length = struct.unpack("<H", data[pos + 26 : pos + 28])[0]
        if data[start : start + length] == old.encode():
            data[start : start + length] = new.encode()
            break
        pos = data.find(b"PK\x03\x04", pos + 4)
    return bytes(data)


def _hidden_member(zip_bytes: bytes, hidden: bytes) -> bytes:
    """Insert a local header + payload the central directory does not list, fixing offsets."""
    data = bytearray(zip_bytes)
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack("<I", data[eocd + 16 : eocd + 20])[0]
    name = b"archive/hidden.pkl"
    local = struct.pack(
        "<4sHHHHHIIIHH",
        b"PK\x03\x04",
        20,
        0,
        0,
        0,
        0,
        zlib.crc32(hidden),
        len(hidden),
        len(hidden),
        len(name),
        0,
    )
    block = local + name + hidden
    data[cd_offset:cd_offset] = block
    eocd += len(block)
    struct.pack_into("<I", data, eocd + 16, cd_offset + len(block))
    return bytes(data)


def container_attack_samples() -> list[dict[str, Any]]:
    evil = call_pickle("os", "system", "echo")
    good_zip = b.torch_zip(b.torch_state_dict_pickle())
    samples = [
        _bad("torch_payload.pt", b.torch_zip(evil, storages={}), "MW-PKL-GLOBAL", "data.pkl"),
        _bad(
            "torch_extra_pkl.pt",
            b.torch_zip(b.torch_state_dict_pickle(), extra={"archive/extra/constants.pkl": evil}),
            "MW-PKL-GLOBAL",
            "a second .pkl member only some scanners read",
        ),
        _bad(
            "torch_bad_crc.pt",
            _patch_crc(b.torch_zip(evil, storages={}), "archive/data.pkl"),
            "MW-PKL-GLOBAL",
            "CRC mismatch: zipfile-based scanners fail, torch loads",
        ),
        _bad(
            "torch_renamed_local.pt",
            _rename_local(good_zip, "archive/byteorder", "archive/bytes.pkl"),
            "MW-ZIP-HEADER-MISMATCH",
            "local header name differs from the central directory",
        ),
        _bad(
            "torch_hidden_member.pt",
            _hidden_member(good_zip, evil),
            "MW-ZIP-HIDDEN",
            "a local entry the central directory does not list",
        ),
        _bad(
            "polyglot_pickle_zip.pt",
            evil + good_zip,
            "MW-PKL-GLOBAL",
            "pickle first (torch.load takes the legacy path), zip after (zipfile sees a zip)",
        ),
        _bad(
            "zip_absolute_path.zip",
            b.zip_of({"/etc/cron.d/x": b"x"}),
            "MW-ARC-PATH",
            "absolute member path",
        ),
        _bad(
            "zip_backslash_path.zip",
            b.zip_of({"..\\..\\x.txt": b"x"}),
            "MW-ARC-PATH",
            "backslash traversal",
        ),
        _bad("zip_dotdot.zip", b.zip_of({"a/../../x.txt": b"x"}), "MW-ARC-PATH", "zip slip"),
        _bad("tar_dotdot.tar", b.tar_of({"../x.txt": b"x"}), "MW-ARC-PATH", "tar slip"),
        _bad(
            "tar_symlink.tar",
            b.tar_of({"a.txt": b"x"}, {"link": "/etc/passwd"}),
            "MW-ARC-LINK",
            "tar symlink",
        ),
        _bad(
            "keras_lambda.keras",
            b.keras_archive(
                [
                    b.dense_layer(),
                    {
                        "module": "keras.layers",
                        "class_name": "Lambda",
                        "registered_name": None,
                        "config": {
                            "name": "lambda",
                            "function": {
                                "class_name": "__lambda__",
                                "config": {"code": "4wEAAAAA"},
                            },
                        },
                    },
                ]
            ),
            "MW-KERAS-LAMBDA",
            "Lambda layer bytecode",
        ),
        _bad(
            "keras_builtin_function.keras",
            b.keras_archive(
                [
                    {
                        "module": "keras.layers",
                        "class_name": "Activation",
                        "registered_name": None,
                        "config": {
                            "name": "act",
                            "activation": {
                                "module": "builtins",
                                "class_name": "function",
                                "config": "exec",
                                "registered_name": "function",
                            },
                        },
                    }
                ]
            ),
            "MW-KERAS-CUSTOM",
            "function from builtins (safe_mode bypass family)",
        ),
        _bad(
            "keras_custom_module.keras",
            b.keras_archive(
                [
                    {
                        "module": "evil_pkg.layers",
                        "class_name": "Backdoor",
                        "registered_name": "evil_pkg>Backdoor",
                        "config": {"name": "b"},
                    }
                ]
            ),
            "MW-KERAS-CUSTOM",
            "custom object import",
        ),
        _bad(
            "keras2_lambda.h5",
            b.hdf5_stub(
                {
                    "class_name": "Sequential",
                    "config": {
                        "name": "s",
                        "layers": [
                            {
                                "class_name": "Lambda",
                                "config": {
                                    "name": "l",
                                    "function": ["4wEAAAAAAAAA", None, None],
                                    "function_type": "lambda",
                                },
                            }
                        ],
                    },
                }
            ),
            "MW-KERAS-LAMBDA",
            "Keras 2 HDF5 Lambda",
        ),
        _bad("ssti_template.gguf", b.gguf(SSTI), "MW-GGUF-TEMPLATE", "GGUF chat template SSTI"),
        _bad(
            "ssti_attr_filter.gguf",
            b.gguf(SSTI_ATTR),
            "MW-GGUF-TEMPLATE",
            "attr filter with a computed dunder",
        ),
        _bad(
            "ssti_computed_item.gguf",
            b.gguf(SSTI_ITEM),
            "MW-GGUF-TEMPLATE",
            "item access by a computed name",
        ),
        _bad(
            "tokenizer_config_ssti.json",
            json.dumps({"chat_template": SSTI}).encode(),
            "MW-TPL-UNSAFE",
            "chat template in tokenizer_config.json",
        ),
        _bad(
            "chat_template.jinja",
            (
                b"{% for m in messages %}{{ m.content }}{% endfor %}"
                b"{{ self._TemplateReference__context.cycler.__init__ }}"
            ),
            "MW-TPL-UNSAFE",
            "standalone chat template file",
        ),
        _bad(
            "onnx_external_traversal.onnx",
            b.onnx_model("../../../etc/passwd"),
            "MW-ONNX-EXTERNAL",
            "external data path traversal",
        ),
        _bad(
            "onnx_external_absolute.onnx",
            b.onnx_model("/etc/passwd"),
            "MW-ONNX-EXTERNAL",
            "absolute external data path",
        ),
    ]
    evil_zip64 = b.with_zip64_end(b.torch_zip(evil, storages={}))
    for central, local in ((False, True), (True, False), (True, True)):
        where = "+".join(n for n, on in (("central", central), ("local", local)) if on)
        samples.append(
            _bad(
                f"torch_encrypted_flag_{where.replace('+', '_')}.pt",
                b.with_encrypted_flag(evil_zip64, "archive/data.pkl", central=central, local=local),
                "MW-PKL-GLOBAL",
                f"payload in data.pkl with the encrypted bit in the {where} header(s)",
            )
        )
    samples.append(
        _bad(
            "text_protocol0_payload.txt",
            b"cos\nsystem\n(S'echo'\ntR.",
            "MW-PKL-GLOBAL",
            "an all-ASCII protocol 0 pickle: valid text that pickle.load runs",
        )
    )
    samples.append(
        _bad(
            "text_protocol0_call_then_prose.yaml",
            b"cos\nsystem\n(S'echo'\ntR\nlr: 0.001\nepochs: 3\n",
            "MW-PKL-GLOBAL",
            "the call runs before the prose makes pickle.load fail",
        )
    )
    return samples
