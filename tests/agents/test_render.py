"""Tests for the on-device rasteriser and pixel observations.

Geometry is checked on hand-made systems (a few geoms, no physics, so nothing slow compiles);
real Brax systems check integration: inverted_pendulum end to end through `make_env`, and
inverted_double_pendulum's frames.
"""

import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.config import TrainConfig
from agents.dreamer import DreamerConfig
from agents.envs import make_env, step_transition
from agents.render import BACKGROUND, CAMERAS, Camera, make_renderer
from agents.tdmpc2 import TDMPC2Config

BG = np.round(np.asarray(BACKGROUND) * 255)


def fake_sys(types_, sizes, pos, bodies=None, rgba=None, quat=None):
    g = len(types_)
    return types.SimpleNamespace(
        geom_type=np.asarray(types_),
        geom_bodyid=np.asarray(bodies if bodies is not None else [0] * g),
        geom_size=np.asarray(sizes, np.float32),
        geom_pos=np.asarray(pos, np.float32),
        geom_quat=np.asarray(quat if quat is not None else [[1.0, 0, 0, 0]] * g, np.float32),
        geom_rgba=np.asarray(rgba if rgba is not None else [[1.0, 0, 0, 1]] * g, np.float32),
    )


class Frames(NamedTuple):
    pos: jax.Array
    rot: jax.Array


class PipelineState(NamedTuple):  # what the renderer reads of a Brax pipeline state
    x: Frames


def state_with(pos, rot):
    return PipelineState(Frames(jnp.asarray(pos, jnp.float32), jnp.asarray(rot, jnp.float32)))


NO_LINKS = state_with(np.zeros((1, 3)), [[1.0, 0, 0, 0]])


def covered(image):
    return np.any(np.asarray(image, np.float32) != BG, axis=-1)


def area(image, color, extent):
    """Covered area in m^2: antialiased edge pixels count by the fraction they are covered."""
    full = np.linalg.norm(np.asarray(color, np.float32) * 255 - BG)
    frac = np.linalg.norm(np.asarray(image, np.float32) - BG, axis=-1) / full
    return np.clip(frac, 0, 1).sum() * (extent / image.shape[0]) ** 2


def test_sphere_is_a_disk_of_its_area():
    sys = fake_sys([2], [[0.5, 0, 0]], [[0.0, 0.0, 0.0]])
    image = make_renderer(sys, Camera(extent=2.0), 64)(NO_LINKS)
    assert image.shape == (64, 64, 3) and image.dtype == jnp.uint8
    assert area(image, (1, 0, 0), 2.0) == pytest.approx(np.pi * 0.25, rel=0.03)
    assert tuple(np.asarray(image)[32, 32]) == (255, 0, 0)


def test_capsule_follows_its_link_pose():
    """A vertical capsule on link 1; rotating the link by 90 degrees about y lays it along x."""
    sys = fake_sys([3], [[0.1, 0.6, 0]], [[0.0, 0.0, 0.0]], bodies=[1])
    render = jax.jit(make_renderer(sys, Camera(extent=2.0), 64))
    upright = covered(render(state_with([[0.0, 0, 0]], [[1.0, 0, 0, 0]])))
    rows, cols = np.nonzero(upright)
    assert np.ptp(rows) > 3 * np.ptp(cols)  # tall and thin
    c = np.cos(np.pi / 4)
    lying = covered(render(state_with([[0.3, 0, 0]], [[c, 0, c, 0]])))
    rows, cols = np.nonzero(lying)
    assert np.ptp(cols) > 3 * np.ptp(rows)  # wide and flat
    assert np.mean(cols) == pytest.approx(32 + 0.3 / (2.0 / 64), abs=1.0)  # moved right 0.3 m


def test_box_footprint_and_nearer_geom_wins():
    # A red box (half sizes 0.4 x 0.1 x 0.2) behind a green sphere nearer the camera (smaller y).
    sys = fake_sys(
        [6, 2],
        [[0.4, 0.1, 0.2], [0.15, 0, 0]],
        [[0.0, 0.5, 0.0], [0.0, -0.5, 0.0]],
        rgba=[[1.0, 0, 0, 1], [0, 1.0, 0, 1]],
    )
    image = np.asarray(make_renderer(sys, Camera(extent=2.0), 64)(NO_LINKS))
    # The sphere lies inside the box's footprint, and green is about as far from the background.
    assert area(image, (1, 0, 0), 2.0) == pytest.approx(0.8 * 0.4, rel=0.05)
    assert tuple(image[32, 32]) == (0, 255, 0)  # the sphere is in front
    assert tuple(image[32, 22]) == (255, 0, 0)  # box beside the sphere


