"""A small stdlib reader for a GGUF file's header: validity, quantization type, chat template.

The catalog uses it to check a file before any engine is imported (a wrong magic or a header cut
short is reported with the path and the fix) and to learn the file's native quantization.
Arrays (the vocabulary) are skipped, not kept.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from wattlab.errors import ModelError

GGUF_MAGIC = b"GGUF"

# llama.cpp's `enum llama_ftype` (general.file_type) for the types wattlab names.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
FILE_TYPE_IDS: dict[str, int] = {name: code for code, name in FILE_TYPES.items()}

# GGUF value types: code -> struct format (scalars); 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Truncated(Exception):
    pass


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Truncated
    return data


def _scalar(f: BinaryIO, code: int) -> Any:
    fmt = "<" + _SCALARS[code]
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _read(f, 8))
    return _read(f, length).decode("utf-8", errors="replace")


def _value(f: BinaryIO, code: int, keep: bool) -> Any:
    if code in _SCALARS:
        return _scalar(f, code)
    if code == _STRING:
        return _string(f)
    if code == _ARRAY:
        item_code, count = struct.unpack("<IQ", _read(f, 12))
        if item_code in _SCALARS and not keep:
            f.seek(struct.calcsize(_SCALARS[item_code]) * count, 1)
            return None
        items = [_value(f, item_code, keep) for _ in range(count)]
        return items if keep else None
    raise ValueError(f"unknown GGUF value type {code}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The header's key/value pairs (arrays left out), or ModelError naming the problem and the fix."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
            if magic != GGUF_MAGIC:
                raise ModelError(
                    f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                    fix="give a .gguf model file, or a Hugging Face checkpoint directory",
                    title="Not a GGUF file",
                )
            version, _n_tensors, n_kv = struct.unpack("<IQQ", _read(f, 20))
            meta: dict[str, Any] = {"GGUF.version": version}
            for _ in range(n_kv):
                key = _string(f)
                (code,) = struct.unpack("<I", _read(f, 4))
                value = _value(f, code, keep=False)
                if value is not None:
                    meta[key] = value
            return meta
    except _Truncated:
        raise ModelError(
            f"{path} is truncated: its GGUF header ends early",
            fix="the download or copy was cut short: fetch the file again, or delete it",
            title="Corrupt GGUF file",
        ) from None
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ModelError(
            f"{path} has a corrupt GGUF header ({exc})",
            fix="fetch the file again, or delete it",
            title="Corrupt GGUF file",
        ) from None
    except OSError as exc:
        raise ModelError(
            f"cannot read {path}: {exc.strerror}", fix="check the path and permissions"
        ) from None


def file_type(meta: dict[str, Any]) -> str:
    """The quantization name of a GGUF ("Q4_1", "Q8_0", ...), from general.file_type."""
    code = meta.get("general.file_type")
    if code is None:
        return "unknown"
    return FILE_TYPES.get(int(code), f"ftype{code}")
