"""Pixels from Brax states, on device: a small JAX rasteriser of the system's geoms.

`make_renderer(sys, camera, size)` returns `render(pipeline_state) -> uint8 [size, size, 3]`, a
pure jit/vmap-able function, so pixel observations are produced inside the same `lax.scan` as the
physics (`agents.envs.make_env(..., obs="pixels")`); no frame leaves the device.

How it draws: an orthographic camera looks along a world axis (`"side"`: along +y, the image's
axes are world x to the right and z up; `"top"`: down -z, axes x and y). Under an orthographic
projection every geom Brax's MuJoCo systems use has a simple 2-D footprint:
  * sphere (MuJoCo type 2): a disk of the same radius;
  * capsule (3): a 2-D capsule (the projected segment, same radius); cylinders (5) are drawn as
    capsules, which differ only at the caps;
  * box (6): a zonotope, the Minkowski sum of its three projected edges (a hexagon at most),
    tested against the edge normals;
  * plane (0): the floor, a checkerboard of 0.5 m squares (so motion past a tracking camera is
    visible), behind everything; in the side view it fills what lies below its height.
Each pixel is covered by a geom with soft coverage `clip(0.5 - sdf / pixel, 0, 1)` (antialiased
edges) and the geoms are composited front to back by the depth of their centres (painter's
order), over a plain background. Colours are the system's `geom_rgba`; alpha 0 hides a geom.
Cost is `O(geoms x pixels)` elementwise work, small next to a physics step at 64 x 64.

`jaxrenderer` (a JAX ray tracer) is not usable on this stack (it pins jax < 0.5 and numpy < 2),
hence this rasteriser: it draws silhouettes, not shaded 3-D scenes, which is what a policy needs
on the planar tasks; 3-D bodies (ant, humanoid) are drawn from the side as flat shapes.

Example:
  >>> from brax.envs import get_environment
  >>> env = get_environment("inverted_pendulum", backend="positional")
  >>> render = make_renderer(env.sys, CAMERAS["inverted_pendulum"], 64)
  >>> frame = jax.jit(render)(env.reset(jax.random.key(0)).pipeline_state)
  >>> frame.shape, frame.dtype
  ((64, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

PLANE, SPHERE, CAPSULE, CYLINDER, BOX = 0, 2, 3, 5, 6
_SUPPORTED = (PLANE, SPHERE, CAPSULE, CYLINDER, BOX)
BACKGROUND = (0.12, 0.16, 0.24)  # dark blue-grey sky
_FLOOR_SQUARE = 0.5  # metres per checker square


@dataclasses.dataclass(frozen=True)
class Camera:
    """An orthographic camera.

    Attributes:
      view: `"side"` (looks along +y; image right = +x, up = +z) or `"top"` (looks down -z;
        image right = +x, up = +y).
      center: world coordinates of the image centre on the two image axes.
      extent: metres covered by the image's width and height.
      track: follow the first link (the root body) along the image's horizontal axis
        (and, for `"top"`, the vertical one): `center` is then relative to it.
    """

    view: Literal["side", "top"] = "side"
    center: tuple[float, float] = (0.0, 0.0)
    extent: float = 2.0
    track: bool = False

    def __post_init__(self):
        if self.view not in ("side", "top"):
            raise ValueError(f"Camera.view must be 'side' or 'top', got {self.view!r}")
        if not self.extent > 0:
            raise ValueError(f"Camera.extent must be > 0, got {self.extent}")


# A camera per Brax env: fixed for the balancing and reaching tasks, tracking for locomotion.
CAMERAS: dict[str, Camera] = {
    "inverted_pendulum": Camera(center=(0.0, 0.25), extent=2.6),
    "inverted_double_pendulum": Camera(center=(0.0, 0.45), extent=2.8),
    "hopper": Camera(center=(0.0, 0.8), extent=2.2, track=True),
    "walker2d": Camera(center=(0.0, 0.8), extent=2.4, track=True),
    "halfcheetah": Camera(center=(0.0, 0.4), extent=2.4, track=True),
    "ant": Camera(center=(0.0, 0.5), extent=3.0, track=True),
    "humanoid": Camera(center=(0.0, 1.0), extent=2.6, track=True),
    "humanoidstandup": Camera(center=(0.0, 0.6), extent=2.6, track=True),
    "reacher": Camera(view="top", center=(0.0, 0.0), extent=0.55),
    "swimmer": Camera(view="top", center=(-0.5, 0.0), extent=3.0, track=True),
    "pusher": Camera(view="top", center=(0.35, -0.3), extent=1.6),
}


def _quat_rotate(q: jax.Array, v: jax.Array) -> jax.Array:
    """Rotates `v [..., 3]` by unit quaternions `q [..., 4]` (w, x, y, z)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * jnp.cross(u, v)
    return v + w * t + jnp.cross(u, t)


