"""Save and restore the whole training state with orbax, each leaf verified by a hash.

Orbax does not detect corruption: a flipped byte restores silently wrong values. Every checkpoint
therefore holds, next to the state, a JSON item with the run's config, the caller's metadata and a
sha256 of every leaf's bytes, and once committed a record of its files' sizes and sha256s;
`restore` checks the files before orbax reads them, recomputes the leaf hashes after, and falls
back to the previous step if the latest one is corrupt or incomplete. This is the one module in
the project that imports orbax.

Example:
    >>> import tempfile, jax, jax.numpy as jnp
    >>> from agents.checkpoint import Checkpointer
    >>> state = {"params": jnp.ones(3), "key": jax.random.key(0), "step": jnp.int32(10)}
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), config={"lr": 3e-4, "total_steps": 100})
    >>> ckpt.save(10, state, metadata={"env_steps": 1000})
    True
    >>> ckpt.latest_step()  # waits until the save is durable
    10
    >>> restored, metadata = ckpt.restore(jax.eval_shape(lambda: state))
    >>> metadata
    {'env_steps': 1000, 'step': 10}
    >>> ckpt.close()
"""

import hashlib
import json
import logging
import math
import pathlib
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import AbstractMesh, NamedSharding

logger = logging.getLogger(__name__)
_MISSING = "<missing>"
_FILES = "wm_files.json"  # our record of a committed step's files: {path: [size, sha256]}
_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax writes a step here, then renames it into place
_PYTHON = {"python-int": int, "python-float": float, "python-bool": bool}


class CheckpointError(RuntimeError):
    """No checkpoint in the directory could be restored and verified."""


