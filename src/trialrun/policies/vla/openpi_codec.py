"""The bytes of openpi's policy protocol: msgpack with numpy arrays, as ``openpi_client.msgpack_numpy``.

openpi (``packages/openpi-client/src/openpi_client/msgpack_numpy.py``) packs
every frame with ``msgpack.packb(obj, default=pack_array)`` and replaces

- each numpy array by ``{b"__ndarray__": True, b"data": arr.tobytes(),
  b"dtype": arr.dtype.str, b"shape": arr.shape}``,
- each numpy scalar by ``{b"__npgeneric__": True, b"data": x.item(),
  b"dtype": x.dtype.str}``,

and refuses object, void and complex dtypes. (``np.float64`` and ``np.str_``
subclass ``float`` and ``str``: msgpack writes them as a plain number and
text without asking, so they come back as ``float`` and ``str``.) The keys are msgpack *bin*
strings (Python ``bytes``), not text. :func:`packb` writes exactly the bytes
openpi-client writes (tests/data/openpi/ holds frames recorded with
openpi-client itself), and :func:`unpackb` reads what it writes.

The code is here rather than a dependency because the PyPI ``openpi-client``
pins ``numpy<2``.

Decoding differs from openpi's only where a peer could do harm or send
nonsense: a tagged map whose dtype is object/void/complex, whose shape is not
a list of non-negative integers or whose ``data`` does not hold exactly
``prod(shape) * itemsize`` bytes raises :class:`OpenpiCodecError` (openpi
would raise numpy's ``TypeError`` for a short buffer and accept a long one).
Decoded arrays are read-only views of the frame's bytes, as openpi's are.

Example:
    >>> import numpy as np
    >>> frame = packb({"observation/state": np.arange(3, dtype=np.float32), "prompt": "lift"})
    >>> frame[:20]
    b'\\x82\\xb1observation/state\\x84'
    >>> obs = unpackb(frame)
    >>> obs["observation/state"], obs["prompt"]
    (array([0., 1., 2.], dtype=float32), 'lift')
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

NDARRAY_TAG = b"__ndarray__"
NPGENERIC_TAG = b"__npgeneric__"
REFUSED_KINDS = ("V", "O", "c")
"""dtype kinds openpi refuses: void (structured), object (would need pickle), complex."""


class OpenpiCodecError(ValueError):
    """A frame that is not openpi's msgpack-numpy, or holds an array it cannot carry."""


def packb(obj: Any) -> bytes:
    """``obj`` as the bytes ``openpi_client.msgpack_numpy.packb(obj)`` returns.

    Raises:
        ValueError: an array or scalar of an object, void or complex dtype
            (openpi's own message: ``Unsupported dtype: ...``).
        TypeError: something msgpack cannot carry (a set, a datetime...).
    """
    data: bytes = msgpack.packb(obj, default=_pack_array)
    return data


def unpackb(data: bytes) -> Any:
    """The object in ``data``, arrays and numpy scalars restored as ``openpi_client`` does.

    Raises:
        OpenpiCodecError: not msgpack, or a tagged array or scalar that does not
            describe a valid one (see the module docstring).
    """
    try:
        return msgpack.unpackb(data, object_hook=_unpack_array)
    except OpenpiCodecError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:  # msgpack's errors are ValueErrors
        raise OpenpiCodecError(f"not an openpi msgpack frame: {exc}") from exc


def _pack_array(obj: Any) -> Any:
    # The same tests, in the same order, as openpi's pack_array: the bytes must match.
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in REFUSED_KINDS:
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {NDARRAY_TAG: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {NPGENERIC_TAG: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


_DTYPES: dict[str, np.dtype[Any]] = {}
"""dtypes already checked, by their text: a frame's ``np.dtype("<f4")`` costs more than the array."""


def _dtype(obj: dict[Any, Any]) -> np.dtype[Any]:
    text = obj.get(b"dtype")
    known = _DTYPES.get(text) if isinstance(text, str) else None
    if known is not None:
        return known
    if not isinstance(text, str):
        raise OpenpiCodecError(f"an array's dtype must be text, got {type(text).__name__}")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise OpenpiCodecError(f"unknown dtype {text!r}") from exc
    if dtype.kind in REFUSED_KINDS:
        raise OpenpiCodecError(f"refused an array of dtype {dtype} (openpi carries no {dtype.kind!r} arrays)")
    if len(_DTYPES) < 256:  # a peer cannot grow it without bound
        _DTYPES[text] = dtype
    return dtype


def _unpack_array(obj: dict[Any, Any]) -> Any:
    if NDARRAY_TAG in obj:
        dtype = _dtype(obj)
        shape, data = obj.get(b"shape"), obj.get(b"data")
        if not isinstance(shape, list | tuple) or not all(type(n) is int and n >= 0 for n in shape):
            raise OpenpiCodecError(f"an array's shape must be a list of sizes >= 0, got {shape!r}")
        if not isinstance(data, bytes):
            raise OpenpiCodecError(f"an array's data must be bytes, got {type(data).__name__}")
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise OpenpiCodecError(
                f"an array of shape {tuple(shape)} and dtype {dtype} needs {expected} bytes, got {len(data)}"
            )
        return np.ndarray(buffer=data, dtype=dtype, shape=tuple(shape))
    if NPGENERIC_TAG in obj:
        dtype = _dtype(obj)
        try:
            return dtype.type(obj.get(b"data"))
        except (TypeError, ValueError, OverflowError) as exc:
            raise OpenpiCodecError(f"not a numpy scalar of dtype {dtype}: {exc}") from exc
    return obj
