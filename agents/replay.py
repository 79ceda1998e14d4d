"""An on-device replay buffer of transitions: a ring over time per env, sampled as sequences.

Pure functions on a `ReplayState` (a `flax.struct.dataclass`), all jit-able with the state
donated (`jax.jit(add, donate_argnums=0)` updates the storage in place); no host round-trips.

Layout: every `Transition` leaf is stored as `[R, N, ...]`, `R = capacity // N` rows of one
agent step for all `N` envs, written at a shared `head` that wraps around, overwriting the oldest
row. A sequence is `seq_len` consecutive rows of one env. A start `(row, env)` is *valid* when
  * all `seq_len` rows are written and lie in order between the oldest row and the head (a
    sequence never crosses the write head or an unwritten row, also across the wrap-around), and
  * none of its first `seq_len - 1` steps is `done` (a sequence never spans two episodes; its last
    step may be done, and then its `next_obs` is the true final observation).
`sample_sequences` draws starts uniformly, with replacement, over all valid starts: an exact int32
cumulative count of the validity mask and a binary search, `O(capacity)` work per call rather
than one Gumbel draw per slot and sample as `jax.random.categorical` would need. `epoch_starts`
gives every valid start once in a random order (an epoch without replacement, for fitting a model
on the whole buffer), and `sequences_at` gathers the sequences at given starts.

Why not flashbax: its trajectory buffer (0.1.3) samples start indices uniformly from
`[oldest, head - seq_len]` without looking at the data, so sequences cross episode boundaries;
its prioritised variant would need the priority of a start to change when a later `done` is
written, `seq_len - 1` rows after the start was added. A mask over the ring is simpler and exact.

Note: with episodes shorter than `seq_len` there is no valid start; `can_sample` says so.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from agents.types import Transition


@struct.dataclass
class ReplayState:
    """Replay storage and write position.

    Attributes:
      data: Transition with leaves `[R, N, ...]` (rows x envs).
      head: int32 `[]`: the row the next `add` writes.
      rows: int32 `[]`: rows written so far, saturating at `R`.
    """

    data: Transition
    head: jax.Array
    rows: jax.Array


def init_replay(example: Transition, capacity: int) -> ReplayState:
    """Allocates an empty buffer for `capacity` transitions.

    Args:
      example: a Transition with leaves `[N, ...]` (arrays or `jax.ShapeDtypeStruct`s), e.g. the
        output of `agents.envs.step_transition`; only shapes and dtypes are used.
      capacity: total transitions kept; rounded down to a multiple of `N` (`R = capacity // N`
        rows per env).

    Returns:
      A ReplayState with zeroed storage `[R, N, ...]`.

    Raises:
      ValueError: `capacity < N`, or leaves that do not share the leading `N`.

    Example:
      >>> import jax.numpy as jnp
      >>> from agents.types import Transition
      >>> N = 2  # envs
      >>> transition = Transition(
      ...     obs=jnp.zeros((N, 3)), action=jnp.zeros((N, 1)), reward=jnp.zeros(N),
      ...     next_obs=jnp.zeros((N, 3)), terminated=jnp.zeros(N, bool), done=jnp.zeros(N, bool),
      ... )  # fmt: skip
      >>> state = init_replay(transition, capacity=100)
      >>> for _ in range(10):
      ...     state = jax.jit(add, donate_argnums=0)(state, transition)
      >>> int(size(state))  # transitions stored: 10 steps of N envs
      20
    """
    num_envs = example.done.shape[0] if example.done.shape else 0
    for leaf in jax.tree.leaves(example):
        if not leaf.shape or leaf.shape[0] != num_envs:
            raise ValueError(
                f"every Transition leaf must be [N, ...] with the same N (done has N={num_envs}), "
                f"got a leaf of shape {leaf.shape}"
            )
    if capacity < num_envs:
        raise ValueError(f"capacity ({capacity}) must be at least num_envs ({num_envs})")
    rows = capacity // num_envs
    data = jax.tree.map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), example)
    return ReplayState(data=data, head=jnp.zeros((), jnp.int32), rows=jnp.zeros((), jnp.int32))


def add(state: ReplayState, transition: Transition) -> ReplayState:
    """Writes one agent step for all envs at the head, overwriting the oldest row when full.

    Args:
      state: the buffer, storage `[R, N, ...]`.
      transition: leaves `[N, ...]` with the stored shapes and dtypes.

    Returns:
      The updated buffer.

    Raises:
      ValueError: (at trace time) a leaf whose shape or dtype differs from the storage.
    """
    capacity = _num_rows(state)

    def write(buffer, x):
        if x.shape != buffer.shape[1:] or x.dtype != buffer.dtype:
            raise ValueError(
                f"transition leaf {x.dtype}{list(x.shape)} does not match the buffer's "
                f"{buffer.dtype}{list(buffer.shape[1:])}"
            )
        return jax.lax.dynamic_update_index_in_dim(buffer, x, state.head, axis=0)

    data = jax.tree.map(write, state.data, transition)
    return ReplayState(
        data=data,
        head=(state.head + 1) % capacity,
        rows=jnp.minimum(state.rows + 1, capacity),
    )


def size(state: ReplayState) -> jax.Array:
    """Transitions stored, int32 `[]` (rows written x N)."""
    return state.rows * state.data.done.shape[1]


def valid_starts(state: ReplayState, seq_len: int, cross_episodes: bool = False) -> jax.Array:
    """Which `(row, env)` can start a sequence of `seq_len` steps (see the module docstring).

    Args:
      state: the buffer, storage `[R, N, ...]`.
      seq_len: static sequence length, `1 <= seq_len <= R`.
      cross_episodes: static; allow sequences that span episode ends (for recurrent models that
        reset on `done`, e.g. Dreamer); they still never cross the write head.

    Returns:
      bool `[R, N]`.
    """
    capacity = _num_rows(state)
    _check_seq_len(seq_len, capacity)
    oldest = jnp.where(state.rows < capacity, 0, state.head)
    age = (jnp.arange(capacity) - oldest) % capacity  # 0 for the oldest row
    in_order = age + seq_len <= state.rows  # [R]: ends at or before the newest row
    if cross_episodes:
        return jnp.broadcast_to(in_order[:, None], state.data.done.shape[:2])
    # Dones among rows t .. t+seq_len-2 (around the ring), from a padded cumulative count.
    done = state.data.done.astype(jnp.int32)
    padded = jnp.concatenate([done, done[: seq_len - 1]], axis=0)  # [R + L - 1, N]
    counts = jnp.concatenate([jnp.zeros_like(done[:1]), jnp.cumsum(padded, axis=0)], axis=0)
    dones_inside = counts[seq_len - 1 : seq_len - 1 + capacity] - counts[:capacity]
    return in_order[:, None] & (dones_inside == 0)


def can_sample(state: ReplayState, seq_len: int, cross_episodes: bool = False) -> jax.Array:
    """Whether at least one valid start exists, bool `[]`."""
    return jnp.any(valid_starts(state, seq_len, cross_episodes))


def sample_sequences(
    state: ReplayState,
    key: jax.Array,
    batch_size: int,
    seq_len: int,
    cross_episodes: bool = False,
    *,
    with_index: bool = False,
):
    """Samples sequences uniformly over valid starts, with replacement.

    Args:
      state: the buffer, storage `[R, N, ...]`.
      key: typed key, consumed.
      batch_size: static number of sequences `B >= 1`.
      seq_len: static length `L`, `1 <= L <= R`.
      cross_episodes: static; see `valid_starts`.
      with_index: static; also return where the sequences lie (for `write_context`).

    Returns:
      Transition with time-major leaves `[L, B, ...]`. Meaningless where `can_sample` is False.
      With `with_index`: `(transitions, (rows [L, B], envs [B]))`.

    Raises:
      ValueError: (at trace time) `batch_size < 1`, `seq_len < 1` or `seq_len > R`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    flat_valid = valid_starts(state, seq_len, cross_episodes).reshape(-1)  # index = row * N + env
    counts = jnp.cumsum(flat_valid.astype(jnp.int32))
    pick = jax.random.randint(key, (batch_size,), 0, jnp.maximum(counts[-1], 1))
    # The (pick+1)-th valid start: the first index whose running count exceeds `pick`.
    index = jnp.minimum(jnp.searchsorted(counts, pick, side="right"), flat_valid.shape[0] - 1)
    batch, where = sequences_at(state, index, seq_len)
    return (batch, where) if with_index else batch


