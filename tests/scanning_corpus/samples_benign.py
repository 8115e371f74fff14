"""Benign samples: what ordinary checkpoints of each supported format look like."""

from __future__ import annotations

import collections
import gzip
import io
import json
import pickle
import struct
from typing import Any

import numpy as np

from tests.scanning_corpus import builders as b
from tests.scanning_corpus.asm import Pickle

SAFE_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "<|system|>{{ message['content'] | trim }}{% elif message.role == 'user' %}"
    "<|user|>{{ message.content }}{% else %}<|assistant|>{{ message['content'] }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    "{{ raise_exception('x') if messages|length == 0 else '' }}"
)


def _entry(name: str, data: bytes, note: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "data": data,
        "label": "benign",
        "verdict": "clean",
        "rule_id": None,
        "note": note,
        **extra,
    }


def _np_save(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def benign_samples() -> list[dict[str, Any]]:
    samples = [
        _entry("torch_state_dict.pt", b.torch_zip(b.torch_state_dict_pickle()), "torch zip"),
        _entry(
            "torch_params.pth",
            b.torch_zip(
                b.torch_state_dict_pickle(("a", "b"), parameter=True),
                {"0": b.FLOAT4, "1": b.FLOAT4},
            ),
            "torch zip with nn.Parameter",
        ),
        _entry("torch_legacy.bin", b.torch_legacy(), "legacy torch.save (five pickles)"),
        _entry("numpy_array.npy", _np_save(np.arange(12, dtype=np.float32).reshape(3, 4)), "npy"),
        _entry("arrays.npz", _npz(a=np.ones(3), b=np.arange(4)), "npz, deflated"),
        _entry(
            "object_array.npy",
            _np_save(np.array([{"k": 1}, "text", 3], dtype=object)),
            "object array whose pickle holds only data",
        ),
        _entry(
            "joblib_model.joblib", b.joblib_array(), "joblib NumpyArrayWrapper with inline data"
        ),
        _entry(
            "model.safetensors",
            b.safetensors(
                {"w": ("F32", [2, 2], b.FLOAT4), "b": ("BF16", [2], b"\x80\x3f\x00\x40")},
                {"format": "pt"},
            ),
            "safetensors",
        ),
        _entry("model.gguf", b.gguf(SAFE_TEMPLATE), "GGUF with an ordinary chat template"),
        _entry("model.onnx", b.onnx_model(), "ONNX with inline initializer"),
        _entry(
            "external.onnx",
            b.onnx_model("weights.bin"),
            "ONNX with external data in the bundle",
            companions={"weights.bin": b.FLOAT4},
        ),
        _entry("model.keras", b.keras_archive([b.dense_layer()]), "Keras 3 archive"),
        _entry(
            "legacy_model.h5",
            b.hdf5_stub(
                {
                    "class_name": "Sequential",
                    "config": {
                        "name": "s",
                        "layers": [{"class_name": "Dense", "config": {"name": "d", "units": 2}}],
                    },
                }
            ),
            "Keras 2 HDF5 with model_config",
        ),
        _entry(
            "tokenizer_config.json",
            json.dumps({"chat_template": SAFE_TEMPLATE, "eos_token": "</s>"}).encode(),
            "tokenizer config with a chat template",
        ),
        _entry("README.md", b"# A model\n\nWeights for {{ nothing }}.\n", "text"),
        _entry(
            "config.json", json.dumps({"hidden_size": 8, "architectures": ["X"]}).encode(), "json"
        ),
        _entry(
            "bundle.tar",
            b.tar_of({"model.safetensors": b.safetensors({"w": ("F32", [4], b.FLOAT4)})}),
            "tar of safetensors",
        ),
        _entry("weights.pkl.gz", gzip.compress(pickle.dumps({"w": [1.0, 2.0]}), mtime=0), "gzip"),
    ]
    plain = {"weights": [0.5, 1.5], "name": "m", "shape": (2,), "tags": {"a"}, "raw": b"\x00"}
    for proto in range(6):
        samples.append(
            _entry(
                f"plain_p{proto}.pkl",
                pickle.dumps(plain, protocol=proto),
                f"plain data, protocol {proto}",
            )
        )
    samples.append(
        _entry("ordered.pkl", pickle.dumps(collections.OrderedDict(a=1), protocol=2), "OrderedDict")
    )
    samples.append(
        _entry(
            "numpy_pickle.pkl",
            pickle.dumps({"w": np.arange(3.0)}, protocol=4),
            "numpy arrays inside a pickle",
        )
    )
    samples.append(
        _entry(
            "two_pickles.pkl", pickle.dumps(1) + pickle.dumps([2]), "two data pickles in one stream"
        )
    )
    samples.append(
        _entry(
            "reconstructor_p0.pkl",
            Pickle(None)
            .global_("copy_reg", "_reconstructor")
            .mark()
            .global_("collections", "OrderedDict")
            .global_("__builtin__", "dict")
            .empty_dict()
            .tuple()
            .reduce()
            .stop(),
            "protocol 0 copy_reg._reconstructor, mapped to copyreg by fix_imports",
        )
    )
    # what real files look like and our own builders missed (issue 9, items 15-18)
    samples.append(
        _entry(
            "torch_zip64_end.pt",
            b.with_zip64_end(b.torch_zip(b.torch_state_dict_pickle())),
            "torch zip with the zip64 end record torch writes into every archive",
        )
    )
    samples.append(
        _entry(
            "torch_local_encrypted_flag.pt",
            b.with_encrypted_flag(
                b.with_zip64_end(b.torch_zip(b.torch_state_dict_pickle())),
                "archive/data.pkl",
                central=False,
                local=True,
            ),
            "the encrypted bit in a local header only, which torch ignores",
        )
    )
    for protocol in (0, 5):
        samples.append(
            _entry(
                f"numpy_protocol{protocol}.pkl",
                pickle.dumps(np.arange(6.0).reshape(2, 3), protocol=protocol),
                f"a NumPy array pickled with protocol {protocol}",
            )
        )
    for name, text in (
        ("NOTICE", "copyright 2024 the authors\nall rights reserved\n"),
        ("LICENSE", "cc-by-4.0\nAttribution 4.0 International\n"),
        ("config.yaml", "cosine_schedule:\n  warmup_steps: 500\n"),
        ("modeling.py", "class Config:\n    hidden_size = 64\n"),
        ("train.py", "x = 1\nprint(x)\n"),
    ):
        samples.append(_entry(name, text.encode(), "text whose first byte is a pickle opcode"))
    st_numeric = b.safetensors({"w": ("F32", [4], struct.pack("<4f", 1, 2, 3, 4))})
    samples.append(_entry("numeric_ok.safetensors", st_numeric, "finite weights", numeric=True))
    return samples
