"""Throughput measurements shared by `wm bench` and `benchmarks/throughput.py`.

Every timing is the median of `repeats` calls after a warm-up call, with `block_until_ready`.
FLOPs come from XLA's own cost analysis of the compiled function; the hardware peak is measured
in the same process with a large f32 matmul, so "fraction of peak" compares like with like.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from agents.config import TrainConfig, make_agent
from agents.dreamer import DreamerConfig, make_dreamer, make_imagination
from agents.envs import make_env
from agents.hostmem import host_allocator
from agents.types import Agent, Context, EnvSpec, Transition
from worldmodels.rssm import RSSMState


def machine_info() -> dict:
    """CPU model, SIMD flags that matter for XLA:CPU speed, cores, JAX version and devices."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "", platform.processor()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [
        f
        for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")
        if f in flags
    ]
    return {
        "cpu": model,
        "simd": simd,
        "kind": "AVX-512" if "avx512f" in flags else "AVX2",
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "host_allocator": host_allocator(),  # agents.hostmem: tuned (wm, benchmarks) or default
    }


def time_call(fn, *args, repeats: int = 10) -> float:
    """Median wall seconds of `fn(*args)` after one warm-up call (compile excluded)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_flops(fn, *args) -> float:
    """FLOPs of every `dot_general` that `fn(*args)` executes, loops counted per trip.

    XLA's `cost_analysis()` counts a `scan`/`while` body once, whatever its trip count, so for
    planners and train steps (loops over iterations and horizon) it undercounts many times over.
    This walks the jaxpr instead: a scan body counts `length` times, a `cond` its costliest
    branch. Elementwise work is not counted (matmuls dominate these models).
    """
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "dot_general":
            (lhs_contract, _), _ = params["dimension_numbers"]
            lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
            total += 2.0 * np.prod(out) * np.prod([lhs[d] for d in lhs_contract])
        elif name == "scan":
            total += params["length"] * _jaxpr_flops(params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_jaxpr_flops(b.jaxpr) for b in params["branches"])
        elif name == "while":
            total += _jaxpr_flops(params["body_jaxpr"].jaxpr)  # unknown trip count: once
        else:
            for value in params.values():
                for sub in value if isinstance(value, list | tuple) else (value,):
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        total += _jaxpr_flops(getattr(inner, "jaxpr", inner))
    return total


def compiled_flops(jitted, *args, static: int = 0) -> tuple[float, float, float, object]:
    """`(jaxpr matmul flops, XLA cost-analysis flops, compile seconds, compiled)`.

    The last `static` arguments are static: passed to `lower`, baked into the compiled function.
    """
    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    seconds = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    dynamic, fixed = (args[:-static], args[-static:]) if static else (args, ())
    flops = matmul_flops(lambda *a: jitted(*a, *fixed), *dynamic)
    return flops, float(cost.get("flops", float("nan"))), seconds, compiled


def matmul_peak(n: int = 4096, repeats: int = 10) -> float:
    """Measured f32 matmul GFLOP/s: the practical peak of this machine for XLA."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    seconds = time_call(jax.jit(jnp.matmul), a, b, repeats=repeats)
    return 2 * n**3 / seconds / 1e9


def _batch(spec: EnvSpec, horizon: int, batch_size: int) -> Transition:
    k = jax.random.split(jax.random.key(0), 3)
    h, b = horizon, batch_size
    return Transition(
        obs=jax.random.normal(k[0], (h, b, spec.obs_size)),
        action=jnp.tanh(jax.random.normal(k[1], (h, b, spec.action_size))),
        reward=jnp.ones((h, b)),
        next_obs=jax.random.normal(k[2], (h, b, spec.obs_size)),
        terminated=jnp.zeros((h, b), bool),
        done=jnp.zeros((h, b), bool),
    )


