"""`model_step_fn`: any `WorldModel` as the planners' step function, with the alive weighting."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import worldmodels as wm
from worldmodels.rollout import rollout, rollout_return
from worldmodels.types import StepOutput, WorldModel

H, A = 3, 2
PLAN = dict(horizon=H, action_size=A, num_samples=16, num_elites=4, iterations=2)


def _counter_model(cont: float) -> WorldModel:
    """Latent `[..., 1]` counts steps; reward `1 + action[0]`, continuation `cont` every step."""

    def transition(params, latent, action, key):
        return latent + 1.0

    def predict(params, latent, action, next_latent):
        reward = 1.0 + action[..., 0]
        return StepOutput(reward=reward, cont=jnp.full_like(reward, cont), extras={})

    def imagine(params, latent, action, key):
        nxt = transition(params, latent, action, key)
        return nxt, predict(params, latent, action, nxt)

    return WorldModel(
        init=lambda key: {},
        initial=lambda params, batch_size: jnp.zeros((batch_size, 1)),
        observe=None,
        imagine=imagine,
        transition=transition,
        predict=predict,
        loss=None,
    )


@pytest.mark.parametrize("cont", [1.0, 0.5, 0.0])
def test_rewards_after_a_predicted_termination_do_not_count(cont):
    step_fn = wm.model_step_fn(_counter_model(cont), {})
    root = wm.model_root(jnp.zeros(1))
    actions = jnp.zeros((4, 1))
    (latents, alive), rewards = rollout(step_fn, root, actions, jax.random.key(0))
    # reward t counts with the probability of being alive before it: cont**t
    np.testing.assert_allclose(rewards, cont ** np.arange(4), rtol=1e-6)
    np.testing.assert_allclose(alive, cont ** np.arange(1, 5), rtol=1e-6)
    np.testing.assert_allclose(latents[:, 0], [1, 2, 3, 4])
    value = wm.model_value_fn(lambda latent, key: 10.0 + latent[0])  # 14 at the last latent
    total = rollout_return(step_fn, root, actions, jax.random.key(0), value_fn=value, discount=0.9)
    expected = sum((0.9 * cont) ** t for t in range(4)) + 0.9**4 * cont**4 * 14.0
    np.testing.assert_allclose(total, expected, rtol=1e-6)
    prior = wm.model_prior_fn(lambda latent, key: jnp.broadcast_to(latent, (1,)))
    np.testing.assert_array_equal(prior(root, jax.random.key(0)), [0.0])


def test_planner_avoids_a_predicted_termination():
    """Reward 1 per step, but the episode ends after any positive first action: the planner
    prefers negative first actions although they pay less now."""

    def imagine(params, latent, action, key):
        step = latent[..., 0]
        ends = (step == 0) & (action[..., 0] > 0)
        reward = 1.0 + 0.5 * action[..., 0]
        return latent + 1.0, StepOutput(reward=reward, cont=jnp.where(ends, 0.0, 1.0))

    model = _counter_model(1.0)._replace(imagine=imagine)
    step_fn, root = wm.model_step_fn(model, {}), wm.model_root(jnp.zeros(1))
    plan = wm.cem(jax.random.key(0), root, step_fn, horizon=5, action_size=1, num_samples=256,
                  num_elites=16, iterations=4)  # fmt: skip
    assert float(plan.action[0]) < 0.0


def _rssm():
    cfg = wm.RSSMConfig(deter=16, hidden=8, groups=3, classes=4, blocks=4, units=8, num_bins=21,
                        enc_layers=1, dec_layers=1, img_layers=1)  # fmt: skip
    model = wm.make_rssm(cfg, 5, A)
    params = model.init(jax.random.key(0))

    def roots(key, n):
        latent = model.initial(params, n)
        return latent.replace(deter=latent.deter + jax.random.normal(key, latent.deter.shape))

    return model, params, roots, None, None


def _tdmpc():
    cfg = wm.TDMPCConfig(latent_dim=16, mlp_dim=16, enc_dim=16, num_q=2, num_bins=21)
    model = wm.make_tdmpc_model(cfg, 5, A)
    params = model.init(jax.random.key(0))

    def roots(key, n):
        return model.encode(params, jax.random.normal(key, (n, 5)))

    value = lambda p, z, k: model.q(p, z, model.pi(p, z, k)[0], k, "avg")  # noqa: E731
    prior = lambda p, z, k: model.pi(p, z, k)[0]  # noqa: E731
    return model, params, roots, value, prior


MODELS = {"rssm": _rssm, "tdmpc": _tdmpc}


@pytest.fixture(scope="module", params=list(MODELS))
def built(request):
    return request.param, MODELS[request.param]()


@pytest.mark.parametrize("planner", ["cem", "mppi"])
def test_plans_through_model_step_fn_under_jit_without_recompiling(built, planner, count_compiles):
    name, (model, params, roots, value, prior) = built
    plan_fn = getattr(wm, planner)
    extra = {}
    if value is not None:  # TD-MPC2: its value and policy prior, lifted to (latent, alive)
        extra = dict(num_pi_trajs=4)

    @jax.jit
    def plan(params, latents, key):
        def one(latent, key):
            kwargs = dict(extra)
            if value is not None:
                kwargs["value_fn"] = wm.model_value_fn(partial(value, params))
                kwargs["prior_fn"] = wm.model_prior_fn(partial(prior, params))
            step_fn = wm.model_step_fn(model, params)
            return plan_fn(key, wm.model_root(latent), step_fn, **PLAN, **kwargs)

        return jax.vmap(one)(latents, jax.random.split(key, 2))

    out = plan(params, roots(jax.random.key(1), 2), jax.random.key(2))
    assert out.action.shape == (2, A) and out.actions.shape == (2, H, A)
    assert out.mean.shape == (2, H, A) and out.std.shape == (2, H, A) and out.value.shape == (2,)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out)), name
    assert np.all(np.abs(out.actions) <= 1.0)
    moved = jax.tree.map(lambda x: x + 0.01, params)
    with count_compiles() as events:
        other = plan(moved, roots(jax.random.key(3), 2), jax.random.key(4))
        jax.block_until_ready(other)
    assert events == []
    assert not np.allclose(other.actions, out.actions)


def test_tdmpc_step_fn_is_the_hand_written_one():
    """What `agents.tdmpc2` wrote by hand before: reward of (z, a) weighted by alive, then alive
    times `1 - termination(z')`."""
    model, params, roots, _, _ = _tdmpc()
    z = roots(jax.random.key(1), 1)[0]
    action = jnp.array([0.3, -0.7])
    alive = jnp.float32(0.8)
    (z2, alive2), reward = wm.model_step_fn(model, params)((z, alive), action, jax.random.key(0))
    ref_z2 = model.next(params, z, action)
    np.testing.assert_array_equal(z2, ref_z2)
    np.testing.assert_allclose(reward, alive * model.reward(params, z, action), rtol=1e-6)
    np.testing.assert_allclose(alive2, alive * (1 - model.termination(params, ref_z2)), rtol=1e-6)
