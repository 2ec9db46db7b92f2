"""The bytes of Isaac GR00T's ZeroMQ policy protocol: msgpack with numpy arrays as ``.npy`` files.

GR00T's ``MsgSerializer`` (``gr00t/policy/server_client.py``; ``gr00t/eval/service.py``
in N1.5) packs every message with ``msgpack.packb`` and replaces each numpy
array by ``{"__ndarray_class__": True, "as_npy": <the bytes np.save writes>}``.
A server's ``ModalityConfig`` travels as ``{"__ModalityConfig_class__": True,
"as_json": ...}``; trialrun does not need it and keeps it as that plain dict.

The server is a network peer, so decoding trusts nothing it sends:

- a message longer than ``max_bytes`` is refused before msgpack sees it
  (msgpack's own limits then follow from the message length);
- an ``.npy`` payload is read with ``allow_pickle=False`` (an object array,
  which would need pickle, is refused), and its header is checked first: the
  element count it declares must match the bytes that follow, so a header
  claiming a terabyte array cannot make numpy allocate one.

Example:
    >>> import numpy as np
    >>> message = encode({"endpoint": "get_action", "data": {"state.arm": np.zeros((2, 1, 3), np.float32)}})
    >>> decode(message)["data"]["state.arm"].shape
    (2, 1, 3)
"""

from __future__ import annotations

import io
from typing import Any

import msgpack
import numpy as np

NDARRAY_TAG = "__ndarray_class__"
MODALITY_CONFIG_TAG = "__ModalityConfig_class__"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Default cap on one message: 256 MiB, well above a batch of 64 camera frames at 224x224."""
MAX_NPY_HEADER_BYTES = 10_000
"""numpy's own default ``max_header_size``: a longer ``.npy`` header is refused."""


class Gr00tCodecError(ValueError):
    """A GR00T message could not be encoded or was refused when decoded (the reason is the text)."""


def encode(obj: Any) -> bytes:
    """``obj`` as GR00T's ``MsgSerializer.to_bytes`` would write it.

    numpy scalars become Python numbers (GR00T's serializer has no case for
    them, so a real client never sends one); object arrays are refused since
    the peer loads arrays without pickle.
    """
    try:
        packed: bytes = msgpack.packb(obj, default=_encode_custom, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Gr00tCodecError(f"cannot encode a GR00T message: {exc}") from exc
    return packed


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """A GR00T message from its bytes, arrays loaded without pickle and with checked sizes."""
    if len(data) > max_bytes:
        raise Gr00tCodecError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        return msgpack.unpackb(data, object_hook=_decode_custom, raw=False, strict_map_key=False)
    except Gr00tCodecError:
        raise
    except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors
        raise Gr00tCodecError(f"not a valid GR00T (msgpack) message: {exc}") from exc


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``array`` (``np.save`` without pickle), as GR00T puts them in ``as_npy``."""
    if array.dtype.hasobject:
        raise Gr00tCodecError(f"cannot send an array of dtype {array.dtype} (object arrays need pickle)")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load_npy(payload: Any) -> np.ndarray:
    """The array of an ``as_npy`` payload, refusing object dtypes and sizes the bytes do not back."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise Gr00tCodecError(f"'as_npy' must be bytes, got {type(payload).__name__}")
    raw = bytes(payload)
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=MAX_NPY_HEADER_BYTES
            )
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=MAX_NPY_HEADER_BYTES
            )
        else:
            raise Gr00tCodecError(f"not a valid .npy payload: unsupported format version {version}")
    except Gr00tCodecError:
        raise
    except (ValueError, TypeError, SyntaxError, EOFError) as exc:
        raise Gr00tCodecError(f"not a valid .npy payload: {exc}") from exc
    if dtype.hasobject:
        raise Gr00tCodecError(f"refused an array of dtype {dtype}: loading it would need pickle")
    count = 1
    for n in shape:
        count *= int(n)
    expected = count * dtype.itemsize
    remaining = len(raw) - stream.tell()
    if remaining != expected:
        raise Gr00tCodecError(
            f"an array of shape {tuple(shape)} and dtype {dtype} needs {expected} bytes, "
            f"the payload has {remaining}"
        )
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False, max_header_size=MAX_NPY_HEADER_BYTES)
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise Gr00tCodecError(f"not a valid .npy payload: {exc}") from exc
    if not isinstance(array, np.ndarray):  # np.load of an .npz would give an NpzFile
        raise Gr00tCodecError("an 'as_npy' payload must hold one array")
    return array


def _encode_custom(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {NDARRAY_TAG: True, "as_npy": npy_bytes(obj)}
    if isinstance(obj, np.generic):
        value = obj.item()
        if isinstance(value, bytes | str | bool | int | float):
            return value
    raise TypeError(f"cannot serialize an object of type {type(obj).__name__}")


def _decode_custom(obj: dict[Any, Any]) -> Any:
    if obj.get(NDARRAY_TAG):
        return load_npy(obj.get("as_npy"))
    return obj
