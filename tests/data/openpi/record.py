"""Frames of openpi's msgpack-numpy, recorded with openpi-client's own code.

``corpus()`` builds the objects (numpy only, so numpy 1.x and 2.x build the
same ones); run this file with an interpreter that has the PyPI
``openpi-client`` (it pins numpy<2, so use a throwaway venv) to (re)write
``<name>.msgpack`` next to it with ``openpi_client.msgpack_numpy.packb``:

    python -m venv /tmp/openpi-venv
    /tmp/openpi-venv/bin/pip install openpi-client "numpy<2"
    /tmp/openpi-venv/bin/python tests/data/openpi/record.py

With a URL, it records the frames of openpi's own server instead (see record_server).

tests/test_policies_openpi.py checks that trialrun's codec writes these exact
bytes and reads them back to the corpus.
"""

from __future__ import annotations

import pathlib

import numpy as np


def corpus() -> dict:
    """name -> object; every case small (the recorded frames total a few KB)."""
    image = (np.arange(8 * 8 * 3) % 251).astype(np.uint8).reshape(8, 8, 3)
    return {
        "float32": np.linspace(-1.0, 1.0, 7, dtype=np.float32),
        "image_uint8": image,
        "int64": np.arange(-3, 9, dtype=np.int64).reshape(3, 4),
        "bool": np.array([[True, False, True], [False, False, True]]),
        "zero_d": np.array(2.5, dtype=np.float64),
        "empty": np.zeros((0, 7), dtype=np.float32),
        "big_endian": np.arange(3, dtype=">f8"),
        "transposed": np.arange(6, dtype=np.int16).reshape(2, 3).T,
        "unicode_array": np.array(["pick", "place"]),
        "scalars": {
            "f32": np.float32(0.1),
            "f64": np.float64(-2.25),
            "i64": np.int64(-7),
            "u8": np.uint8(200),
            "bool": np.bool_(True),
            "str": np.str_("hi"),
        },
        "libero_observation": {
            "observation/image": image,
            "observation/wrist_image": image[::-1].copy(),
            "observation/state": np.arange(8, dtype=np.float32) / 8,
            "prompt": "put the bowl on the plate",
        },
        "reply": {
            "actions": (np.arange(10 * 7, dtype=np.float32).reshape(10, 7) - 35) / 35,
            "server_timing": {"infer_ms": 12.5, "prev_total_ms": 14.0},
        },
        "metadata": {
            "policy": "pendulum-swingup",
            "action_horizon": 1,
            "nested": {"list": [1, 2.0, "x", None]},
        },
    }


def record_server(url: str) -> None:
    """Frames as openpi's own ``WebsocketPolicyServer`` sends them (serving reference_server.py's
    policy: actions = state * [1..5], a ValueError on the prompt "fail"): the metadata frame, a reply, and
    the error text frame. Written as server_metadata.msgpack, server_reply.msgpack, server_error.txt."""
    import websockets.sync.client
    from openpi_client import msgpack_numpy

    here = pathlib.Path(__file__).parent
    with websockets.sync.client.connect(url, compression=None, max_size=None) as ws:
        (here / "server_metadata.msgpack").write_bytes(ws.recv())
        ws.send(msgpack_numpy.packb({"observation/state": np.array([1.0, -1.0], np.float32), "prompt": "go"}))
        (here / "server_reply.msgpack").write_bytes(ws.recv())
        ws.send(msgpack_numpy.packb({"observation/state": np.zeros(2, np.float32), "prompt": "fail"}))
        error = ws.recv()
        assert isinstance(error, str)
        (here / "server_error.txt").write_text(error)


def record_codec() -> None:
    """Write ``<name>.msgpack`` for every case of :func:`corpus` with openpi-client's ``packb``."""
    from openpi_client import msgpack_numpy

    here = pathlib.Path(__file__).parent
    for name, obj in corpus().items():
        (here / f"{name}.msgpack").write_bytes(msgpack_numpy.packb(obj))
    print(f"wrote {len(corpus())} frames to {here} with numpy {np.__version__}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:  # the URL of reference_server.py
        record_server(sys.argv[1])
    else:
        record_codec()