def epoch_starts(
    state: ReplayState, key: jax.Array, seq_len: int, cross_episodes: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Every valid start once, in a random order: one epoch over the buffer, without replacement.

    Starts are flat indices `row * N + env` (as `sequences_at` takes them); which are valid is
    decided by `valid_starts`, exactly as `sample_sequences` decides it.

    Args:
      state: the buffer, storage `[R, N, ...]`.
      key: typed key, consumed.
      seq_len: static length `L`, `1 <= L <= R`.
      cross_episodes: static; see `valid_starts`.

    Returns:
      `(starts, count)`: int32 `[R * N]` whose first `count` entries are the valid starts in a
      uniformly random order (the rest are the invalid ones, to be ignored), and int32 `[]`.

    Example (10 steps of 2 envs, as in `init_replay`'s example):
      >>> import jax.numpy as jnp
      >>> from agents.types import Transition
      >>> step = Transition(
      ...     obs=jnp.zeros((2, 3)), action=jnp.zeros((2, 1)), reward=jnp.zeros(2),
      ...     next_obs=jnp.zeros((2, 3)), terminated=jnp.zeros(2, bool), done=jnp.zeros(2, bool),
      ... )  # fmt: skip
      >>> state = init_replay(step, capacity=100)
      >>> for _ in range(10):
      ...     state = add(state, step)
      >>> starts, count = epoch_starts(state, jax.random.key(0), seq_len=4)
      >>> int(count)  # 7 starts in each env's 10 steps
      14
      >>> batch, _ = sequences_at(state, starts[:8], seq_len=4)  # the first 8 of them
      >>> batch.obs.shape
      (4, 8, 3)
    """
    flat_valid = valid_starts(state, seq_len, cross_episodes).reshape(-1)
    perm = jax.random.permutation(key, flat_valid.shape[0]).astype(jnp.int32)
    # A stable sort on "invalid" keeps the permutation's order among the valid starts.
    starts = perm[jnp.argsort(~flat_valid[perm], stable=True)]
    return starts, jnp.sum(flat_valid, dtype=jnp.int32)


def sequences_at(state: ReplayState, index: jax.Array, seq_len: int):
    """The sequences of `seq_len` rows that start at flat indices `index` (`row * N + env`).

    Args:
      state: the buffer, storage `[R, N, ...]`.
      index: int `[B]` starts, from `epoch_starts` or valid by `valid_starts` (not checked).
      seq_len: static length `L`, `1 <= L <= R`.

    Returns:
      `(transitions, (rows [L, B], envs [B]))`: time-major leaves `[L, B, ...]` and where they lie
      (for `write_context`).
    """
    capacity, num_envs = state.data.done.shape[:2]
    _check_seq_len(seq_len, capacity)
    start, env = index // num_envs, index % num_envs  # [B]
    rows = (start[None, :] + jnp.arange(seq_len)[:, None]) % capacity  # [L, B]
    batch = jax.tree.map(lambda x: x[rows, env[None, :]], state.data)
    return batch, (rows, env)


def write_context(
    state: ReplayState, index: tuple[jax.Array, jax.Array], value, done: jax.Array
) -> ReplayState:
    """Writes refreshed contexts for the steps that follow a sampled sequence's steps.

    `value[t]` (leaves `[L, B, ...]`) is the context of the observation after step `t`, i.e. of
    row `rows[t] + 1`. It is written there, with `first = False`, where that row continues the
    same episode: not after a `done [L, B]` step, and not into the head row, which holds the
    oldest data (a different stretch of time) until the next `add` overwrites it.

    Args:
      state: the buffer; its Transitions carry a `Context` (`Transition.context`).
      index: `(rows [L, B], envs [B])` from `sample_sequences(..., with_index=True)`.
      value: leaves `[L, B, ...]` shaped like the stored `Context.value`.
      done: `[L, B]` bool, the sampled sequences' `done`.

    Returns:
      The buffer with the contexts replaced (duplicate targets keep one of their values).
    """
    ctx = state.data.context
    if ctx is None:
        raise ValueError("write_context: the replay stores no Transition.context")
    rows, envs = index
    capacity = _num_rows(state)
    target = (rows + 1) % capacity
    keep = done | (target == state.head)  # [L, B]: leave those rows alone
    envs = jnp.broadcast_to(envs[None, :], rows.shape)

    def put(stored, new):
        old = stored[target, envs]
        mask = keep.reshape(keep.shape + (1,) * (new.ndim - keep.ndim))
        return stored.at[target, envs].set(jnp.where(mask, old, new.astype(stored.dtype)))

    new_value = jax.tree.map(put, ctx.value, value)
    first = ctx.first.at[target, envs].set(jnp.where(keep, ctx.first[target, envs], False))
    context = ctx.replace(value=new_value, first=first)
    return state.replace(data=state.data.replace(context=context))


def _num_rows(state: ReplayState) -> int:
    return state.data.done.shape[0]


def _check_seq_len(seq_len: int, capacity: int) -> None:
    if not 1 <= seq_len <= capacity:
        raise ValueError(
            f"seq_len must be in [1, rows per env = {capacity}], got {seq_len}; "
            "raise the capacity or shorten the sequences"
        )
