"""Fitting on the whole replay by epochs: the learning phase of the `episodic` schedule.

`make_fit(agent, update, ...)` returns `fit(agent_state, buffer, key, epochs)`, which PETS and the
classic model-based loops run between episodes of acting (`agents.train`, `TrainConfig.schedule =
"episodic"`):
  * the valid sequence starts of the buffer (`agents.replay.epoch_starts`, which respects
    `agent.data.cross_episodes` as sampling does) are split at random, afresh every fit, into
    `holdout` of them held out and the rest for training;
  * every epoch visits each training start exactly once, in a new random order, in batches of
    `agent.data.batch_size`; the last batch is topped up with the epoch's first starts when the
    count is not a multiple of the batch size (shapes are static), so those few are seen twice;
  * with a holdout, after each epoch the agent's update is run on the held-out batches and its
    state thrown away: its `metric` (metrics are those of the state an update starts from) is the
    held-out loss; the fit stops once that loss has not improved on its best, the first being
    the loss before the fit, for `patience` epochs in a row. The state after the last epoch is
    kept (no best-epoch restore).

Shapes are static under jit although the number of valid starts grows as replay fills: the
starts are a fixed `[R * N]` array with a count, batches and epochs are `lax.while_loop`s whose
bounds are traced, so one compiled program serves every fill level. An update is guarded as in
`learn` (`agents.train.skip_nonfinite`): a non-finite one is skipped and counted, its replay
contexts unwritten.

Usage, with an `agent` (`agents.make_agent`) and a filled replay `buffer` (`agents.replay`;
`tests/agents/test_schedules.py` runs it through the episodic schedule):

    fit = make_fit(agent, skip_nonfinite(agent.update), holdout=0.1, patience=2)
    agent_state, buffer, metrics = jax.jit(fit, static_argnums=3)(agent_state, buffer, key, 5)
    metrics["fit/epochs"], metrics["fit/val_loss"]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agents import replay
from agents.types import Agent


def make_fit(
    agent: Agent, update, *, holdout: float = 0.0, patience: int = 1, metric: str = "loss/model"
):
    """The epoch fit of `agent` on a replay buffer.

    Args:
      agent: the `Agent`; its `data` gives the sequences, its `update` the held-out loss.
      update: the guarded update `(state, batch, key) -> (state, metrics, context, ok)`
        (`agents.train.skip_nonfinite(agent.update)`), which the fit trains with.
      holdout: static fraction in `[0, 1)` of the valid starts held out (`TrainConfig.fit_holdout`);
        0: none, every fit runs all its epochs.
      patience: epochs without a better held-out loss before the fit stops.
      metric: the update metric that is the held-out loss.

    Returns:
      `fit(agent_state, buffer, key, epochs) -> (agent_state, buffer, metrics)`: `epochs` is a
      static int (most epochs); `buffer` comes back with refreshed contexts (agents with
      `Agent.context`). Metrics: the means of the update's metrics over the fit's applied
      updates, `updates` and `nonfinite_updates` (counts), `fit/epochs` (epochs run),
      `fit/train_starts`, and with a holdout `fit/val_starts` and `fit/val_loss` (the best
      held-out loss, NaN when there was none).
    """
    seq_len, size, cross = agent.data.seq_len, agent.data.batch_size, agent.data.cross_episodes

    def batch_at(buffer, pool, count, i):
        """Batch `i` of the first `count` starts of `pool`, wrapping past the end."""
        index = pool[(i * size + jnp.arange(size)) % jnp.maximum(count, 1)]
        return replay.sequences_at(buffer, index, seq_len)

    def train_epoch(state, buffer, pool, count, key, totals):
        def body(carry):
            i, state, buffer, (sums, applied, skipped) = carry
            batch, where = batch_at(buffer, pool, count, i)
            state, metrics, context, ok = update(state, batch, jax.random.fold_in(key, i))
            if agent.context is not None:  # a skipped update's contexts are not written
                buffer = replay.write_context(buffer, where, context, batch.done | ~ok)
            sums = jax.tree.map(lambda s, m: s + jnp.where(ok, m, 0.0), sums, metrics)
            return i + 1, state, buffer, (sums, applied + ok, skipped + ~ok)

        num = _num_batches(count, size)
        carry = (jnp.int32(0), state, buffer, totals)
        _, state, buffer, totals = jax.lax.while_loop(lambda c: c[0] < num, body, carry)
        return state, buffer, totals

    def held_out_loss(state, buffer, pool, count, key):
        """Mean `metric` of the update over the held-out batches (NaN without any)."""

        def body(carry):
            j, total = carry
            batch, _ = batch_at(buffer, pool, count, j)
            loss = agent.update(state, batch, jax.random.fold_in(key, j)).metrics[metric]
            return j + 1, total + loss.astype(jnp.float32)

        num = _num_batches(count, size)
        _, total = jax.lax.while_loop(lambda c: c[0] < num, body, (jnp.int32(0), jnp.float32(0)))
        return jnp.where(num > 0, total / jnp.maximum(num, 1), jnp.nan)

    def fit(state, buffer, key, epochs: int):
        k_split, k_val, key = jax.random.split(key, 3)
        starts, count = replay.epoch_starts(buffer, k_split, seq_len, cross)
        num_val = jnp.floor(count * holdout).astype(jnp.int32) if holdout else jnp.int32(0)
        num_train = count - num_val  # starts[:num_val] held out, starts[num_val:count] trained
        best = jnp.float32(jnp.inf)
        if holdout:
            first = held_out_loss(state, buffer, starts, num_val, k_val)
            best = jnp.where(jnp.isfinite(first), first, jnp.inf)

        def epoch(carry):
            e, state, buffer, best, since, totals, key = carry
            key, k_order, k_train, k_val = jax.random.split(key, 4)
            pool = _shuffle_range(k_order, starts, num_val, count)
            state, buffer, totals = train_epoch(state, buffer, pool, num_train, k_train, totals)
            if holdout:
                loss = held_out_loss(state, buffer, starts, num_val, k_val)
                better = loss < best
                best = jnp.where(better, loss, best)
                since = jnp.where(better | (num_val == 0), 0, since + 1)
            return e + 1, state, buffer, best, since, totals, key

        def going(carry):
            e, since = carry[0], carry[4]
            return (e < epochs) & (num_train > 0) & (since < patience)

        shapes = jax.eval_shape(lambda: update(state, batch_at(buffer, starts, 1, 0)[0], key)[1])
        sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        totals = (sums, jnp.int32(0), jnp.int32(0))
        carry = (jnp.int32(0), state, buffer, best, jnp.int32(0), totals, key)
        e, state, buffer, best, _, (sums, applied, skipped), _ = jax.lax.while_loop(
            going, epoch, carry
        )
        out = {
            k: jnp.where(applied > 0, v / jnp.maximum(applied, 1), jnp.nan) for k, v in sums.items()
        }
        out.update(updates=applied + skipped, nonfinite_updates=skipped)
        out.update({"fit/epochs": e, "fit/train_starts": num_train})
        if holdout:
            out["fit/val_starts"] = num_val
            out["fit/val_loss"] = jnp.where(jnp.isfinite(best), best, jnp.nan)
        return state, buffer, out

    return fit


def check_fit_metric(agent: Agent, train_state_shape, metric: str) -> None:
    """Raises ValueError unless the agent's update returns `metric` (traced, not compiled).

    Args:
      agent: the `Agent`.
      train_state_shape: `jax.eval_shape` of `agents.train`'s `init` (a `TrainState` of shapes).
      metric: `TrainConfig.fit_metric`.
    """
    index = jnp.zeros((agent.data.batch_size,), jnp.int32)

    def metrics(agent_state, buffer, key):
        batch, _ = replay.sequences_at(buffer, index, agent.data.seq_len)
        return agent.update(agent_state, batch, key).metrics

    shapes = jax.eval_shape(
        metrics, train_state_shape.agent, train_state_shape.replay, jax.random.key(0)
    )
    if metric not in shapes:
        raise ValueError(
            f"TrainConfig.fit_metric {metric!r} is not a metric of the agent's update; "
            f"it returns {', '.join(sorted(shapes))}"
        )


def _num_batches(count: jax.Array, size: int) -> jax.Array:
    return (count + size - 1) // size


def _shuffle_range(key: jax.Array, values: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """`values[lo:hi]` in a uniformly random order, followed by the other entries."""
    perm = jax.random.permutation(key, values.shape[0])
    inside = (perm >= lo) & (perm < hi)
    return values[perm[jnp.argsort(~inside, stable=True)]]