def bench_agent(
    agent: Agent, spec: EnvSpec, *, num_envs=(1, 64), repeats: int = 10, peak=None
) -> dict:
    """Acting latency per env batch size and update latency of any `Agent`.

    Rows: `act_{n}env`: one `act` (exploring, as in training: for TD-MPC2 the whole MPPI plan)
    for `n` envs, per `num_envs`; `update_{B}x{T}`: one `update` on a `[T, B]` batch of random
    transitions, `T, B = agent.data.seq_len, agent.data.batch_size`.
    """
    peak = peak or matmul_peak()
    rows = {}
    state = agent.init(jax.random.key(0))
    act = jax.jit(lambda s, c, o, f, k: agent.act(s, c, o, f, k))
    for n in num_envs:
        carry = agent.initial_carry(state, n)
        obs = _observations(spec, (n,), jax.random.key(1))
        args = (state, carry, obs, jnp.zeros(n, bool), jax.random.key(2))
        flops, xla, compile_s, compiled = compiled_flops(act, *args)
        seconds = time_call(compiled, *args, repeats=repeats)
        rows[f"act_{n}env"] = _row(seconds, flops, xla, compile_s, peak)
    t, b = agent.data.seq_len, agent.data.batch_size
    data = _sequence_batch(agent, state, spec, t, b)
    args = (state, data, jax.random.key(3))
    flops, xla, compile_s, compiled = compiled_flops(jax.jit(agent.update), *args)
    seconds = time_call(compiled, *args, repeats=repeats)
    rows[f"update_{b}x{t}"] = _row(seconds, flops, xla, compile_s, peak)
    return rows


def bench_dreamer(
    agent_cfg: DreamerConfig,
    spec: EnvSpec,
    *,
    starts: int = 1024,
    horizon: int = 15,
    batch: tuple[int, int] = (16, 64),
    num_envs=(),
    repeats: int = 10,
    peak=None,
) -> dict:
    """Dreamer's imagination throughput, with `bench_agent`'s rows (`benchmarks/throughput.py`).

    Rows: `act_{n}env` per `num_envs`; `imagine_{starts}x{horizon}`: the update's imagination
    alone (actor and RSSM prior, reward and continue heads, `horizon` steps in one `lax.scan`,
    forward only) from `starts` random latents, with `imagined_steps_per_s`; `update_{B}x{T}`:
    one full `update` (world model, actor, critic) on a `[T, B]` batch of random transitions.
    `agent_cfg.horizon` is replaced by `horizon` for the imagination row only, and the update's
    batch by `batch`.
    """
    peak = peak or matmul_peak()
    b, t = batch
    agent_cfg = dataclasses.replace(agent_cfg, batch_size=b, batch_length=t)
    agent = make_dreamer(agent_cfg, spec)
    rows = bench_agent(agent, spec, num_envs=num_envs, repeats=repeats, peak=peak)
    update_row = rows.pop(f"update_{b}x{t}")

    m = agent_cfg.model
    state = agent.init(jax.random.key(0))
    k = jax.random.split(jax.random.key(4), 2)
    start = RSSMState(
        deter=jnp.tanh(jax.random.normal(k[0], (starts, m.deter))),
        stoch=jax.nn.one_hot(jax.random.randint(k[1], (starts, m.groups), 0, m.classes), m.classes),
    )
    imagine = jax.jit(make_imagination(dataclasses.replace(agent_cfg, horizon=horizon), spec))
    args = (state, start, jax.random.key(5))
    flops, xla, compile_s, compiled = compiled_flops(imagine, *args)
    seconds = time_call(compiled, *args, repeats=repeats)
    row = _row(seconds, flops, xla, compile_s, peak)
    row["imagined_steps_per_s"] = round(starts * horizon / seconds, 1)
    row["mflop_per_step"] = round(flops / (starts * horizon) / 1e6, 3)
    rows[f"imagine_{starts}x{horizon}"] = row
    rows[f"update_{b}x{t}"] = update_row
    return rows


