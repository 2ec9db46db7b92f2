"""From an env's observation (and cameras, and the instruction) to a server's request keys.

A VLA server wants one dict per request with its own key names: openpi's
LIBERO policy reads ``observation/image``, ``observation/wrist_image``,
``observation/state`` and ``prompt``; GR00T reads ``video.<camera>``,
``state.<part>`` and ``annotation.human.task_description``. ``obs_map:`` in
the policy maps each server key to where its value comes from:

- ``state``: the whole observation (a Box observation);
- ``obs.<key>``: one entry of a Dict observation;
- ``instruction``: the job's instruction, or the episode's when a
  ``language`` factor draws one;
- ``{camera: NAME, size: [H, W]}``: a camera image (uint8, H x W x 3),
  rendered each step only because it is mapped (``default`` is the env's own
  ``render()``, other names are MuJoCo cameras).

Without ``obs_map``, a Box observation goes to ``observation/state``, each
entry of a Dict observation to ``observation/<key>``, and the instruction (if
the job has one) to ``prompt``.

Example:
    >>> import numpy as np, gymnasium as gym
    >>> space = gym.spaces.Box(-1, 1, (3,))
    >>> mapper = ObservationMapper(None, space)
    >>> mapper.requests(np.zeros((2, 3)), [1], ["lift the cube", None])
    [{'observation/state': array([0., 0., 0.]), 'prompt': None}]
    >>> camera_sizes({"obs_map": {"observation/image": {"camera": "corner", "size": [224, 224]}}})
    {'corner': (224, 224)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError

CAMERA_PREFIX = "camera/"
"""Key of a mapped camera's image in the observation (the env is wrapped to add it)."""
STATE = "state"
INSTRUCTION = "instruction"
DEFAULT_PROMPT_KEY = "prompt"
DEFAULT_STATE_KEY = "observation/state"
DEFAULT_IMAGE_SIZE = (224, 224)


@dataclass(frozen=True)
class _Source:
    kind: str  # "state" | "key" | "instruction" | "camera"
    name: str = ""


def camera_sizes(policy_kwargs: Mapping[str, Any], field: str = "policy") -> dict[str, tuple[int, int]]:
    """The cameras a server policy's ``obs_map`` needs, with their (height, width):
    whoever builds the env wraps it to render them (and only them) each step."""
    cameras: dict[str, tuple[int, int]] = {}
    for key, source in _raw_map(policy_kwargs, field).items():
        if isinstance(source, Mapping):
            name, size = _camera(source, f"{field}.obs_map.{key}")
            if cameras.get(name, size) != size:
                raise ConfigError(
                    f"camera '{name}' is mapped twice with different sizes", field=f"{field}.obs_map"
                )
            cameras[name] = size
    return cameras


def _raw_map(policy_kwargs: Mapping[str, Any], field: str) -> dict[str, Any]:
    raw = policy_kwargs.get("obs_map")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise ConfigError("obs_map must map server keys (text) to sources", field=f"{field}.obs_map")
    return dict(raw)


def _camera(source: Mapping[str, Any], field: str) -> tuple[str, tuple[int, int]]:
    unknown = set(source) - {"camera", "size"}
    if unknown or not isinstance(source.get("camera"), str):
        raise ConfigError(
            "a camera source is {camera: NAME, size: [HEIGHT, WIDTH]}"
            + (f" (unknown key(s): {', '.join(sorted(unknown))})" if unknown else ""),
            field=field,
        )
    size = source.get("size", list(DEFAULT_IMAGE_SIZE))
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096 for v in size)
    ):
        raise ConfigError(f"size must be [HEIGHT, WIDTH], integers in 8..4096, got {size!r}", field=field)
    return source["camera"], (int(size[0]), int(size[1]))


class ObservationMapper:
    """Builds one request per world from a batch of observations."""

    def __init__(
        self,
        obs_map: Mapping[str, Any] | None,
        observation_space: gym.Space[Any],
        *,
        field: str = "policy",
        has_instruction: bool = True,
    ) -> None:
        self.observation_space = observation_space
        keys = list(observation_space.spaces) if isinstance(observation_space, gym.spaces.Dict) else None
        if obs_map is None:
            self.sources = self._defaults(keys, has_instruction)
        else:
            self.sources = {
                server_key: self._parse(source, keys, f"{field}.obs_map.{server_key}")
                for server_key, source in _raw_map({"obs_map": obs_map}, field).items()
            }

    @staticmethod
    def _defaults(keys: list[str] | None, has_instruction: bool) -> dict[str, _Source]:
        if keys is None:
            sources = {DEFAULT_STATE_KEY: _Source(STATE)}
        else:
            sources = {f"observation/{k}": _Source("key", k) for k in keys if not k.startswith(CAMERA_PREFIX)}
        if has_instruction:
            sources[DEFAULT_PROMPT_KEY] = _Source(INSTRUCTION)
        return sources

    def _parse(self, source: Any, keys: list[str] | None, field: str) -> _Source:
        if isinstance(source, Mapping):
            name, _ = _camera(source, field)
            if keys is None or CAMERA_PREFIX + name not in keys:
                raise ConfigError(
                    f"camera '{name}' is not in the observation: the env must be built with it "
                    "(trialrun does so for the obs_map of a job's policy)",
                    field=field,
                )
            return _Source("camera", name)
        if source == STATE:
            if keys is not None and STATE not in keys:
                raise ConfigError(
                    f"'state' is the whole observation, but this env's observation is a Dict with keys "
                    f"{keys}: map one of them as obs.<key>",
                    field=field,
                )
            return _Source("key", STATE) if keys is not None else _Source(STATE)
        if source == INSTRUCTION:
            return _Source(INSTRUCTION)
        if isinstance(source, str) and source.startswith("obs."):
            key = source[len("obs.") :]
            if keys is None or key not in keys:
                have = f"its keys: {', '.join(keys)}" if keys is not None else "it is not a Dict observation"
                raise ConfigError(f"the observation has no key '{key}' ({have})", field=field)
            return _Source("key", key)
        raise ConfigError(
            f"unknown source {source!r}; use state, obs.<key>, instruction or {{camera: NAME, size: [H, W]}}",
            field=field,
        )

    def requests(
        self, obs: Any, worlds: Sequence[int], instructions: Sequence[str | None]
    ) -> list[dict[str, Any]]:
        """One request dict per world in ``worlds`` (``instructions[i]`` is world i's)."""
        out: list[dict[str, Any]] = []
        for i in worlds:
            request: dict[str, Any] = {}
            for server_key, source in self.sources.items():
                if source.kind == STATE:
                    request[server_key] = np.asarray(obs[i])
                elif source.kind == "key":
                    request[server_key] = np.asarray(obs[source.name][i])
                elif source.kind == "camera":
                    request[server_key] = np.asarray(obs[CAMERA_PREFIX + source.name][i], dtype=np.uint8)
                else:
                    request[server_key] = instructions[i]
            out.append(request)
        return out
