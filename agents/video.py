"""A trained run's policy acting, drawn on device: `wm eval RUN --video out.gif`.

`record_video(run_dir, path, steps=200)` restores the run's latest checkpoint (`agents.loading`),
acts greedily (`eval=True`) in one env for `steps` agent steps inside one jitted `lax.scan`, and
draws every step with the on-device rasteriser (`agents.render`, the env's camera in
`agents.render.CAMERAS`): one frame per agent step, at the env's real time rate
(`1 / (dt * action_repeat)` frames per second). Episodes that end restart, as in training.

Formats: `.gif` (Pillow, installed with matplotlib) and `.mp4` (needs the `ffmpeg` program on
the PATH). The bottom row of every frame is a time bar, which also keeps consecutive frames
distinct: a GIF writer merges identical frames, and the file would have fewer than `steps`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from agents.loading import load_run
from agents.render import CAMERAS, make_renderer

FORMATS = (".gif", ".mp4")


def check_video_path(path: str | Path) -> Path:
    """The path, if its format can be written here (checked before anything is loaded).

    Raises:
      ValueError: an unknown suffix, or `.mp4` without an `ffmpeg` program.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--video {path}: the format is named by the suffix, one of {FORMATS}")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise ValueError(
            f"--video {path}: writing .mp4 needs the ffmpeg program on the PATH (e.g. `apt "
            "install ffmpeg` or `conda install ffmpeg`); a .gif needs nothing more"
        )
    return path


def rollout_frames(run, steps: int, size: int, key: jax.Array) -> tuple[np.ndarray, dict]:
    """`steps` agent steps of `run`'s policy in its env (one copy), drawn at `size` pixels.

    Args:
      run: an `agents.loading.LoadedRun` of a Brax env, loaded with `num_envs=1`.
      steps: agent steps, one frame each.
      size: frame height and width.
      key: the env's reset and the agent's acting keys.

    Returns:
      `(frames uint8 [steps, size, size, 3], stats)`: stats has `return` (reward summed over
      the video) and `episodes` (episodes that ended in it).
    """
    name = run.cfg.env
    if name not in CAMERAS:
        raise ValueError(f"--video: {name} has no camera in agents.render.CAMERAS (Brax envs only)")
    render = jax.vmap(make_renderer(run.env.sys, CAMERAS[name], size))
    agent, env = run.agent, run.env

    @jax.jit
    def rollout(agent_state, key):
        k_reset, k_act = jax.random.split(key)
        state = env.reset(k_reset)
        carry = agent.initial_carry(agent_state, 1)

        def step(c, k):
            state, carry, first = c
            carry, action, _ = agent.act(agent_state, carry, state.obs, first, k, eval=True)
            state = env.step(state, action)
            frame = render(state.pipeline_state)[0]
            return (state, carry, state.done > 0), (frame, state.reward[0], state.done[0])

        init = (state, carry, jnp.ones((1,), bool))
        _, (frames, rewards, dones) = jax.lax.scan(step, init, jax.random.split(k_act, steps))
        return frames, jnp.sum(rewards), jnp.sum(dones)

    frames, total, ended = jax.device_get(rollout(run.agent_state, key))
    return _with_time_bar(np.asarray(frames)), {"return": float(total), "episodes": int(ended)}


def _with_time_bar(frames: np.ndarray) -> np.ndarray:
    """The bottom row as a bar of the time elapsed, its last pixel alternating frame to frame."""
    frames = frames.copy()
    t, _, width, _ = frames.shape
    for i in range(t):
        frames[i, -1, : max(1, (i + 1) * width // t)] = 200
        frames[i, -1, -1] = 255 if i % 2 else 80
    return frames


def write_video(frames: np.ndarray, path: Path, fps: float) -> None:
    """Writes `frames uint8 [T, H, W, 3]` as a GIF (Pillow) or an MP4 (the ffmpeg program)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        duration = max(20, round(1000 / fps))  # ms; browsers slow GIFs faster than 50 fps
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
        return
    t, h, w, _ = frames.shape
    command = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    command += ["-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-pix_fmt", "yuv420p"]
    command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", str(path)]  # yuv420p: even sizes
    result = subprocess.run(command, input=frames.tobytes(), capture_output=True)
    if result.returncode:
        raise RuntimeError(f"ffmpeg failed writing {path}: {result.stderr.decode().strip()}")


def record_video(
    run_dir: str | Path, path: str | Path, *, steps: int = 200, size: int = 256, seed: int = 0
) -> dict:
    """Writes a video of `run_dir`'s trained policy to `path` (see the module docstring).

    Returns the file, its frames and fps, and the return and episodes ended in it.

    Raises:
      ValueError: a bad format, step count or size, or an env without a camera.
      FileNotFoundError: no run or no checkpoint in `run_dir`.
    """
    path = check_video_path(path)
    if steps < 1 or size < 2:
        raise ValueError(f"--video-steps must be >= 1 and --video-size >= 2 (got {steps}, {size})")
    run = load_run(run_dir, num_envs=1)
    frames, stats = rollout_frames(run, steps, size, jax.random.key(seed))
    fps = 1.0 / (run.env.dt * run.cfg.action_repeat)
    write_video(frames, path, fps)
    return {"video": str(path), "frames": len(frames), "fps": round(fps, 2), **stats}
