"""The dtype names of the problem format, their torch dtypes and storage widths."""

from __future__ import annotations

import torch

# Format name -> torch dtype. float4_e2m1fn_x2 packs two e2m1 values per byte.
_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
    "float4_e2m1fn_x2": torch.float4_e2m1fn_x2,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_ALIASES = {"float4_e2m1": "float4_e2m1fn_x2", "float": "float32", "half": "float16",
            "double": "float64", "long": "int64", "int": "int32"}

DTYPE_NAMES: tuple[str, ...] = tuple(_DTYPES)
FLOAT8 = (torch.float8_e4m3fn, torch.float8_e5m2)
FLOAT4 = (torch.float4_e2m1fn_x2,)


def canonical_name(name: str) -> str:
    """The canonical spelling of a format dtype name; KeyError if unknown."""
    name = _ALIASES.get(name, name)
    if name not in _DTYPES:
        raise KeyError(name)
    return name


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[canonical_name(name)]


def name_of(dtype: torch.dtype) -> str:
    for name, value in _DTYPES.items():
        if value == dtype:
            return name
    raise KeyError(str(dtype))


def storage_bits(dtype: torch.dtype) -> int:
    """Bits one element occupies in memory (a packed fp4x2 element holds two values in 8 bits)."""
    return dtype.itemsize * 8


def is_float(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype in FLOAT4


def is_low_precision_float(dtype: torch.dtype) -> bool:
    """fp8 / fp4 storage types: no arithmetic on them in torch, compare after upcasting."""
    return dtype in FLOAT8 or dtype in FLOAT4
