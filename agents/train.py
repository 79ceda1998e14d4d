"""The on-device training loop: `make_train(cfg, env, spec, agent) -> Trainer`.

Training is two pure phases on a `TrainState`, composed by a schedule (`TrainConfig.schedule`):
  * `collect(state, steps)`: act in all `num_envs` environments for `steps` agent steps and store
    the transitions in the replay buffer (uniformly random actions in the seed phase);
  * `learn(state, num_updates)`: agent updates on sequences sampled from replay with replacement;
    or `fit(state, epochs)`: epochs over the whole replay without replacement, with early stopping
    on a held-out loss (`agents.schedules`).
A train chunk is ONE jitted program of `chunk_steps` agent steps:
  * `"interleaved"` (default): a `lax.scan` whose every step acts once in the envs and then runs
    `agent.data.updates_per_step` updates (TD-MPC2's and Dreamer's loop);
  * `"episodic"`: `collect(state, chunk_steps)`, then `fit(state, cfg.fit_epochs)` (PETS' loop).
`Trainer.run(key)` is a whole run (seed phase and every train chunk, no evaluation) as one pure
function of a key, to `jax.vmap` over seeds. Python only runs between chunks otherwise
(`agents.run` does the progress bar, logging, evaluation and checkpoints). The loop knows agents
only through the `Agent` contract (`agents.types`): what to sample comes from `agent.data`.

An update whose new agent state or `loss*` metrics hold a NaN or infinity never reaches the
parameters: the loop keeps the state from before it, leaves its replay contexts unwritten and
counts it; a train chunk's metrics carry `updates` (attempted) and `nonfinite_updates` (skipped).

Usage, a complete run with a `cfg` (`agents.TrainConfig`), an `env, spec` (`agents.make_env`)
and an `agent` (`agents.make_agent`); `agents.run.run_training` is the logged version and
`tests/agents/test_train.py` and `tests/agents/test_schedules.py` run these calls (each
compiles a train chunk, too slow for a doctest):

    trainer = make_train(cfg, env, spec, agent)
    state = trainer.init(jax.random.key(0))
    state, metrics = trainer.seed_chunk(state)             # random actions, fills replay
    state, metrics = trainer.train_chunk(state)            # the schedule's chunk
    state, metrics = trainer.collect(state, 100)           # or the phases one by one
    state, metrics = trainer.learn(state, 50)
    trainer.evaluate(state.agent, jax.random.key(1))       # {'eval/return': ...}
    state, per_chunk = trainer.run(jax.random.key(0))      # a whole run, metrics [C]
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from agents import replay
from agents.envs import step_transition
from agents.schedules import check_fit_metric, make_fit
from agents.types import Agent, Context, EnvSpec, Transition

if TYPE_CHECKING:  # the loop reads the run's settings, never the agents' configs
    from agents.config import TrainConfig


@struct.dataclass
class TrainState:
    """Everything a run carries between chunks (and checkpoints)."""

    agent: Any
    replay: Any
    env: Any
    carry: Any
    is_first: jax.Array  # [N] bool: the env's current observation starts an episode
    episode_return: jax.Array  # [N] running return of the current episode
    key: jax.Array
    agent_steps: jax.Array  # int32: vectorised env steps done


class Trainer(NamedTuple):
    """The jitted pieces of a run; `agents.run` drives the first four.

    A `TrainState` argument is donated. With `cfg.num_seeds = S > 1` every array argument and
    result has a leading seed axis `[S]` (keys from `seed_keys` / `eval_keys`); the ints are
    static (a new value compiles anew) and shared by the seeds.
    """

    init: Any  # (key) -> TrainState
    seed_chunk: Any  # (TrainState) -> (TrainState, metrics): collect(seed_agent_steps, random)
    train_chunk: Any  # (TrainState) -> (TrainState, metrics incl. updates, nonfinite_updates)
    evaluate: Any  # (agent_state, key) -> metrics with 'eval/return'
    collect: Any  # (TrainState, steps, random_actions=False) -> (TrainState, metrics)
    learn: Any  # (TrainState, num_updates) -> (TrainState, metrics incl. updates, ...)
    fit: Any  # (TrainState, epochs) -> (TrainState, metrics incl. fit/epochs): `agents.schedules`
    run: Any  # (key) -> (TrainState, metrics [C]): init, seed phase, `cfg.num_chunks` chunks


def _mean_metrics(stacked: dict) -> dict:
    return {k: jnp.nanmean(v) for k, v in stacked.items()}  # NaN marks skipped updates


def skip_nonfinite(update):
    """Wraps an `Agent.update` so that a non-finite result never replaces the state.

    Returns `(state, batch, key) -> (state, metrics, context, ok)`: `ok` (`[]` bool) says every
    floating-point leaf of the new state and every `loss*` metric is finite; where it is not, the
    input state comes back and the metrics are NaN (so means over updates skip them). `context`
    is the update's `UpdateOutput.context` (the refreshed replay context, or None).
    """

    def guarded(state, batch, key):
        out = update(state, batch, key)
        losses = {k: v for k, v in out.metrics.items() if k.startswith("loss")}
        ok = _finite(out.state) & _finite(losses)
        metrics = jax.tree.map(lambda m: jnp.where(ok, m, jnp.nan), out.metrics)
        # A cond, not a select: with `jnp.where` on every leaf XLA:CPU compiled the update's own
        # ops differently (measured: `wm train` defaults, parameters after the first chunk no
        # longer bit-identical to the unguarded loop's, and a different learning curve); with
        # the cond they are identical.
        kept = jax.lax.cond(ok, lambda: out.state, lambda: state)
        return kept, metrics, out.context, ok

    return guarded


def _finite(tree) -> jax.Array:
    """`[]` bool: every floating-point leaf of `tree` is free of NaN and infinities."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.bool_(True)]))


