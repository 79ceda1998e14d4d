"""Checkpointer: bit-identical round trips, pruning, config checks, corruption fallback."""

import logging
import pathlib

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from agents.checkpoint import Checkpointer, CheckpointError

CONFIG = {"seed": 0, "model": {"latent": 32, "layers": (2, 2)}, "train": {"total_steps": 100}}


@flax.struct.dataclass
class Carry:
    obs: jax.Array  # [B, 3]
    done: jax.Array  # [B]
    size: int = flax.struct.field(pytree_node=False, default=4)


def make_state(key):
    """A small training-state-like pytree with every kind of leaf the training loop saves."""
    k_params, k_replay, k_obs, k_state = jax.random.split(key, 4)
    devices = jax.device_count() if 8 % jax.device_count() == 0 else 1
    mesh = jax.make_mesh((devices,), ("data",))
    replay = jax.random.normal(k_replay, (1024, 32))  # large enough to fill its own data file
    return {
        "params": {"w": jax.random.normal(k_params, (3, 4)), "b": jnp.ones(4, jnp.bfloat16)},
        "replay": jax.device_put(replay, NamedSharding(mesh, P("data"))),
        "counts": jnp.arange(5, dtype=jnp.int32),
        "mask": jnp.array([True, False, True]),
        "key": k_state,
        "env_keys": jax.random.split(k_state, 4),
        "carry": Carry(obs=jax.random.uniform(k_obs, (4, 3)), done=jnp.zeros(4, bool)),
        "step": jnp.int32(7),
        "episodes": 3,
    }


def assert_identical(expected, actual):
    leaves_e, treedef_e = jax.tree.flatten(expected)
    leaves_a, treedef_a = jax.tree.flatten(actual)
    assert treedef_e == treedef_a
    for e, a in zip(leaves_e, leaves_a, strict=True):
        if isinstance(e, jax.Array) and jax.dtypes.issubdtype(e.dtype, jax.dtypes.prng_key):
            assert a.dtype == e.dtype
            e, a = jax.random.key_data(e), jax.random.key_data(a)
        e, a = np.asarray(e), np.asarray(a)
        assert (e.dtype, e.shape, e.tobytes()) == (a.dtype, a.shape, a.tobytes())


def step_dirs(directory):
    return sorted(int(p.name) for p in pathlib.Path(directory).iterdir() if p.name.isdigit())


