import dataclasses
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from worldmodels.sequence import imagine
from worldmodels.tdmpc import TDMPCConfig, make_tdmpc_model
from worldmodels.types import StepOutput, Transition, WorldModel

CFG = TDMPCConfig(latent_dim=16, mlp_dim=32, enc_dim=32, num_q=2, num_bins=21)
OBS, ACT, H, B = 5, 2, 3, 16


@pytest.fixture(scope="module")
def model():
    return make_tdmpc_model(CFG, OBS, ACT)


@pytest.fixture(scope="module")
def params(model):
    return model.init(jax.random.key(0))


def _batch(key, terminated_last=False):
    """Sequences from a learnable linear system: obs' = 0.9 obs + [a, 0...], reward = obs[0]."""
    k = jax.random.split(key, 2)
    actions = jnp.tanh(jax.random.normal(k[1], (H, B, ACT)))

    def step(o, a):
        o2 = 0.9 * o + jnp.pad(a, ((0, 0), (0, OBS - ACT)))
        return o2, (o, o2)

    _, (obs, next_obs) = jax.lax.scan(step, jax.random.normal(k[0], (B, OBS)), actions)
    term = jnp.zeros((H, B), bool).at[-1, : B // 2].set(terminated_last)
    return Transition(
        obs=obs, action=actions, reward=obs[..., 0], next_obs=next_obs, terminated=term, done=term
    )


def test_shapes(model, params):
    z = model.encode(params, jnp.zeros((4, OBS)))
    a = jnp.zeros((4, ACT))
    assert z.shape == (4, CFG.latent_dim)
    assert model.next(params, z, a).shape == z.shape
    assert model.reward(params, z, a).shape == (4,)
    assert model.termination(params, z).shape == (4,)
    assert model.q_logits(params, z, a).shape == (CFG.num_q, 4, CFG.num_bins)
    assert model.q(params, z, a, jax.random.key(1)).shape == (4,)
    action, logp, mode = model.pi(params, z, jax.random.key(2))
    assert action.shape == (4, ACT) and logp.shape == (4,) and mode.shape == (4, ACT)
    assert np.all(np.abs(action) <= 1)


def test_world_model_contract(model, params):
    latent = model.initial(params, 3)
    latent, _ = model.observe(
        params,
        latent,
        jnp.zeros((3, ACT)),
        jnp.ones((3, OBS)),
        jnp.ones(3, bool),
        jax.random.key(0),
    )
    latent2, out = model.imagine(params, latent, jnp.zeros((3, ACT)), jax.random.key(1))
    assert latent2.shape == (3, CFG.latent_dim) and out.reward.shape == (3,)
    loss, metrics = model.loss(params, _batch(jax.random.key(3)), jax.random.key(4))
    assert loss.shape == () and "loss/consistency" in metrics


def test_wrong_shapes_name_the_expected_shape(model, params):
    with pytest.raises(ValueError, match=r"observation must have shape \[\.\.\., 5\]"):
        model.encode(params, jnp.zeros((2, 7)))
    z = jnp.zeros((2, CFG.latent_dim))
    with pytest.raises(ValueError, match=r"action must have shape \[\.\.\., 2\]"):
        model.next(params, z, jnp.zeros((2, 3)))


def test_jit_equals_nojit_and_keys(model, params):
    batch, key = _batch(jax.random.key(5)), jax.random.key(6)
    eager, _ = model.loss(params, batch, key)
    jitted, _ = jax.jit(model.loss)(params, batch, key)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5)
    z = model.encode(params, batch.obs[0])
    a1, _, _ = model.pi(params, z, jax.random.key(7))
    a2, _, _ = model.pi(params, z, jax.random.key(7))
    a3, _, _ = model.pi(params, z, jax.random.key(8))
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, a3)


def test_model_loss_falls_on_a_fixed_batch_and_grads_finite(model, params):
    batch = _batch(jax.random.key(9), terminated_last=True)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(p, opt, key):
        (loss, _), g = jax.value_and_grad(model.model_loss, has_aux=True)(p, batch, key)
        upd, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, upd), opt, loss, g

    p, opt = params, tx.init(params)
    losses = []
    for i in range(150):
        p, opt, loss, g = step(p, opt, jax.random.key(i))
        losses.append(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))
    # The TD target moves with the Q-functions, so the loss wanders (0.5-0.77 over the last steps,
    # depending on float rounding alone): compare the last 30 steps' mean with a margin.
    assert np.mean(losses[-30:]) < 0.7 * np.mean(losses[:3])