class Checkpointer:
    """Saves verified checkpoints of one run's training state into `directory`.

    Args:
        directory: where the step folders live; created if absent.
        config: the run's JSON-able configuration. If `directory` already holds checkpoints, their
            config must equal this one except for the dotted keys (or key prefixes) in `ignore`.
        max_to_keep: how many of the newest checkpoints to keep on disk.
        ignore: config keys allowed to differ on resume, e.g. `("train.total_steps",)`.

    Raises:
        ValueError: the stored config differs; the message names every differing field.
    """

    def __init__(self, directory, *, config: dict, max_to_keep: int = 3, ignore=()):
        self.directory = pathlib.Path(directory).absolute()
        self._config = _to_json(config)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._writing, self._invalid, self._unrecorded = False, [], []
        stored = self._stored_config()
        if stored is not None:
            diffs = diff_configs(stored, self._config, ignore=set(ignore))
            if diffs:
                self._manager.close()
                lines = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, old, new in diffs)
                raise ValueError(
                    f"config differs from the checkpoints in {self.directory}:\n{lines}"
                )

    def save(self, step: int, state, *, metadata: dict | None = None) -> bool:
        """Starts saving `state` (any pytree of arrays, typed keys and scalars) as `step`.

        Returns once the state is copied off the device (so it may be donated next); the write
        continues in the background. Call `wait()` before reporting the checkpoint as saved.
        `metadata` is JSON-able; its key "step" is reserved for `step`. Returns False (and warns)
        when orbax skips the save: `step` is not newer than the latest checkpoint.
        """
        if not self._writing:
            self._start_writing()
        metadata = dict(metadata or {})
        if metadata.setdefault("step", step) != step:
            raise ValueError(f"metadata['step']={metadata['step']} differs from step={step}")
        extra = {"config": self._config, "metadata": _to_json(metadata), "hashes": _hashes(state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_without_empty(state)), extra=ocp.args.JsonSave(extra)
        )
        saved = self._manager.save(step, args=args)
        if saved:
            self._unrecorded.append(step)
        else:
            logger.warning("orbax skipped saving step %d in %s", step, self.directory)
        return saved

    def wait(self) -> None:
        """Blocks until every started save is committed on disk (raises its error if one failed),
        then records each new checkpoint's file sizes and hashes (`_FILES`), which `restore`
        checks before orbax reads anything."""
        self._manager.wait_until_finished()
        for step in self._unrecorded:
            path = self.directory / str(step)
            if path.is_dir():
                _write_json_atomic(path / _FILES, _file_hashes(path))
        self._unrecorded = []

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step (not yet verified; see `restore`), or None."""
        self.wait()  # orbax's own latest_step already names a save still in flight
        return self._manager.latest_step()

    def restore(self, target_state, step: int | None = None):
        """Restores and verifies a checkpoint into the structure, dtypes and shardings of a target.

        Args:
            target_state: a concrete or abstract (`jax.eval_shape`) pytree like the saved state;
                dtypes must match the saved ones.
            step: the step to restore; None takes the newest valid one, falling back past corrupt
                or incomplete checkpoints with a warning (the next `save` renames them aside).

        Returns:
            `(state, metadata)`; `metadata` is the dict given to `save`, with "step" set.

        Raises:
            FileNotFoundError: the directory holds no checkpoint (or not `step`).
            CheckpointError: no candidate checkpoint restores with matching hashes.
        """
        self.wait()
        steps = sorted(self._manager.all_steps(), reverse=True)
        if step is not None:
            steps = [s for s in steps if s == step]
        if not steps:
            which = "no checkpoint" if step is None else f"no checkpoint for step {step}"
            raise FileNotFoundError(f"{which} in {self.directory}")
        errors = []
        for i, s in enumerate(steps):
            try:
                restored = self._restore_step(s, target_state)
            except Exception as e:  # corruption shows up as anything from orbax/tensorstore
                errors.append(f"  step {s}: {type(e).__name__}: {e}")
                logger.warning("checkpoint step %d in %s is invalid (%s)", s, self.directory, e)
                continue
            self._invalid = steps[:i]
            return restored
        raise CheckpointError(f"no valid checkpoint in {self.directory}:\n" + "\n".join(errors))

    def close(self) -> None:
        """Waits for pending saves (recording their files) and releases orbax's resources."""
        try:
            self.wait()
        finally:
            self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _restore_step(self, step, target_state):
        # A corrupt file makes orbax fail one read while hundreds more are in flight, whose
        # callbacks then print "Event loop is closed" tracebacks: catch it before orbax reads.
        _check_files(self.directory / str(step))
        extra = self._read_extra(step)
        saved = extra["hashes"]
        target = jax.tree_util.tree_map_with_path(
            lambda p, x: _target_leaf(x, saved.get(jax.tree_util.keystr(p))), target_state
        )
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_without_empty(target)))
        stored = self._manager.restore(step, args=args)["state"]
        state = jax.tree.map(_fill_empty, target, stored)
        got = _hashes(state)
        bad = [
            f"{k} (saved {_short(saved.get(k))}, read {_short(got.get(k))})"
            for k in sorted(saved.keys() | got.keys())
            if saved.get(k) != got.get(k)
        ]
        if bad:
            raise CheckpointError(f"hash mismatch in {len(bad)} leaves: " + "; ".join(bad[:5]))
        return state, extra["metadata"]

    def _start_writing(self):
        """Tidies the directory before this run's first save; a reader (`wm eval`) never does, as
        it may share the directory with a live run (orbax's cleanup option runs on construction).
        Killed saves' tmp dirs go; invalid checkpoints that `restore` skipped are renamed aside, as
        orbax would refuse to save their steps again."""
        for tmp in self.directory.glob(f"*{_TMP_SUFFIX}*"):
            shutil.rmtree(tmp)
        for s in self._invalid:
            path = self.directory / str(s)
            path.rename(path.with_name(f"{s}.invalid-{time.time_ns()}"))
            logger.warning("moved invalid checkpoint step %d aside to %s.invalid-*", s, path)
        self._manager.reload()
        self._writing = True

    def _read_extra(self, step):
        args = ocp.args.Composite(extra=ocp.args.JsonRestore())
        return self._manager.restore(step, args=args)["extra"]

    def _stored_config(self):
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                return self._read_extra(step)["config"]
            except Exception as e:
                logger.warning("cannot read the config of checkpoint step %d: %s", step, e)
        return None


def _file_hashes(step_dir: pathlib.Path) -> dict[str, list]:
    """`{relative path: [size, sha256]}` of every file of a committed step directory."""
    out = {}
    for path in sorted(step_dir.rglob("*")):
        if path.is_file() and path.name != _FILES:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 22), b""):
                    digest.update(block)
            out[str(path.relative_to(step_dir))] = [path.stat().st_size, digest.hexdigest()]
    return out


