"""Tests for the replay ring buffer: shapes, wrap-around, episode and head boundaries, sampling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.replay import (
    add,
    can_sample,
    epoch_starts,
    init_replay,
    sample_sequences,
    sequences_at,
    size,
    valid_starts,
)
from agents.types import Transition

NUM_ENVS = 3
ROWS = 10  # rows per env: capacity = ROWS * NUM_ENVS


def _done_pattern(num_steps: int) -> np.ndarray:
    """`[T, N]` bool: env 0 has episodes of 4 steps, env 1 never ends, env 2 ends irregularly
    (including one-step episodes)."""
    t = np.arange(num_steps)
    done = np.zeros((num_steps, NUM_ENVS), bool)
    done[:, 0] = t % 4 == 3
    done[:, 2] = np.isin(t, [2, 3, 9, 15, 16, 17, 22])
    return done


def _stream(num_steps: int) -> list[Transition]:
    """Transitions whose obs encode `(env, time + 1, episode index)`; time starts at 1 so unwritten
    (zero) rows are recognisable."""
    done = _done_pattern(num_steps)
    episode = np.concatenate([np.zeros((1, NUM_ENVS), int), np.cumsum(done, 0)[:-1]])
    env = np.arange(NUM_ENVS)
    out = []
    for t in range(num_steps):
        obs = np.stack([env, np.full(NUM_ENVS, t + 1), episode[t]], -1).astype(np.float32)
        out.append(
            Transition(
                obs=jnp.asarray(obs),
                action=jnp.full((NUM_ENVS, 2), t, jnp.float32),
                reward=jnp.full((NUM_ENVS,), t, jnp.float32),
                next_obs=jnp.asarray(obs + np.array([0, 1, 0], np.float32)),
                terminated=jnp.asarray(done[t] & (env == 0)),
                done=jnp.asarray(done[t]),
            )
        )
    return out


def _expected_starts(num_steps: int, seq_len: int) -> set[tuple[int, int]]:
    """Brute force: `(start time, env)` of every sequence inside the kept window and one episode."""
    done = _done_pattern(num_steps)
    oldest = max(0, num_steps - ROWS)
    return {
        (s, e)
        for e in range(NUM_ENVS)
        for s in range(oldest, num_steps - seq_len + 1)
        if not done[s : s + seq_len - 1, e].any()
    }


jit_add = jax.jit(add, donate_argnums=0)
jit_sample = jax.jit(sample_sequences, static_argnames=("batch_size", "seq_len"))


@functools.cache
def _filled(num_steps: int):
    stream = _stream(num_steps)
    state = init_replay(stream[0], ROWS * NUM_ENVS)
    for transition in stream:
        state = jit_add(state, transition)
    return state


def test_init_shapes_and_size():
    example = _stream(1)[0]
    state = init_replay(example, capacity=ROWS * NUM_ENVS + 2)  # rounded down to whole rows
    assert state.data.obs.shape == (ROWS, NUM_ENVS, 3)
    assert state.data.done.shape == (ROWS, NUM_ENVS) and state.data.done.dtype == jnp.bool_
    assert int(size(state)) == 0
    assert int(size(_filled(4))) == 4 * NUM_ENVS
    assert int(size(_filled(25))) == ROWS * NUM_ENVS


def test_init_from_shape_dtype_structs():
    abstract = jax.eval_shape(lambda: _stream(1)[0])
    state = init_replay(abstract, capacity=ROWS * NUM_ENVS)
    assert state.data.reward.shape == (ROWS, NUM_ENVS)


def test_sample_shapes_and_dtypes_under_jit(key):
    sample = jit_sample(_filled(25), key, batch_size=5, seq_len=3)
    assert sample.obs.shape == (3, 5, 3) and sample.obs.dtype == jnp.float32
    assert sample.action.shape == (3, 5, 2)
    assert sample.reward.shape == (3, 5) and sample.reward.dtype == jnp.float32
    assert sample.next_obs.shape == (3, 5, 3)
    assert sample.done.dtype == jnp.bool_ and sample.terminated.dtype == jnp.bool_


def test_jit_equals_no_jit_and_add_matches(key):
    stream = _stream(3)
    state = init_replay(stream[0], ROWS * NUM_ENVS)
    eager = add(add(state, stream[0]), stream[1])
    jitted = jit_add(jit_add(init_replay(stream[0], ROWS * NUM_ENVS), stream[0]), stream[1])
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)
    a = sample_sequences(_filled(25), key, batch_size=7, seq_len=2)
    b = jit_sample(_filled(25), key, batch_size=7, seq_len=2)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_wraparound_keeps_newest_rows():
    state = _filled(25)
    times = np.asarray(state.data.obs[:, :, 1])
    assert set(times[:, 0].astype(int)) == set(range(16, 26))
    # Every env column holds the same time in a row, and the head points at the oldest row.
    assert (times == times[:, :1]).all()
    assert times[int(state.head), 0] == 16


@pytest.mark.parametrize(
    "num_steps, seq_len",
    [(6, 3), (25, 3), (25, 1), (23, 4), (20, ROWS)],
    ids=["partial", "wrapped", "len1", "wrapped-len4", "full-len"],
)
def test_sequences_stay_in_one_episode_and_cover_all_valid_starts(key, num_steps, seq_len):
    expected = _expected_starts(num_steps, seq_len)
    assert expected, "test stream must have valid starts"
    state = _filled(num_steps)
    np.testing.assert_array_equal(
        int(jnp.sum(valid_starts(state, seq_len))), len(expected), err_msg="mask size"
    )
    sample = jit_sample(state, key, batch_size=2000, seq_len=seq_len)
    obs, next_obs, done = (np.asarray(x) for x in (sample.obs, sample.next_obs, sample.done))
    env, time, episode = obs[..., 0], obs[..., 1], obs[..., 2]
    assert (env == env[:1]).all(), "a sequence mixes envs"
    np.testing.assert_array_equal(time - time[:1], np.arange(seq_len)[:, None] + 0 * time[:1])
    assert (episode == episode[:1]).all(), "a sequence crosses an episode boundary"
    assert not done[:-1].any(), "done before the last step"
    np.testing.assert_array_equal(next_obs[..., 1], time + 1)
    starts = {(int(t) - 1, int(e)) for t, e in zip(time[0], env[0], strict=True)}
    assert starts == expected  # only valid starts, and all of them


def test_sampling_is_uniform_over_valid_starts(key):
    state = _filled(25)
    expected = _expected_starts(25, 3)
    batch = 400 * len(expected)
    sample = jit_sample(state, key, batch_size=batch, seq_len=3)
    pairs = np.stack([sample.obs[0, :, 1], sample.obs[0, :, 0]], -1).astype(int)
    _, counts = np.unique(pairs, axis=0, return_counts=True)
    assert len(counts) == len(expected)
    # 400 expected per start, standard deviation ~20: 6 sigma bounds.
    assert counts.min() > 280 and counts.max() < 520, counts


def test_can_sample():
    stream = _stream(12)
    state = init_replay(stream[0], ROWS * NUM_ENVS)
    assert not bool(can_sample(state, 1))
    state = add(state, stream[0])
    assert bool(can_sample(state, 1)) and not bool(can_sample(state, 2))
    # Episodes shorter than the sequence: env 0 ends every 4 steps, env 2 often; env 1 never ends,
    # so after 12 steps only env 1 holds sequences of length 10.
    full = _filled(12)
    assert bool(can_sample(full, ROWS))
    only_short = full.replace(data=full.data.replace(done=full.data.done.at[4, 1].set(True)))
    assert not bool(can_sample(only_short, ROWS))


def test_same_key_same_sample_new_key_new_sample(key):
    state = _filled(25)
    a = jit_sample(state, key, batch_size=16, seq_len=3)
    b = jit_sample(state, key, batch_size=16, seq_len=3)
    c = jit_sample(state, jax.random.split(key)[0], batch_size=16, seq_len=3)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a.obs, c.obs)


def test_add_does_not_recompile():
    stream = _stream(4)
    add_fn = jax.jit(add, donate_argnums=0)
    state = init_replay(stream[0], ROWS * NUM_ENVS)
    for transition in stream:
        state = add_fn(state, transition)
    assert add_fn._cache_size() == 1


def test_size_errors(key):
    example = _stream(1)[0]
    with pytest.raises(ValueError, match="capacity"):
        init_replay(example, capacity=NUM_ENVS - 1)
    with pytest.raises(ValueError, match="same N"):
        init_replay(example.replace(action=jnp.zeros((NUM_ENVS + 1, 2))), capacity=30)
    state = init_replay(example, capacity=ROWS * NUM_ENVS)
    with pytest.raises(ValueError, match="seq_len"):
        sample_sequences(state, key, batch_size=2, seq_len=ROWS + 1)
    with pytest.raises(ValueError, match="seq_len"):
        can_sample(state, 0)
    with pytest.raises(ValueError, match="batch_size"):
        sample_sequences(state, key, batch_size=0, seq_len=2)
    with pytest.raises(ValueError, match="does not match"):
        add(state, example.replace(done=example.done.astype(jnp.int32)))
    with pytest.raises(ValueError, match="does not match"):
        add(state, example.replace(obs=jnp.zeros((NUM_ENVS, 4))))


def test_cross_episodes_allows_done_inside_but_never_the_write_head():
    """With cross_episodes, every in-order start is valid, dones inside or not."""
    n, capacity, seq_len = 2, 16, 4
    obs = jnp.zeros((n, 1))
    tr = lambda t: Transition(  # noqa: E731
        obs=obs + t,
        action=jnp.zeros((n, 1)),
        reward=jnp.zeros(n),
        next_obs=obs + t + 1,
        terminated=jnp.zeros(n, bool),
        done=jnp.full((n,), t % 3 == 0),
    )
    state = init_replay(tr(0), capacity * n)
    for t in range(10):
        state = add(state, tr(t))
    strict = valid_starts(state, seq_len)
    crossing = valid_starts(state, seq_len, cross_episodes=True)
    assert int(crossing.sum()) == (10 - seq_len + 1) * n  # every start whose end is written
    assert int(strict.sum()) < int(crossing.sum())
    assert bool(jnp.all(crossing | ~strict))  # a superset of the strict starts
    batch = sample_sequences(state, jax.random.key(0), 64, seq_len, cross_episodes=True)
    starts = np.asarray(batch.obs[0, :, 0])
    assert starts.max() <= 10 - seq_len and np.all(
        np.diff(np.asarray(batch.obs[:, :, 0]), axis=0) == 1
    )


def test_context_rides_along_and_write_back_targets_the_next_step(key):
    """`write_context` puts value[t] at row rows[t] + 1, except after `done` or into the head."""
    from agents.replay import write_context
    from agents.types import Context

    rows_n, n = 6, 2
    stream = []
    for t in range(8):  # 8 adds into 6 rows: wrapped, head at row 2
        done = np.array([t == 3, False])
        ctx = Context(value=jnp.full((n, 2), -1.0), first=jnp.asarray([t == 0, t == 0]))
        stream.append(
            Transition(
                obs=jnp.full((n, 1), float(t)),
                action=jnp.zeros((n, 1)),
                reward=jnp.zeros(n),
                next_obs=jnp.full((n, 1), float(t + 1)),
                terminated=jnp.asarray(done),
                done=jnp.asarray(done),
                context=ctx,
            )
        )
    state = init_replay(stream[0], rows_n * n)
    for tr in stream:
        state = add(state, tr)
    assert int(state.head) == 2
    batch, (rows, envs) = sample_sequences(state, key, 16, 3, True, with_index=True)
    np.testing.assert_array_equal(
        np.asarray(batch.context.first), np.asarray(state.data.context.first)[rows, envs[None]]
    )
    value = jnp.broadcast_to(batch.obs[..., :1] + 100.0, (3, 16, 2))  # tagged by its own step
    new = write_context(state, (rows, envs), value, batch.done)
    got_v, got_first = np.asarray(new.data.context.value), np.asarray(new.data.context.first)
    old_v = np.asarray(state.data.context.value)
    done, obs = np.asarray(state.data.done), np.asarray(state.data.obs)[..., 0]
    written = set()
    for t in range(3):
        for j in range(16):
            r, e = int(rows[t, j]), int(envs[j])
            target = (r + 1) % rows_n
            if not done[r, e] and target != 2:
                written.add((target, e))
                assert got_v[target, e, 0] == obs[r, e] + 100.0  # the value of step r's next obs
                assert obs[target, e] == obs[r, e] + 1  # ... which is the obs stored there
                assert not got_first[target, e]
    assert written  # something was written
    for r in range(rows_n):
        for e in range(n):
            if (r, e) not in written:
                np.testing.assert_array_equal(got_v[r, e], old_v[r, e])
    with pytest.raises(ValueError, match="context"):
        plain = init_replay(stream[0].replace(context=None), rows_n * n)
        write_context(plain, (rows, envs), value, batch.done)


jit_epoch = jax.jit(epoch_starts, static_argnames=("seq_len", "cross_episodes"))


@pytest.mark.parametrize("cross", [False, True], ids=["one-episode", "cross-episodes"])
@pytest.mark.parametrize("num_steps, seq_len", [(6, 3), (25, 3), (25, 1), (20, ROWS)])
def test_epoch_starts_are_every_valid_start_once_in_a_random_order(key, num_steps, seq_len, cross):
    state = _filled(num_steps)
    starts, count = jit_epoch(state, key, seq_len=seq_len, cross_episodes=cross)
    valid = np.flatnonzero(np.asarray(valid_starts(state, seq_len, cross)))  # row * N + env
    assert starts.shape == (ROWS * NUM_ENVS,) and starts.dtype == jnp.int32
    assert int(count) == len(valid)
    first = np.asarray(starts[: int(count)])
    np.testing.assert_array_equal(np.sort(first), valid)  # each valid start exactly once
    np.testing.assert_array_equal(np.sort(np.asarray(starts)), np.arange(ROWS * NUM_ENVS))
    if not cross:  # the sequences there are the ones `sample_sequences` may draw
        batch, _ = sequences_at(state, starts[: int(count)], seq_len)
        time, env = np.asarray(batch.obs[0, :, 1]) - 1, np.asarray(batch.obs[0, :, 0])
        assert set(zip(time.astype(int), env.astype(int), strict=True)) == _expected_starts(
            num_steps, seq_len
        )
    again, _ = jit_epoch(state, key, seq_len=seq_len, cross_episodes=cross)
    other, _ = jit_epoch(state, jax.random.split(key)[0], seq_len=seq_len, cross_episodes=cross)
    np.testing.assert_array_equal(starts, again)
    if len(valid) > 3:
        assert not np.array_equal(first, np.asarray(other[: int(count)]))


def test_epoch_order_is_uniform(key):
    """Over many epochs each valid start is first equally often."""
    state = _filled(25)
    keys = jax.random.split(key, 3000)
    starts, count = jax.vmap(lambda k: epoch_starts(state, k, 3))(keys)
    firsts = np.asarray(starts[:, 0])
    valid = np.flatnonzero(np.asarray(valid_starts(state, 3)))
    _, counts = np.unique(firsts, return_counts=True)
    assert set(firsts) == set(valid) and (np.asarray(count) == len(valid)).all()
    mean = len(keys) / len(valid)  # ~143, standard deviation ~12: 6 sigma bounds
    assert counts.min() > mean - 70 and counts.max() < mean + 70, counts


def test_sequences_at_is_what_sampling_gathers(key):
    state = _filled(25)
    batch, (rows, envs) = sample_sequences(state, key, 8, 3, with_index=True)
    index = rows[0] * NUM_ENVS + envs
    again, (rows2, envs2) = sequences_at(state, index, 3)
    jax.tree.map(np.testing.assert_array_equal, batch, again)
    np.testing.assert_array_equal(rows, rows2)
    np.testing.assert_array_equal(envs, envs2)