def test_pi_loss_only_moves_the_policy(model, params):
    latents = jax.random.normal(jax.random.key(1), (H + 1, B, CFG.latent_dim))
    grads = jax.grad(lambda p: model.pi_loss(p, latents, jax.random.key(2), 1.0)[0])(params)
    norms = {k: float(optax.tree.norm(v)) for k, v in grads.items()}
    assert norms["pi"] > 0
    assert all(v == 0 for k, v in norms.items() if k != "pi")


def test_terminated_steps_do_not_bootstrap(model, params):
    """With terminated=True the TD target is the reward alone."""
    batch = _batch(jax.random.key(3))
    batch = batch.replace(terminated=jnp.ones((H, B), bool), reward=jnp.full((H, B), 0.7))
    _, (metrics, _) = model.model_loss(params, batch, jax.random.key(4))
    np.testing.assert_allclose(metrics["td_target"], 0.7, rtol=1e-6)


class ModelBatch(NamedTuple):  # only the fields the TD-MPC2 loss reads
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


def test_loss_accepts_any_container_with_the_fields(model, params):
    batch = _batch(jax.random.key(3))
    fields = {name: getattr(batch, name) for name in ModelBatch._fields}
    for good in (batch, ModelBatch(**fields)):  # traced only: the checks run at trace time
        loss, _ = jax.eval_shape(model.loss, params, good, jax.random.key(4))
        assert loss.shape == ()


@pytest.mark.parametrize(
    "field, change, message",
    [
        ("reward", lambda x: x[0], "[H, B] = (3, 16), got (16,)"),
        ("terminated", lambda x: x[..., None], "[H, B] = (3, 16), got (3, 16, 1)"),
        ("obs", lambda x: x[0], "[H, B, O] = [H, B, 5], got (16, 5)"),
        ("obs", lambda x: x[..., :4], "[H, B, O] = [H, B, 5], got (3, 16, 4)"),
        ("action", lambda x: x[:, :-1], "[H, B, A] = (3, 16, 2), got (3, 15, 2)"),
        ("next_obs", lambda x: x[:2], "[H, B, O] = (3, 16, 5), got (2, 16, 5)"),
    ],
)
def test_loss_names_the_batch_field_of_the_wrong_shape(model, params, field, change, message):
    batch = _batch(jax.random.key(3))
    bad = batch.replace(**{field: change(getattr(batch, field))})
    for loss in (model.loss, model.model_loss):
        with pytest.raises(
            ValueError,
            match=re.escape(f"TDMPCModel.model_loss: batch.{field} must have shape {message}"),
        ):
            loss(params, bad, jax.random.key(4))


def test_loss_of_a_dict_or_incomplete_batch_names_the_container(model, params):
    batch, key = _batch(jax.random.key(3)), jax.random.key(4)
    fields = {name: getattr(batch, name) for name in ModelBatch._fields}
    container = r"batch must be a Transition-like object with array fields obs, action, reward, "
    container += r"next_obs, terminated read as attributes \(e\.g\. worldmodels\.Transition"
    with pytest.raises(TypeError, match=rf"{container}.*got dict$"):
        model.loss(params, fields, key)
    incomplete = NamedTuple("Partial", [(n, jax.Array) for n in ("obs", "action", "reward")])
    with pytest.raises(TypeError, match=rf"{container}.*got Partial lacking next_obs, terminated"):
        model.loss(params, incomplete(batch.obs, batch.action, batch.reward), key)


@pytest.mark.parametrize(
    "field,value",
    [
        ("latent_dim", 0),
        ("latent_dim", 12),
        ("num_q", 1),
        ("num_bins", 1),
        ("discount", 1.5),
        ("rho", 0.0),
        ("mlp_dim", -1),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TDMPCConfig(**{field: value})


def test_steps_after_an_episode_end_do_not_reach_the_loss(model, params):
    """A sequence whose step 0 ends its episode (terminal) learns from step 0 alone: the next
    episode's steps behind it (any values) change neither the loss nor its gradient."""
    batch = _batch(jax.random.key(3))
    ended = batch.replace(
        terminated=batch.terminated.at[0].set(True), done=batch.done.at[0].set(True)
    )
    noise = jax.random.normal(jax.random.key(5), batch.obs[1:].shape) * 10
    other = ended.replace(
        obs=ended.obs.at[1:].add(noise),
        next_obs=ended.next_obs.at[1:].add(noise),
        reward=ended.reward.at[1:].set(-50.0),
        terminated=ended.terminated.at[1:].set(True),
    )
    grad = jax.jit(jax.value_and_grad(model.loss, has_aux=True))
    (loss_a, metrics), grads_a = grad(params, ended, jax.random.key(4))
    (loss_b, _), grads_b = grad(params, other, jax.random.key(4))
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["td_target"], jnp.mean(ended.reward[0]), rtol=1e-6)
    # Without `done`, the same batch is taken as one episode: the later steps count.
    no_done = ModelBatch(*(getattr(other, f) for f in ModelBatch._fields))
    assert abs(float(model.loss(params, no_done, jax.random.key(4))[0]) - float(loss_b)) > 1e-3


def test_same_episode_masks_steps_after_the_first_done():
    from worldmodels.tdmpc import same_episode

    done = jnp.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], bool)  # [H=3, B=4]
    expected = [[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1]]
    np.testing.assert_array_equal(same_episode(done), expected)


