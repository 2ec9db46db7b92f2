"""``image_noise``: degrade the camera images a policy gets.

The images a policy sees are the ``camera/<name>`` entries a job's
``obs_map`` adds (:class:`trialrun.recording.camera_obs.CameraObservations`)
and any other uint8 image in the observation (an image Box observation, or
a Dict entry of shape ``H x W``, ``H x W x 1`` or ``H x W x 3``). Saved
videos are rendered separately from the simulator and stay clean.

Four parameters; the factor samples the one named by ``param`` and the
others stay at the value given in the variation (default: nominal). Applied
in the order a camera degrades an image:

- ``brightness`` (nominal 1): pixel values multiplied by it;
- ``blur`` (nominal 0): Gaussian blur radius in pixels (Pillow's ``GaussianBlur``);
- ``std`` (nominal 0): Gaussian pixel noise, std in pixel levels (0-255),
  one draw per pixel and step from the slot's generator;
- ``jpeg_quality`` (nominal 100 = no compression): a JPEG round trip at that
  quality (1-99).

Results are rounded and clipped to 0-255 and stay uint8.

Example:
    >>> import gymnasium as gym
    >>> space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (2,)),
    ...                          "camera/top": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})
    >>> class Looks(gym.Env):
    ...     observation_space, action_space = space, gym.spaces.Discrete(2)
    >>> v = ImageNoise({"param": "brightness"}); v.bind(Looks())
    >>> v.nominal(), v.apply(None, 0.5), v.begin(seed=1, name="dim")
    (1.0, 0.5, True)
    >>> obs = {"state": np.zeros(2), "camera/top": np.full((4, 4, 3), 200, np.uint8)}
    >>> int(v.observe(obs)["camera/top"].max()), int(obs["camera/top"].max())
    (100, 200)
"""

from __future__ import annotations

import io
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import FactorValue, TargetInfo
from trialrun.variations.perturbations import CAMERA_PREFIX, Perturbation, _non_negative
from trialrun.variations.registry import register_variation

Param = Literal["std", "blur", "jpeg_quality", "brightness"]
NOMINALS: dict[str, FactorValue] = {"std": 0.0, "blur": 0.0, "jpeg_quality": 100, "brightness": 1.0}
"""Each parameter's unperturbed value."""


class ImageNoiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    param: Param = "std"
    """The parameter the factor's value sets."""
    std: float = Field(default=0.0, ge=0)
    blur: float = Field(default=0.0, ge=0)
    jpeg_quality: int = Field(default=100, ge=1, le=100)
    brightness: float = Field(default=1.0, ge=0)
    keys: list[str] | None = Field(default=None, min_length=1)
    """Observation entries to degrade (default: every image the policy gets)."""


def _is_image(space: gym.Space[Any]) -> bool:
    if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8):
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))


@register_variation
class ImageNoise(Perturbation):
    """Brightness, blur, pixel noise and JPEG compression of the images a policy gets."""

    type_name = "image_noise"
    Params = ImageNoiseParams
    layer = 4
    _target_name = "camera images"
    _note = (
        "brightness, blur, noise, JPEG on policy images, not videos (param: std|blur|jpeg_quality|brightness)"
    )

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        sampled = self.params.param
        if sampled in self.params.model_fields_set:
            raise self.error(
                f"image_noise: '{sampled}' is the factor's param (its value is sampled); "
                f"remove '{sampled}' from the variation or sample another param"
            )
        self._value = NOMINALS[sampled]

    @property
    def units(self) -> str | None:
        return {"std": "levels", "blur": "px"}.get(self.params.param)

    def nominal(self) -> FactorValue:
        return NOMINALS[self.params.param]

    def restore(self, env: gym.Env[Any, Any] | None) -> None:
        self._value = NOMINALS[self.params.param]

    def _check(self, value: FactorValue) -> Any:
        param = self.params.param
        number = _non_negative(self, value, param)
        if param == "jpeg_quality":
            if number != int(number) or not 1 <= number <= 100:
                raise self.error(f"image_noise: jpeg_quality must be a whole number in 1..100, got {value!r}")
            return int(number)
        return number

    def _settings(self) -> dict[str, Any]:
        settings = {name: getattr(self.params, name) for name in NOMINALS}
        settings[self.params.param] = self._value
        return settings

    def active(self) -> bool:
        return any(value != NOMINALS[name] for name, value in self._settings().items())

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            images = [k for k, s in space.spaces.items() if k.startswith(CAMERA_PREFIX) or _is_image(s)]
            if self.params.keys is not None:
                unknown = [k for k in self.params.keys if k not in images]
                if unknown:
                    raise self.error(
                        f"image_noise: {unknown} are not images of the observation; "
                        f"its images: {', '.join(images) or '(none)'}"
                    )
                images = list(self.params.keys)
            self._images: list[str] | None = images
            self._found = bool(images)
        else:
            self._images = None
            self._found = _is_image(space)
        # An env without images here may still get cameras later (the policy's
        # obs_map adds them around the env the preflight checks): checked at begin.
        self._space = space

    def _start(self) -> None:
        if not self._found:
            raise self.error(
                f"image_noise: the policy gets no camera image (observation space {self._space}); "
                "name a camera in the policy's obs_map (camera/<name>) or use an image observation"
            )
        self._current = self._settings()

    def observe(self, obs: Any) -> Any:
        if self._images is None:
            return self._degrade(np.asarray(obs))
        out = dict(obs)
        for key in self._images:
            out[key] = self._degrade(np.asarray(obs[key]))
        return out

    def _degrade(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image, ImageFilter  # a dependency of matplotlib; only images need it

        s = self._current
        pixels = image.astype(np.float64)
        if s["brightness"] != 1.0:
            pixels = pixels * s["brightness"]
        if s["blur"] > 0:
            squeezed = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
            gray = squeezed.ndim == 3 and squeezed.shape[-1] == 1
            picture = Image.fromarray(squeezed[..., 0] if gray else squeezed)
            blurred = np.asarray(picture.filter(ImageFilter.GaussianBlur(radius=s["blur"])))
            pixels = (blurred[..., None] if gray else blurred).astype(np.float64)
        if s["std"] > 0:
            pixels = pixels + self._rng.normal(0.0, s["std"], pixels.shape)
        out = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        if s["jpeg_quality"] < 100:
            gray = out.ndim == 3 and out.shape[-1] == 1
            buffer = io.BytesIO()
            Image.fromarray(out[..., 0] if gray else out).save(
                buffer, format="JPEG", quality=s["jpeg_quality"]
            )
            decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
            out = decoded[..., None] if gray else decoded
        return np.ascontiguousarray(out, dtype=np.uint8)

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        return [
            TargetInfo(
                cls.type_name, cls._target_name, "std 0, blur 0, jpeg 100, brightness 1", None, cls._note
            )
        ]
