"""Scripted controllers that really solve their tasks: baselines with known
behaviour, useful to check a sweep before a learned policy is evaluated.

- ``cartpole-balance``: LQR on CartPole's linearised dynamics; the continuous
  LQR force is turned into CartPole's push-left/push-right action by its sign.
- ``pendulum-swingup``: energy pumping (``dE/dt = theta_dot * u``) until the
  pendulum nears the top, then LQR to hold it upright.
- ``cartpole-pd``: a PD balance controller for the DeepMind Control Suite
  cartpole as MuJoCo Playground serves it (``playground/CartpoleBalance``),
  whose observation is ``(cart x, cos, sin, cart velocity, pole velocity)``.

Both compute their gains from physical parameters given as kwargs (defaulting
to Gymnasium's nominal values), so a sweep over, say, pole length shows how a
controller tuned for the nominal system degrades.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> env = gym.make("CartPole-v1")
    >>> ctx = PolicyContext("CartPole-v1", 1, env.observation_space, env.action_space, {})
    >>> policy, (obs, _), total = CartPoleBalancePolicy(ctx), env.reset(seed=0), 0.0
    >>> done = False
    >>> while not done:
    ...     obs, r, term, trunc, _ = env.step(int(policy.act(obs[None])[0]))
    ...     total += r; done = term or trunc
    >>> total
    500.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from scipy.linalg import solve_continuous_are

from trialrun.policies.base import PolicyContext


def lqr_gain(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Continuous-time LQR gain ``K`` (``u = -K x``) from the Riccati equation."""
    p = solve_continuous_are(a, b, q, r)
    return np.asarray(np.linalg.solve(r, b.T @ p))


def _require(space: gym.Space[Any], kind: type, shape: tuple[int, ...] | None, name: str) -> None:
    if not isinstance(space, kind) or (shape is not None and space.shape != shape):
        raise TypeError(f"policy '{name}' needs a {kind.__name__}{shape or ''} space, got {space}")


class CartPoleBalancePolicy:
    """LQR balance controller for ``CartPole-v1`` (discrete push actions)."""

    def __init__(
        self,
        context: PolicyContext,
        gravity: float = 9.8,
        masscart: float = 1.0,
        masspole: float = 0.1,
        length: float = 0.5,
        q: Sequence[float] = (1.0, 1.0, 10.0, 1.0),
        r: float = 1.0,
    ) -> None:
        _require(context.observation_space, gym.spaces.Box, (4,), "cartpole-balance")
        _require(context.action_space, gym.spaces.Discrete, None, "cartpole-balance")
        total = masscart + masspole
        # Linearisation of Gymnasium's CartPole equations at theta = 0.
        denom = length * (4.0 / 3.0 - masspole / total)
        a = np.array(
            [
                [0, 1, 0, 0],
                [0, 0, -masspole * length * gravity / (total * denom), 0],
                [0, 0, 0, 1],
                [0, 0, gravity / denom, 0],
            ],
            dtype=float,
        )
        b = np.array(
            [[0], [1 / total + masspole * length / (total * total * denom)], [0], [-1 / (total * denom)]]
        )
        self.gain = lqr_gain(a, b, np.diag(np.asarray(q, dtype=float)), np.array([[r]]))[0]

    def act(self, obs: Any) -> np.ndarray:
        force = -np.asarray(obs, dtype=np.float64) @ self.gain
        return np.asarray(force > 0, dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless."""


class CartpolePDPolicy:
    """A PD balance controller for the Control Suite cartpole (see the module
    docstring): ``u = clip(k_angle sin + k_rate omega + k_x x + k_v v, -1, 1)``.

    Its gains are tuned for the nominal pole (it holds it for a whole
    ``CartpoleBalance`` episode); a heavier pole or a weaker actuator shows
    where a fixed-gain controller stops coping. Observations may be any
    array type (JAX arrays are read with ``numpy.asarray``).
    """

    def __init__(
        self,
        context: PolicyContext,
        k_angle: float = 5.0,
        k_rate: float = 1.0,
        k_x: float = 0.5,
        k_v: float = 1.0,
    ) -> None:
        _require(context.observation_space, gym.spaces.Box, (5,), "cartpole-pd")
        _require(context.action_space, gym.spaces.Box, (1,), "cartpole-pd")
        self.gains = np.array([k_x, 0.0, k_angle, k_v, k_rate], dtype=np.float32)

    def act(self, obs: Any) -> np.ndarray:
        force = np.asarray(obs, dtype=np.float32) @ self.gains
        actions: np.ndarray = np.clip(force, -1.0, 1.0)[:, None]
        return actions

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless."""


class PendulumSwingUpPolicy:
    """Energy-pumping swing-up plus LQR hold for ``Pendulum-v1``."""

    def __init__(
        self,
        context: PolicyContext,
        g: float = 10.0,
        m: float = 1.0,
        length: float = 1.0,
        max_torque: float = 2.0,
        capture_angle: float = 0.6,
    ) -> None:
        _require(context.observation_space, gym.spaces.Box, (3,), "pendulum-swingup")
        _require(context.action_space, gym.spaces.Box, (1,), "pendulum-swingup")
        self.inertia = m * length**2 / 3.0
        self.top_energy = m * g * length / 2.0
        self.half_mgl = m * g * length / 2.0
        self.max_torque = max_torque
        self.capture_angle = capture_angle
        a = np.array([[0.0, 1.0], [3 * g / (2 * length), 0.0]])
        b = np.array([[0.0], [3.0 / (m * length**2)]])
        self.gain = lqr_gain(a, b, np.diag([10.0, 1.0]), np.array([[0.5]]))[0]

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        cos, sin, theta_dot = obs[:, 0], obs[:, 1], obs[:, 2]
        theta = np.arctan2(sin, cos)  # 0 is upright
        energy = 0.5 * self.inertia * theta_dot**2 + self.half_mgl * cos
        # dE/dt = theta_dot * u: push along the velocity while energy is short.
        direction = np.where(np.abs(theta_dot) < 1e-3, 1.0, np.sign(theta_dot))
        pump = self.max_torque * direction * np.sign(self.top_energy - energy)
        hold = -(np.stack([theta, theta_dot], axis=1) @ self.gain)
        torque = np.where(np.abs(theta) < self.capture_angle, hold, pump)
        clipped = np.clip(torque, -self.max_torque, self.max_torque)
        return np.asarray(clipped, dtype=np.float32)[:, None]

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless."""