def test_top_view_and_tracking():
    sys = fake_sys([2], [[0.2, 0, 0]], [[0.0, 0.0, 0.0]], bodies=[1])
    fixed = make_renderer(sys, Camera(view="top", extent=2.0), 32)
    tracked = make_renderer(sys, Camera(view="top", extent=2.0, track=True), 32)
    state = state_with([[0.5, -0.5, 0.0]], [[1.0, 0, 0, 0]])
    rows, cols = np.nonzero(covered(fixed(state)))
    assert np.mean(cols) > 20 and np.mean(rows) > 20  # right (+x) and down (-y)
    rows, cols = np.nonzero(covered(tracked(state)))
    assert np.mean(cols) == pytest.approx(16, abs=1) and np.mean(rows) == pytest.approx(16, abs=1)


def test_bad_inputs():
    with pytest.raises(ValueError, match="geom types \\[7\\]"):
        make_renderer(fake_sys([7], [[1.0, 1, 1]], [[0.0, 0, 0]]), Camera(), 16)
    with pytest.raises(ValueError, match="size"):
        make_renderer(fake_sys([2], [[1.0, 0, 0]], [[0.0, 0, 0]]), Camera(), 1)
    with pytest.raises(ValueError, match="view"):
        Camera(view="front")


def test_every_env_has_a_camera():
    from agents.envs import ENV_NAMES

    assert set(CAMERAS) == set(ENV_NAMES)


@pytest.fixture(scope="module")
def pixel_env():
    return make_env("inverted_pendulum", num_envs=3, obs="pixels", image_size=16)


def test_pixel_env_steps_in_a_scan(pixel_env, count_compiles):
    env, spec = pixel_env
    assert spec.image_shape == (16, 16, 3) and spec.obs_shape == (16, 16, 3)
    assert spec.obs_size == 16 * 16 * 3

    @jax.jit
    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (3, spec.action_size), minval=-1, maxval=1)
            s, tr = step_transition(env, s, a)
            return s, tr

        return jax.lax.scan(body, state, jax.random.split(key, 40))

    state = jax.jit(env.reset)(jax.random.key(0))
    assert state.obs.shape == (3, 16, 16, 3) and state.obs.dtype == jnp.uint8
    state, tr = run(state, jax.random.key(1))
    assert tr.obs.shape == (40, 3, 16, 16, 3) and tr.next_obs.dtype == jnp.uint8
    # Frames change as the pendulum moves, and next_obs[t] is obs[t + 1] unless the episode ended.
    assert np.any(np.asarray(tr.obs[0]) != np.asarray(tr.obs[-1]))
    cont = ~np.asarray(tr.done[:-1])
    np.testing.assert_array_equal(np.asarray(tr.next_obs[:-1])[cont], np.asarray(tr.obs[1:])[cont])
    assert np.asarray(tr.done).any()  # random actions drop the pole within 40 steps
    with count_compiles() as events:
        run(state, jax.random.key(2))
    assert events == []


def test_second_task_renders_its_poles():
    env, spec = make_env("inverted_double_pendulum", num_envs=1, obs="pixels", image_size=32)
    frame = np.asarray(jax.jit(env.reset)(jax.random.key(0)).obs[0])
    rows, cols = np.nonzero(covered(frame))
    # Two upright poles (1.2 m) above the cart: the drawing is taller above the rail than wide.
    above = rows[rows < 20]
    assert above.size > 0 and np.ptp(above) > 8


def test_the_agents_check_pixels():
    from agents.run import build

    with pytest.raises(ValueError, match="TD-MPC2 takes state vectors"):
        build(TrainConfig(obs="pixels", agent=TDMPC2Config.tiny()))
    with pytest.raises(ValueError, match=r"--image-size.*size 60 is not minres"):
        build(TrainConfig(obs="pixels", agent=DreamerConfig.tiny(), image_size=60))
    spec, _, _ = build(TrainConfig(obs="pixels", agent=DreamerConfig.tiny(), image_size=32))
    assert spec.image_shape == (32, 32, 3)