def _check_files(step_dir: pathlib.Path) -> None:
    """Raises CheckpointError if a file recorded at save time is missing or changed (a step
    saved before this check existed, or killed before it was recorded, has no record: skipped)."""
    record = step_dir / _FILES
    if not record.exists():
        return
    try:
        expected = json.loads(record.read_text())
    except ValueError as e:
        raise CheckpointError(f"unreadable {record}: {e}") from None
    got = _file_hashes(step_dir)
    bad = sorted(k for k in expected if got.get(k) != expected[k])
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError(f"missing or changed files: {', '.join(bad[:3])}{more}")


def _write_json_atomic(path: pathlib.Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _hashes(tree) -> dict[str, str]:
    """Maps each leaf's key path to "dtype[shape]:sha256 of its bytes", computed on the host."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = str(leaf.dtype) if hasattr(leaf, "dtype") else f"python-{type(leaf).__name__}"
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        array = np.ascontiguousarray(np.asarray(leaf))
        digest = hashlib.sha256(array.reshape(-1).view(np.uint8)).hexdigest()
        out[jax.tree_util.keystr(path)] = f"{dtype}{list(array.shape)}:{digest}"
    return out


def _is_empty(x) -> bool:
    return isinstance(x, jax.Array | jax.ShapeDtypeStruct) and math.prod(x.shape) == 0


def _without_empty(tree):
    """Zero-size leaves (MJX's `Data.act` of a model without actuator state) as None: orbax
    cannot save them, and they hold nothing but a shape and dtype, which the target gives."""
    return jax.tree.map(lambda x: None if _is_empty(x) else x, tree)


def _fill_empty(target, stored):
    """The restored leaf, or a zero-size array of the target's shape, dtype and sharding."""
    if stored is not None or not _is_empty(target):
        return stored
    return jax.device_put(np.zeros(target.shape, target.dtype), target.sharding)


def _short(entry):
    """ "float32[8, 3]:1a2b3c4d" from a hash entry, for error messages."""
    return _MISSING if entry is None else entry[: entry.index(":") + 9]


def _target_leaf(leaf, entry):
    """What orbax restores into: a ShapeDtypeStruct on concrete devices, or a Python scalar."""
    kind = (entry or "").split("[")[0]
    if kind in _PYTHON:  # saved as a value; restore it as one even into an eval_shape target
        return _PYTHON[kind](0)
    if not isinstance(leaf, jax.Array | jax.ShapeDtypeStruct):
        return leaf
    sharding = leaf.sharding
    if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, AbstractMesh):
        # jax.eval_shape gives abstract meshes; rebuild the mesh the way jax.make_mesh built it.
        mesh = sharding.mesh
        mesh = jax.make_mesh(mesh.axis_sizes, mesh.axis_names, axis_types=mesh.axis_types)
        sharding = NamedSharding(mesh, sharding.spec)
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def _to_json(value):
    """A JSON round trip (arrays become lists), so tuples compare equal to lists read back."""
    return json.loads(json.dumps(value, default=_tolist))


def _tolist(value):
    if isinstance(value, np.ndarray | np.generic | jax.Array):
        return value.tolist()
    raise TypeError(f"not JSON-able: {value!r}")


def diff_configs(old: dict, new: dict, ignore=(), prefix: str = "") -> list[tuple]:
    """`(dotted key, old, new)` for each differing leaf of two nested config dicts.

    Keys (or key prefixes) in `ignore` are skipped; a key present on one side only differs
    (`"<missing>"` stands for the absent value). Two NaNs are equal: a config read back from JSON
    holds a new NaN object, which `!=` would call different from the saved one.
    """
    out = []
    for k in sorted(old.keys() | new.keys()):
        key, a, b = f"{prefix}{k}", old.get(k, _MISSING), new.get(k, _MISSING)
        if key in ignore:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, ignore, f"{key}.")
        elif a != b and not (_is_nan(a) and _is_nan(b)):
            out.append((key, a, b))
    return out


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
