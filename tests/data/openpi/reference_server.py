"""openpi's own ``WebsocketPolicyServer`` serving a small policy, to record server frames (record.py).

Needs openpi-client in a throwaway venv and openpi's server module, which is
not on PyPI: take it from the openpi repository
(``src/openpi/serving/websocket_policy_server.py``) into /tmp, then:

    /tmp/openpi-venv/bin/pip install typing_extensions   # openpi-client imports it undeclared
    /tmp/openpi-venv/bin/python tests/data/openpi/reference_server.py 8912 &
    /tmp/openpi-venv/bin/python tests/data/openpi/record.py ws://127.0.0.1:8912

The policy answers a chunk of 5 actions, ``state * [1..5]``, and raises on the prompt "fail".
"""

import logging
import sys

sys.path.insert(0, "/tmp")
import numpy as np
from openpi_client import base_policy
from websocket_policy_server import WebsocketPolicyServer


class P(base_policy.BasePolicy):
    def infer(self, obs):
        if obs.get("prompt") == "fail":
            raise ValueError("the policy was told to fail")
        s = np.asarray(obs["observation/state"], dtype=np.float32)
        return {"actions": np.stack([s * (k + 1) for k in range(5)])}


logging.basicConfig(level=logging.INFO)
WebsocketPolicyServer(
    P(), host="127.0.0.1", port=int(sys.argv[1]), metadata={"action_horizon": 5}
).serve_forever()
