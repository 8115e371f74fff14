"""The vetted default allow-list of pickle globals, as `module:qualified_name` strings.

These are the names ordinary checkpoints import: PyTorch's tensor and storage rebuilders, dtypes
and layouts (the same family that `torch.load(weights_only=True)` accepts), NumPy's array and
scalar reconstructors under both the 1.x (`numpy.core`) and 2.x (`numpy._core`) module names and
for every pickle protocol, joblib's array wrapper, and plain builtin containers. Each entry is data
the loader builds or a constructor whose arguments are themselves checked; nothing here imports
by name, evaluates text, opens files or runs a nested unpickler. This module holds data only.
"""

from __future__ import annotations

_TORCH_STORAGES = [
    "DoubleStorage",
    "FloatStorage",
    "HalfStorage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "BFloat16Storage",
    "ComplexDoubleStorage",
    "ComplexFloatStorage",
    "QUInt8Storage",
    "QInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
]

_TORCH_DTYPES = [
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "complex32",
    "complex64",
    "complex128",
    "quint8",
    "qint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    *(f"int{n}" for n in range(1, 8)),
    *(f"uint{n}" for n in range(1, 8)),
    "double",
    "float",
    "half",
    "long",
    "int",
    "short",
    "cfloat",
    "cdouble",
]

_TORCH_OTHER = (
    "torch:Size",
    "torch:device",
    "torch:dtype",
    "torch:strided",
    "torch:sparse_coo",
    "torch:sparse_csr",
    "torch:per_tensor_affine",
    "torch:per_channel_affine",
    "torch:per_tensor_symmetric",
    "torch:per_channel_symmetric",
    "torch:per_channel_affine_float_qparams",
    "torch:Tensor",
    "torch._tensor:_rebuild_from_type_v2",
    "torch._utils:_rebuild_tensor",
    "torch._utils:_rebuild_tensor_v2",
    "torch._utils:_rebuild_tensor_v3",
    "torch._utils:_rebuild_parameter",
    "torch._utils:_rebuild_parameter_with_state",
    "torch._utils:_rebuild_qtensor",
    "torch._utils:_rebuild_sparse_tensor",
    "torch._utils:_rebuild_meta_tensor_no_storage",
    "torch._utils:_rebuild_device_tensor_from_numpy",
    "torch._utils:_rebuild_device_tensor_from_cpu_tensor",
    "torch._utils:_rebuild_nested_tensor",
    "torch._utils:_rebuild_wrapper_subclass",
    # torch registers this with copyreg for every torch.layout (sparse tensors pickle one); it
    # looks the name up among torch's own layouts and fails for anything else
    "torch.serialization:_get_layout",
    "torch.nn.parameter:Parameter",
    "torch.storage:UntypedStorage",
    "torch:UntypedStorage",
)

_NUMPY = (
    "numpy:ndarray",
    "numpy:dtype",
    "numpy.core.multiarray:_reconstruct",
    "numpy.core.multiarray:scalar",
    "numpy._core.multiarray:_reconstruct",
    "numpy._core.multiarray:scalar",
    # protocol 5 pickles arrays as _frombuffer(buffer, dtype, shape, order): a view of bytes
    "numpy.core.numeric:_frombuffer",
    "numpy._core.numeric:_frombuffer",
    "numpy.dtypes:Float16DType",
    "numpy.dtypes:Float32DType",
    "numpy.dtypes:Float64DType",
    "numpy.dtypes:Int8DType",
    "numpy.dtypes:Int16DType",
    "numpy.dtypes:Int32DType",
    "numpy.dtypes:Int64DType",
    "numpy.dtypes:UInt8DType",
    "numpy.dtypes:UInt16DType",
    "numpy.dtypes:UInt32DType",
    "numpy.dtypes:UInt64DType",
    "numpy.dtypes:BoolDType",
    "numpy.dtypes:Complex64DType",
    "numpy.dtypes:Complex128DType",
    "joblib.numpy_pickle:NumpyArrayWrapper",
)

_BUILTINS = (
    "builtins:dict",
    "builtins:list",
    "builtins:tuple",
    "builtins:set",
    "builtins:frozenset",
    "builtins:int",
    "builtins:float",
    "builtins:complex",
    "builtins:bool",
    "builtins:str",
    "builtins:bytes",
    "builtins:bytearray",
    "builtins:slice",
    "builtins:object",
    "collections:OrderedDict",
    "collections:Counter",
    "collections:deque",
    "copyreg:_reconstructor",
    "_codecs:encode",
    "datetime:date",
    "datetime:time",
    "datetime:datetime",
    "datetime:timedelta",
    "datetime:timezone",
    "decimal:Decimal",
    "fractions:Fraction",
    "uuid:UUID",
    "pathlib:PosixPath",
    "pathlib:WindowsPath",
    "pathlib:PurePosixPath",
    "pathlib:PureWindowsPath",
    "argparse:Namespace",
)

DEFAULT_ALLOWED_GLOBALS: frozenset[str] = frozenset(
    [f"torch:{name}" for name in _TORCH_STORAGES]
    + [f"torch:{name}" for name in _TORCH_DTYPES]
    + list(_TORCH_OTHER)
    + list(_NUMPY)
    + list(_BUILTINS)
)