def make_train(cfg: TrainConfig, env, spec: EnvSpec, agent: Agent, eval_env=None) -> Trainer:
    """Build the jitted seed/train/eval chunks for `agent` acting in the vectorised `env`.

    Args:
      cfg: the run's settings.
      env: Brax-interface env over `spec.num_envs` environments (`agents.envs.make_env`).
      spec: its `EnvSpec`.
      agent: the `Agent`.
      eval_env: env over `cfg.eval_episodes` environments for evaluation (default: none).
    """
    seq_len, cross = agent.data.seq_len, agent.data.cross_episodes
    n, num_updates = spec.num_envs, agent.data.updates_per_step
    if cfg.replay_capacity < n * (seq_len + 1):
        raise ValueError(
            f"TrainConfig.replay_capacity ({cfg.replay_capacity}) must hold at least "
            f"sequence length + 1 ({seq_len + 1}) steps per env ({n} envs)"
        )
    guarded_update = skip_nonfinite(agent.update)
    fit_replay = make_fit(
        agent,
        guarded_update,
        holdout=cfg.fit_holdout,
        patience=cfg.fit_patience,
        metric=cfg.fit_metric,
    )

    def init(key) -> TrainState:
        k_agent, k_env, k_run = jax.random.split(key, 3)
        agent_state = agent.init(k_agent)
        env_state = env.reset(k_env)
        zero_action = jnp.zeros((n, spec.action_size))
        carry = agent.initial_carry(agent_state, n)
        _, example = jax.eval_shape(lambda s, a: step_transition(env, s, a), env_state, zero_action)
        example = with_context(example, carry, jnp.ones((n,), bool))
        example = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example)
        return TrainState(
            agent=agent_state,
            replay=replay.init_replay(example, cfg.replay_capacity),
            env=env_state,
            carry=carry,
            is_first=jnp.ones((n,), bool),
            episode_return=jnp.zeros((n,), jnp.float32),
            key=k_run,
            agent_steps=jnp.zeros((), jnp.int32),
        )

    def with_context(tr: Transition, carry, first) -> Transition:
        """Attaches the agent's replay context (its state at `tr.obs`) when it keeps one."""
        if agent.context is None:
            return tr
        return tr.replace(context=Context(value=agent.context(carry), first=first))

    def env_step(ts: TrainState, key, random_actions: bool):
        if random_actions:
            carry = ts.carry
            action = jax.random.uniform(key, (n, spec.action_size), minval=-1.0, maxval=1.0)
            info = {}
        else:
            carry, action, info = agent.act(ts.agent, ts.carry, ts.env.obs, ts.is_first, key)
        env_state, tr = step_transition(env, ts.env, action)
        # Random actions leave the carry behind the observations: no context to continue from.
        tr = with_context(tr, carry, ts.is_first | random_actions)
        ret = ts.episode_return + tr.reward
        stats = {
            "train/episodes": jnp.sum(tr.done),
            "train/return_sum": jnp.sum(jnp.where(tr.done, ret, 0.0)),
            **info,
        }
        ts = ts.replace(
            replay=replay.add(ts.replay, tr),
            env=env_state,
            carry=carry,
            is_first=tr.done,
            episode_return=jnp.where(tr.done, 0.0, ret),
            agent_steps=ts.agent_steps + 1,
        )
        return ts, stats

    def updates(agent_state, buffer, key, u: int):
        k_sample, k_update = jax.random.split(key)
        b = agent.data.batch_size

        def run(state):
            # One sample call for all updates of this step: the validity mask is built once.
            flat, index = replay.sample_sequences(
                buffer, k_sample, u * b, seq_len, cross, with_index=True
            )
            split = lambda x: jnp.moveaxis(x.reshape(seq_len, u, b, *x.shape[2:]), 1, 0)  # noqa: E731
            batches = jax.tree.map(split, flat)

            def step(st, xs):
                st, metrics, context, ok = guarded_update(st, xs[0], xs[1])
                return st, (metrics, context, ok)

            keys = jax.random.split(k_update, u)
            state, (metrics, contexts, ok) = jax.lax.scan(step, state, (batches, keys))
            counts = {"updates": jnp.int32(u), "nonfinite_updates": jnp.sum(~ok, dtype=jnp.int32)}
            written = None
            if agent.context is not None:  # refreshed contexts: [u, L, b, ...] -> [L, u * b, ...]
                merge = lambda x: jnp.moveaxis(x, 0, 1).reshape(seq_len, u * b, *x.shape[3:])  # noqa: E731
                skipped = jnp.repeat(~ok, b)[None]  # a skipped update's contexts are not written
                written = (index, jax.tree.map(merge, contexts), flat.done | skipped)
            return state, _mean_metrics(metrics), counts, written

        def skip(state):  # until some episode outlasts a sequence, nothing valid can be sampled
            shapes = jax.eval_shape(run, state)
            nan = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes[1])
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[2:])
            counts, written = zeros
            if written is not None:  # all "done": write_context leaves every row alone
                written = (*written[:2], jnp.ones_like(written[2]))
            return state, nan, counts, written

        # The buffer stays out of the cond (a large operand there may be copied).
        ok = replay.can_sample(buffer, seq_len, cross)
        state, metrics, counts, written = jax.lax.cond(ok, run, skip, agent_state)
        if written is not None:
            buffer = replay.write_context(buffer, *written)
        return state, buffer, metrics, counts

    def scan_steps(ts: TrainState, length: int, random_actions: bool, u: int):
        """`length` agent steps, each acting once in the envs and then running `u` updates."""

        def body(ts, _):
            # Each step draws three keys, the last for its updates (unused without them).
            key, k_act, k_upd = jax.random.split(ts.key, 3)
            ts, stats = env_step(ts.replace(key=key), k_act, random_actions=random_actions)
            counts = {"updates": jnp.int32(0), "nonfinite_updates": jnp.int32(0)}
            if u:
                agent_state, buffer, metrics, counts = updates(ts.agent, ts.replay, k_upd, u)
                ts, stats = ts.replace(agent=agent_state, replay=buffer), {**stats, **metrics}
            return ts, (stats, counts)

        ts, (stats, counts) = jax.lax.scan(body, ts, length=length)
        episodes = jnp.sum(stats.pop("train/episodes"))
        out = _mean_metrics(stats)
        out.update(jax.tree.map(jnp.sum, counts))
        out["train/episodes"] = episodes
        out["train/return"] = jnp.sum(stats["train/return_sum"]) / jnp.maximum(episodes, 1)
        del out["train/return_sum"]
        return ts, out

    def collect(ts: TrainState, length: int, random_actions: bool = False):
        return scan_steps(ts, length, random_actions, 0)

    def learn(ts: TrainState, u: int):
        if u < 1:
            raise ValueError(f"learn: num_updates must be at least 1, got {u}")
        key, k_upd = jax.random.split(ts.key)
        agent_state, buffer, metrics, counts = updates(ts.agent, ts.replay, k_upd, u)
        return ts.replace(agent=agent_state, replay=buffer, key=key), {**metrics, **counts}

    def fit(ts: TrainState, epochs: int):
        key, k_fit = jax.random.split(ts.key)
        agent_state, buffer, metrics = fit_replay(ts.agent, ts.replay, k_fit, epochs)
        return ts.replace(agent=agent_state, replay=buffer, key=key), metrics

    def train_chunk(ts: TrainState):
        if cfg.schedule == "interleaved":
            return scan_steps(ts, cfg.chunk_steps, False, num_updates)
        ts, acted = collect(ts, cfg.chunk_steps)
        ts, fitted = fit(ts, cfg.fit_epochs)
        return ts, {**acted, **fitted}

    def whole_run(key):
        ts = init(key)
        if cfg.seed_steps > 0:  # as `agents.run` drives it
            ts, _ = collect(ts, cfg.seed_agent_steps, True)
        return jax.lax.scan(lambda ts, _: train_chunk(ts), ts, length=cfg.num_chunks)

    if cfg.schedule == "episodic" and cfg.fit_holdout > 0:  # before anything compiles
        check_fit_metric(agent, jax.eval_shape(init, jax.random.key(0)), cfg.fit_metric)

    # Several seeds are one program: every piece vmapped over a leading seed axis [S] (the
    # phases' static arguments bound first).
    many = jax.vmap if cfg.num_seeds > 1 else (lambda f: f)

    @functools.partial(jax.jit, static_argnames=("steps", "random_actions"), donate_argnums=0)
    def collect_phase(state, steps: int, random_actions: bool = False):
        return many(lambda ts: collect(ts, steps, random_actions))(state)

    @functools.partial(jax.jit, static_argnames="num_updates", donate_argnums=0)
    def learn_phase(state, num_updates: int):
        return many(lambda ts: learn(ts, num_updates))(state)

    @functools.partial(jax.jit, static_argnames="epochs", donate_argnums=0)
    def fit_phase(state, epochs: int):
        return many(lambda ts: fit(ts, epochs))(state)

    seed_chunk = jax.jit(
        many(lambda ts: collect(ts, max(cfg.seed_agent_steps, 1), True)), donate_argnums=0
    )

    def evaluate(agent_state, key):
        if eval_env is None:
            raise ValueError("make_train: evaluate needs an eval_env")
        m = cfg.eval_episodes
        k_reset, k_loop = jax.random.split(key)
        env_state = eval_env.reset(k_reset)

        def body(carry, k):
            env_state, plan, is_first, alive, ret, length = carry
            plan, action, _ = agent.act(agent_state, plan, env_state.obs, is_first, k, eval=True)
            env_state, tr = step_transition(eval_env, env_state, action)
            # A non-finite action makes the episode's return NaN: the env's NaN guard would end it
            # with a plausible return (0 for most tasks).
            bad = (alive > 0) & ~jnp.all(jnp.isfinite(action), axis=-1)
            ret = jnp.where(bad, jnp.nan, ret + alive * tr.reward)
            length = length + alive
            alive = alive * (1.0 - tr.done.astype(jnp.float32))
            return (env_state, plan, tr.done, alive, ret, length), None

        init_carry = (
            env_state,
            agent.initial_carry(agent_state, m),
            jnp.ones((m,), bool),
            jnp.ones((m,)),
            jnp.zeros((m,)),
            jnp.zeros((m,)),
        )
        steps = spec.episode_length
        (_, _, _, _, ret, length), _ = jax.lax.scan(
            body, init_carry, jax.random.split(k_loop, steps)
        )
        return {
            "eval/return": jnp.mean(ret),
            "eval/return_min": jnp.min(ret),
            "eval/length": jnp.mean(length) * cfg.action_repeat,
        }

    # A state from `init` is committed to the device, as one restored from a checkpoint is: jit
    # keys its cache on committed-ness, so otherwise a resumed state would compile every chunk
    # again.
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return Trainer(
        init=jax.jit(many(init), out_shardings=device),
        seed_chunk=seed_chunk,
        train_chunk=jax.jit(many(train_chunk), donate_argnums=0),
        evaluate=jax.jit(many(evaluate)),
        collect=collect_phase,
        learn=learn_phase,
        fit=fit_phase,
        run=jax.jit(many(whole_run)),
    )


def seed_keys(cfg: TrainConfig) -> jax.Array:
    """The key `Trainer.init` takes: `key(seed)`, or `[S]` keys of seeds `seed .. seed + S - 1`
    (`cfg.num_seeds = S > 1`), seed `k`'s equal to what a one-seed run with seed `k` gets."""
    if cfg.num_seeds == 1:
        return jax.random.key(cfg.seed)
    return jax.vmap(jax.random.key)(cfg.seed + jnp.arange(cfg.num_seeds))


def eval_keys(cfg: TrainConfig, env_steps: int) -> jax.Array:
    """The evaluation key(s) at `env_steps`: one per seed, as `seed_keys`."""
    at = lambda seed: jax.random.fold_in(jax.random.key(seed + 1), env_steps)  # noqa: E731
    if cfg.num_seeds == 1:
        return at(cfg.seed)
    return jax.vmap(at)(cfg.seed + jnp.arange(cfg.num_seeds))