def _quat_mul(a: jax.Array, b: jax.Array) -> jax.Array:
    aw, ax, ay, az = jnp.moveaxis(a, -1, 0)
    bw, bx, by, bz = jnp.moveaxis(b, -1, 0)
    return jnp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def geom_table(sys) -> dict[str, np.ndarray]:
    """The static geom data a renderer needs, as NumPy arrays (read once from a Brax System).

    Raises:
      ValueError: a geom type the rasteriser cannot draw.
    """
    types = np.asarray(sys.geom_type)
    bad = sorted(set(types.tolist()) - set(_SUPPORTED))
    if bad:
        raise ValueError(
            f"render: geom types {bad} are not supported (supported MuJoCo types: plane 0, "
            f"sphere 2, capsule 3, cylinder 5, box 6)"
        )
    return {
        "type": types.astype(np.int32),
        "body": np.asarray(sys.geom_bodyid).astype(np.int32),
        "size": np.asarray(sys.geom_size, np.float32),
        "pos": np.asarray(sys.geom_pos, np.float32),
        "quat": np.asarray(sys.geom_quat, np.float32),
        "rgba": np.asarray(sys.geom_rgba, np.float32),
    }


def make_renderer(sys, camera: Camera, size: int) -> Callable[[object], jax.Array]:
    """Builds `render(pipeline_state) -> uint8 [size, size, 3]` for a Brax system.

    Args:
      sys: the env's `brax.System` (`env.sys`).
      camera: where to look from (see `CAMERAS` for each Brax env's).
      size: image height and width in pixels (>= 2).

    Returns:
      A pure function of a Brax pipeline state (any pipeline: it reads the link frames
      `state.x.pos [L, 3]` and `state.x.rot [L, 4]`); vmap it for a batch of states.

    Raises:
      ValueError: a bad size or a geom type that cannot be drawn.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"render: size must be an int >= 2, got {size!r}")
    g = geom_table(sys)
    order = np.array([[0, 2, 1], [0, 1, 2]][camera.view == "top"])  # (u, v, depth) world axes
    depth_sign = -1.0 if camera.view == "top" else 1.0  # smaller depth is nearer the camera
    pixel = camera.extent / size
    # Pixel centres relative to the image centre: u right, v up (row 0 is the top).
    offsets = (np.arange(size, dtype=np.float32) + 0.5) * pixel - camera.extent / 2
    grid_u = jnp.asarray(np.broadcast_to(offsets[None, :], (size, size)))
    grid_v = jnp.asarray(np.broadcast_to(offsets[::-1, None], (size, size)))
    is_plane = jnp.asarray(g["type"] == PLANE)
    is_box = jnp.asarray(g["type"] == BOX)
    is_sphere = jnp.asarray(g["type"] == SPHERE)
    rgba = jnp.asarray(g["rgba"])
    body, sizes = jnp.asarray(g["body"]), jnp.asarray(g["size"])
    geom_pos, geom_quat = jnp.asarray(g["pos"]), jnp.asarray(g["quat"])
    eye = jnp.eye(3, dtype=jnp.float32)
    static_bias = jnp.asarray(np.where(g["body"] == 0, 1e-3, 0.0), jnp.float32)

    def render(pipeline_state) -> jax.Array:
        # World frames of the bodies (body 0 is the world), then of the geoms.
        link_pos, link_rot = pipeline_state.x.pos, pipeline_state.x.rot
        world = jnp.array([[1.0, 0.0, 0.0, 0.0]], link_rot.dtype)
        body_pos = jnp.concatenate([jnp.zeros((1, 3), link_pos.dtype), link_pos])[body]
        body_rot = jnp.concatenate([world, link_rot])[body]
        pos = body_pos + _quat_rotate(body_rot, geom_pos)  # [G, 3]
        rot = _quat_mul(body_rot, geom_quat)  # [G, 4]
        axes = _quat_rotate(rot[:, None, :], eye[None])  # [G, 3 (local axis), 3 (world)]

        center = jnp.asarray(camera.center, jnp.float32)
        if camera.track:
            root = link_pos[0, order[:2]]
            center = center + (root if camera.view == "top" else root.at[1].set(0.0))
        p_u, p_v = grid_u + center[0], grid_v + center[1]  # [S, S] world coordinates
        c2 = pos[:, order[:2]]  # [G, 2] geom centres in the image plane
        du = p_u[None] - c2[:, 0, None, None]  # [G, S, S]
        dv = p_v[None] - c2[:, 1, None, None]
        ax2 = axes[:, :, order[:2]]  # [G, 3, 2] projected local axes

        # Sphere and capsule (and cylinder): distance to the projected z-axis segment - radius.
        half = jnp.where(is_sphere, 0.0, sizes[:, 1])
        seg = ax2[:, 2] * half[:, None]  # [G, 2] half-segment
        seg_len2 = jnp.maximum(jnp.sum(seg**2, -1), 1e-12)[:, None, None]
        t = jnp.clip((du * seg[:, 0, None, None] + dv * seg[:, 1, None, None]) / seg_len2, -1, 1)
        round_sdf = (
            jnp.hypot(du - t * seg[:, 0, None, None], dv - t * seg[:, 1, None, None])
            - sizes[:, 0, None, None]
        )

        # Box: the zonotope of its three projected half-edges, one slab per edge normal.
        edges = ax2 * sizes[:, :, None]  # [G, 3, 2]
        normals = jnp.stack([-edges[..., 1], edges[..., 0]], -1)
        norm = jnp.linalg.norm(normals, axis=-1, keepdims=True)
        normals = normals / jnp.maximum(norm, 1e-9)
        reach = jnp.sum(jnp.abs(jnp.einsum("gjk,gik->gji", normals, edges)), -1)  # [G, 3]
        dist = (
            jnp.abs(
                normals[..., 0, None, None] * du[:, None]
                + normals[..., 1, None, None] * dv[:, None]
            )
            - reach[..., None, None]
        )
        dist = jnp.where(norm[..., None] > 1e-6, dist, -jnp.inf)  # edge seen end-on: no slab
        box_sdf = jnp.max(dist, axis=1)

        # Plane: the floor. Side view: below its height; top view: within its half-sizes.
        if camera.view == "side":
            plane_in = dv <= 0.0
        else:
            hx, hy = sizes[:, 0, None, None], sizes[:, 1, None, None]
            plane_in = ((jnp.abs(du) <= hx) | (hx <= 0)) & ((jnp.abs(dv) <= hy) | (hy <= 0))
        plane_sdf = jnp.where(plane_in, -1.0, 1.0) * pixel

        sdf = jnp.where(
            is_plane[:, None, None], plane_sdf, jnp.where(is_box[:, None, None], box_sdf, round_sdf)
        )
        cover = jnp.clip(0.5 - sdf / pixel, 0.0, 1.0) * (rgba[:, 3, None, None] > 0)  # [G, S, S]
        checker = (jnp.floor(p_u / _FLOOR_SQUARE) + jnp.floor(p_v / _FLOOR_SQUARE)) % 2
        shade = jnp.where(is_plane[:, None, None], 0.8 + 0.2 * checker[None], 1.0)
        colors = rgba[:, None, None, :3] * shade[..., None]  # [G, S, S, 3]

        # Front to back: each geom shows through what nearer geoms leave uncovered.
        # The floor is behind everything; the world's own geoms (rails) behind bodies at a tie.
        depth = depth_sign * pos[:, order[2]] + jnp.where(is_plane, 1e6, 0.0) + static_bias
        idx = jnp.argsort(depth)
        cover, colors = cover[idx], colors[idx]
        through = jnp.cumprod(1.0 - cover, axis=0)
        before = jnp.concatenate([jnp.ones_like(through[:1]), through[:-1]], axis=0)
        weights = (cover * before)[..., None]
        background = jnp.asarray(BACKGROUND)[None, None]
        image = jnp.sum(weights * colors, 0) + through[-1][..., None] * background
        return jnp.round(jnp.clip(image, 0.0, 1.0) * 255).astype(jnp.uint8)

    return render