def flip_bytes(step_dir):
    """Corrupts the largest array-data file of a checkpoint, as a bad disk or copy would."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))


def test_round_trip_is_bit_identical(tmp_path, key):
    state = make_state(key)
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        assert ckpt.save(10, state, metadata={"env_steps": 1000, "returns": [1.5, -2.0]})
        assert ckpt.latest_step() == 10
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        restored, metadata = ckpt.restore(state)
        from_abstract, _ = ckpt.restore(jax.eval_shape(lambda: state))
    assert metadata == {"env_steps": 1000, "returns": [1.5, -2.0], "step": 10}
    assert_identical(state, restored)
    assert_identical(state, from_abstract)
    for tree in (restored, from_abstract):
        assert tree["replay"].sharding.is_equivalent_to(state["replay"].sharding, 2)
    assert restored["carry"].size == 4
    # Restored keys are live keys: they draw the same numbers as the originals.
    assert jax.random.normal(restored["key"]) == jax.random.normal(state["key"])


def test_zero_size_leaves_round_trip(tmp_path, key):
    # MJX physics states hold zero-size arrays (`Data.act` without actuator state), which orbax
    # alone refuses to save.
    state = {"x": jax.random.normal(key, (3,)), "act": jnp.zeros((4, 0)), "idx": jnp.zeros(0, int)}
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        assert ckpt.save(1, state)
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        restored, _ = ckpt.restore(jax.eval_shape(lambda: state))
    assert_identical(state, restored)
    assert restored["act"].shape == (4, 0) and restored["idx"].dtype == state["idx"].dtype


def test_max_to_keep_prunes_old_steps(tmp_path, key):
    state = {"x": jax.random.normal(key, (4,))}
    with Checkpointer(tmp_path, config=CONFIG, max_to_keep=2) as ckpt:
        for step in (1, 2, 3, 4):
            ckpt.save(step, state)
        assert ckpt.latest_step() == 4
    assert step_dirs(tmp_path) == [3, 4]


def test_config_mismatch_names_every_field(tmp_path):
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(2)})
    changed = {"seed": 1, "model": {"latent": 64, "layers": [2, 2]}, "train": {}, "new": True}
    with pytest.raises(ValueError) as info:
        Checkpointer(tmp_path, config=changed)
    message = str(info.value)
    for line in ("seed: 0 -> 1", "model.latent: 32 -> 64", "train.total_steps: 100 -> '<missing>'"):
        assert line in message
    assert "new: '<missing>' -> True" in message
    assert "layers" not in message  # a tuple equals the list it is stored as

    Checkpointer(tmp_path, config=CONFIG).close()  # same config: accepted
    ignore = ("seed", "model.latent", "train", "new")
    Checkpointer(tmp_path, config=changed, ignore=ignore).close()  # every difference ignored
    with pytest.raises(ValueError, match="model.latent") as info:
        Checkpointer(tmp_path, config=changed, ignore=("seed", "train", "new"))
    assert "seed" not in str(info.value)


def test_a_nan_in_the_config_does_not_lock_the_checkpoints(tmp_path):
    """Issue 13.6: NaN != NaN, so a config holding one differed from itself when read back."""
    config = {**CONFIG, "lr": float("nan")}
    with Checkpointer(tmp_path, config=config) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(2)})
    Checkpointer(tmp_path, config={**CONFIG, "lr": float("nan")}).close()  # accepted
    with pytest.raises(ValueError, match="lr: nan -> 0.1"):
        Checkpointer(tmp_path, config={**CONFIG, "lr": 0.1})


def test_corrupt_latest_falls_back_to_previous(tmp_path, key, caplog):
    states = [make_state(jax.random.fold_in(key, i)) for i in range(2)]
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        for step, state in zip((1, 2), states, strict=True):
            ckpt.save(step, state, metadata={"tag": step})
    flip_bytes(tmp_path / "2")
    # A killed save leaves a tmp dir: never a checkpoint, removed once this run saves again.
    killed = tmp_path / "3.orbax-checkpoint-tmp-123"
    (killed / "state").mkdir(parents=True)

    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        assert ckpt.latest_step() == 2  # orbax cannot tell it is corrupt without reading it
        with pytest.raises(CheckpointError, match="step 2"):
            ckpt.restore(states[0], step=2)  # an explicit step never falls back
        with caplog.at_level(logging.WARNING, logger="agents.checkpoint"):
            restored, metadata = ckpt.restore(states[0])
        assert metadata == {"tag": 1, "step": 1}
        assert_identical(states[0], restored)
        # Found by the record of the step's files, before orbax read anything.
        assert "missing or changed files: state/ocdbt.process_0/d/" in caplog.text
        # A step without that record (saved before it existed) is caught by the leaf hashes.
        (tmp_path / "2" / "wm_files.json").unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agents.checkpoint"):
            assert ckpt.restore(states[0])[1] == {"tag": 1, "step": 1}
        assert "hash mismatch in 1 leaves: ['replay']" in caplog.text
        # A reader changes nothing; the resumed run's first save sets the corrupt step aside
        # (so it can save step 2 afresh) and removes the killed save.
        assert ckpt.latest_step() == 2 and killed.exists()
        assert ckpt.save(2, states[1])
        assert len(list(tmp_path.glob("2.invalid-*"))) == 1 and not killed.exists()
        assert_identical(states[1], ckpt.restore(states[0])[0])


# A restore that fails midway can leave tensorstore callbacks on orbax's closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_incomplete_and_missing_checkpoints_raise_clearly(tmp_path, key):
    state = {"x": jax.random.normal(key, (1024, 32)), "key": key}
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            ckpt.restore(state)
        ckpt.save(1, state)
        ckpt.save(2, state)
        ckpt.wait()
    flip_bytes(tmp_path / "1")
    for data in (tmp_path / "2" / "state").rglob("*"):
        if data.is_file() and data.parent.name == "d":  # an incomplete copy: chunks lost
            data.unlink()
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        with pytest.raises(CheckpointError, match="no valid checkpoint") as info:
            ckpt.restore(state)
        with pytest.raises(FileNotFoundError, match="step 5"):
            ckpt.restore(state, step=5)
    assert "step 2" in str(info.value) and "step 1" in str(info.value)


def test_metadata_step_must_match(tmp_path):
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        with pytest.raises(ValueError, match="step"):
            ckpt.save(3, {"x": jnp.zeros(2)}, metadata={"step": 4})


def test_save_survives_donation(tmp_path, key):
    """The training loop donates its state right after `save`; the checkpoint must not change."""
    state = {"x": jax.random.normal(key, (1024, 32))}
    expected = jax.tree.map(np.array, state)
    with Checkpointer(tmp_path, config=CONFIG) as ckpt:
        ckpt.save(1, state)
        state = jax.jit(lambda s: jax.tree.map(jnp.zeros_like, s), donate_argnums=0)(state)
        restored, _ = ckpt.restore(state)
    assert_identical(expected, restored)