def _sequence_batch(agent, state, spec: EnvSpec, t: int, b: int) -> Transition:
    """`_batch` of `[t, b]` for `agent.update`, with a stored latent per step if it takes one."""
    data = _batch(spec, t, b)
    if spec.image_shape is not None:
        k = jax.random.split(jax.random.key(6))
        data = data.replace(
            obs=_observations(spec, (t, b), k[0]), next_obs=_observations(spec, (t, b), k[1])
        )
    if getattr(agent, "context", None) is not None:  # replay context (Dreamer)
        value = agent.context(agent.initial_carry(state, b))
        value = jax.tree.map(lambda x: jnp.broadcast_to(x, (t, *x.shape)), value)
        data = data.replace(context=Context(value=value, first=jnp.zeros((t, b), bool)))
    return data


def _observations(spec: EnvSpec, lead: tuple[int, ...], key) -> jax.Array:
    """Random observations `[*lead, ...]`: uint8 frames for pixel specs, else normal vectors."""
    if spec.image_shape is None:
        return jax.random.normal(key, (*lead, spec.obs_size))
    return jax.random.randint(key, (*lead, *spec.image_shape), 0, 256).astype(jnp.uint8)


def _row(seconds: float, flops: float, xla_flops: float, compile_s: float, peak: float) -> dict:
    gflops = flops / seconds / 1e9
    return {
        "ms": round(seconds * 1e3, 3),
        "gflop": round(flops / 1e9, 3),
        "xla_cost_gflop": round(xla_flops / 1e9, 3),
        "gflops": round(gflops, 2),
        "frac_peak": round(gflops / peak, 4),
        "compile_s": round(compile_s, 2),
    }


def bench_env(name: str, num_envs: int, steps: int = 200, repeats: int = 5) -> float:
    """Env steps/s of a random-action `lax.scan` over a batch of envs (physics steps)."""
    env, spec = make_env(name, num_envs=num_envs)

    @jax.jit
    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (num_envs, spec.action_size), minval=-1, maxval=1)
            return env.step(s, a), None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

    state = jax.jit(env.reset)(jax.random.key(0))
    seconds = time_call(run, state, jax.random.key(1), repeats=repeats)
    return steps * num_envs / seconds


def bench_train(cfg: TrainConfig, repeats: int = 3) -> dict:
    """Compile time of the first train chunk and env steps/s of train chunks (no evaluation)."""
    from agents.run import build
    from agents.train import seed_keys

    _, _, trainer = build(cfg)
    state = trainer.init(seed_keys(cfg))
    state, _ = trainer.seed_chunk(state)
    t = time.perf_counter()
    compiled = trainer.train_chunk.lower(state).compile()
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        state, m = compiled(state)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times)
    return {
        "train_chunk_compile_s": round(compile_s, 2),
        "train_chunk_s": round(seconds, 3),
        "train_env_steps_per_s": round(cfg.env_steps_per_chunk / seconds, 1),
    }


def bench_config(cfg: TrainConfig, repeats: int = 10) -> dict:
    """What `wm bench` prints: the agent's act and update latency (`bench_agent`) for 1 and
    `cfg.num_envs` envs, env and train throughput, for one TrainConfig."""
    peak = matmul_peak()
    _, spec = make_env(
        cfg.env,
        num_envs=cfg.num_envs,
        action_repeat=cfg.action_repeat,
        obs=cfg.obs,
        image_size=cfg.image_size,
    )
    out = {"machine": machine_info(), "matmul_peak_gflops": round(peak, 1), "env": cfg.env}
    out["agent"], out["obs"] = cfg.agent.name, cfg.obs
    envs = tuple(dict.fromkeys((1, cfg.num_envs)))  # one row per batch size
    agent = make_agent(cfg.agent, spec)
    out.update(bench_agent(agent, spec, num_envs=envs, repeats=repeats, peak=peak))
    out["env_steps_per_s"] = round(bench_env(cfg.env, cfg.num_envs), 1)
    out.update(bench_train(cfg))
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}