def test_sizes_are_given_to_the_factory(model, params):
    assert model.world_model == WorldModel(*model[: len(WorldModel._fields)])
    assert model._fields[: len(WorldModel._fields)] == WorldModel._fields
    assert (model.obs_size, model.action_size) == (OBS, ACT)
    assert params["encoder"]["layers"]["0"]["kernel"].shape[0] == OBS
    assert params["pi"]["out"]["kernel"].shape[1] == 2 * ACT
    one_layer = make_tdmpc_model(dataclasses.replace(CFG, num_enc_layers=1), OBS, ACT)
    assert one_layer.encode(one_layer.init(jax.random.key(0)), jnp.zeros((2, OBS))).shape == (
        2,
        CFG.latent_dim,
    )
    for bad, name in [((0, ACT), "obs_size"), ((OBS, 1.5), "action_size")]:
        with pytest.raises(ValueError, match=f"make_tdmpc_model: {name} must be an int >= 1"):
            make_tdmpc_model(CFG, *bad)


def test_observe_and_imagine_return_step_outputs(model, params):
    z0 = model.encode(params, jnp.ones((3, OBS)))
    action = jnp.tanh(jax.random.normal(jax.random.key(1), (3, ACT)))
    obs = jax.random.normal(jax.random.key(2), (3, OBS))
    z, out = jax.jit(model.observe)(params, z0, action, obs, jnp.zeros(3, bool), jax.random.key(0))
    assert isinstance(out, StepOutput) and out.extras == {}
    assert out.reward.shape == (3,) and out.cont.shape == (3,)
    np.testing.assert_allclose(z, model.encode(params, obs), rtol=1e-6)
    np.testing.assert_allclose(out.reward, model.reward(params, z0, action), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.cont, 1 - model.termination(params, z), rtol=1e-5)
    z2, out = jax.jit(model.imagine)(params, z0, action, jax.random.key(1))
    assert isinstance(out, StepOutput) and out.reward.shape == (3,) and out.cont.shape == (3,)
    np.testing.assert_allclose(z2, model.next(params, z0, action), rtol=1e-6)
    # the reward reads (z, a), the continuation `1 - termination` reads z'
    np.testing.assert_allclose(out.reward, model.reward(params, z0, action), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.cont, 1 - model.termination(params, z2), rtol=1e-5)
    assert np.all((out.cont > 0) & (out.cont < 1))
    split = model.predict(params, z0, action, model.transition(params, z0, action, None))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), split, out)


def test_without_episodic_cont_is_one(params):
    model = make_tdmpc_model(dataclasses.replace(CFG, episodic=False), OBS, ACT)
    z = model.encode(params, jnp.ones((3, OBS)))
    _, out = model.imagine(params, z, jnp.zeros((3, ACT)), jax.random.key(1))
    np.testing.assert_array_equal(out.cont, np.ones(3))
    _, out = model.observe(params, z, jnp.zeros((3, ACT)), jnp.ones((3, OBS)), jnp.ones(3, bool),
                           jax.random.key(1))  # fmt: skip
    np.testing.assert_array_equal(out.cont, np.ones(3))
    assert (
        "loss/termination"
        not in model.loss(params, _batch(jax.random.key(3)), jax.random.key(4))[1]
    )


def test_sequence_imagine_equals_per_step_imagine_loop(model, params):
    """Heads after the scan (`predict` on all `[H, B]` steps) equal `imagine` at every step."""
    start = model.encode(params, jax.random.normal(jax.random.key(1), (B, OBS)))
    policy = lambda z, k: model.pi(params, z, k)[0]
    horizon, key = 4, jax.random.key(2)
    latents, actions, outs = jax.jit(imagine, static_argnums=(0, 3, 4))(
        model, params, start, policy, horizon, key
    )
    z, ref = start, []
    for step_key in jax.random.split(key, horizon):
        policy_key, model_key = jax.random.split(step_key)
        action = policy(z, policy_key)
        z, out = model.imagine(params, z, action, model_key)
        ref.append((z, action, out))
    ref = jax.tree.map(lambda *xs: jnp.stack(xs), *ref)
    for got, want in zip(
        jax.tree.leaves((latents, actions, outs)), jax.tree.leaves(ref), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert outs.reward.shape == (horizon, B) and outs.cont.shape == (horizon, B)
