"""Dreamer agent: acting, the pieces of its update against references, and training in the loop."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.actor_critic import make_actor_critic
from agents.config import TrainConfig
from agents.dreamer import DreamerConfig, make_dreamer
from agents.envs import ENV_NAMES, make_env
from agents.run import build
from agents.tdmpc2 import TDMPC2Config, make_tdmpc2
from agents.train import make_train
from agents.types import Context, EnvSpec, Transition
from worldmodels import dists
from worldmodels.nets import norm_mlp
from worldmodels.returns import lambda_returns, return_scale, update_retnorm
from worldmodels.rssm import RSSMState, make_rssm
from worldmodels.sequence import imagine

SPEC = EnvSpec(
    name="toy", obs_size=4, action_size=2, num_envs=3, episode_length=50, action_repeat=1
)
CFG = DreamerConfig.tiny()


@pytest.fixture(scope="module")
def agents():
    # The dynamics-gradient agent also covers training without replay context.
    dyn = dataclasses.replace(CFG, actor_grad="dynamics", replay_context=False)
    return {grad: make_dreamer(c, SPEC) for grad, c in (("reinforce", CFG), ("dynamics", dyn))}


@pytest.fixture(scope="module")
def jitted(agents):
    agent = agents["reinforce"]
    return {
        "act": jax.jit(agent.act, static_argnames="eval"),
        "update": {g: jax.jit(a.update) for g, a in agents.items()},
        "state": agent.init(jax.random.key(0)),
    }


def _batch(key, t=CFG.batch_length, b=CFG.batch_size):
    k = jax.random.split(key, 6)
    done = jax.random.uniform(k[3], (t, b)) < 0.1
    m = CFG.model
    stoch = jax.nn.one_hot(jax.random.randint(k[4], (t, b, m.groups), 0, m.classes), m.classes)
    latent = RSSMState(deter=jnp.tanh(jax.random.normal(k[5], (t, b, m.deter))), stoch=stoch)
    return Transition(
        obs=jax.random.normal(k[0], (t, b, 4)),
        action=jnp.tanh(jax.random.normal(k[1], (t, b, 2))),
        reward=jnp.ones((t, b)),
        next_obs=jax.random.normal(k[2], (t, b, 4)),
        terminated=done,
        done=done,
        context=Context(value=latent, first=jnp.zeros((t, b), bool)),
    )


def _delta(a, b):
    return float(
        sum(jnp.abs(x - y).sum() for x, y in zip(*map(jax.tree.leaves, (a, b)), strict=True))
    )


def test_act_shapes_bounds_and_eval_mode(agents, jitted):
    state, act = jitted["state"], jitted["act"]
    carry = agents["reinforce"].initial_carry(state, 3)
    obs = 3.0 * jax.random.normal(jax.random.key(1), (3, 4))
    carry2, action, _ = act(state, carry, obs, jnp.ones(3, bool), jax.random.key(2))
    assert action.shape == (3, 2) and np.all(np.abs(action) <= 1)
    assert jax.tree.structure(carry2) == jax.tree.structure(carry)
    assert carry2.latent.deter.shape == (3, CFG.model.deter)
    np.testing.assert_array_equal(carry2.action, action)
    # eval acts with the actor's mode: the action depends on the key only through the posterior
    _, a1, _ = act(state, carry, obs, jnp.ones(3, bool), jax.random.key(3), eval=True)
    _, a2, _ = act(state, carry, obs, jnp.ones(3, bool), jax.random.key(3), eval=True)
    np.testing.assert_array_equal(a1, a2)


def test_is_first_resets_the_carry(agents, jitted):
    state, act = jitted["state"], jitted["act"]
    fresh = agents["reinforce"].initial_carry(state, 3)
    obs = jax.random.normal(jax.random.key(1), (3, 4))
    carry = fresh
    for i in range(3):  # drift the carry away from the initial state
        carry, _, _ = act(state, carry, obs + i, jnp.zeros(3, bool), jax.random.key(i))
    first = jnp.array([True, False, True])
    key = jax.random.key(9)
    from_carry, _, _ = act(state, carry, obs, first, key)
    from_fresh, _, _ = act(state, fresh, obs, jnp.ones(3, bool), key)
    reset = lambda carry: jax.tree.map(lambda x: x[first], carry)
    chex.assert_trees_all_close(reset(from_carry), reset(from_fresh), rtol=1e-5, atol=1e-6)
    assert not np.allclose(from_carry.latent.deter[1], from_fresh.latent.deter[1])


def test_critic_target_is_two_hot_of_the_return():
    bins = dict(num_bins=CFG.model.num_bins, vmin=CFG.model.vmin, vmax=CFG.model.vmax)
    target = jnp.array([-3.0, 0.0, 0.7, 25.0])
    encoded = dists.two_hot(target, **bins)
    np.testing.assert_allclose(encoded.sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.count_nonzero(np.asarray(encoded), axis=-1) <= 2)
    np.testing.assert_allclose(
        dists.two_hot_inv(jnp.log(encoded + 1e-30), **bins), target, rtol=1e-4
    )
    # the cross-entropy the critic minimises pulls its softmax exactly onto that encoding
    logits = jnp.zeros((4, bins["num_bins"]))
    grad = jax.grad(lambda z: dists.soft_ce(z, target, **bins).sum())(logits)
    np.testing.assert_allclose(grad, jax.nn.softmax(logits) - encoded, atol=1e-6)


@pytest.mark.parametrize("grad", ["reinforce", "dynamics"])
def test_update_moves_everything_with_finite_metrics(jitted, grad):
    state = jitted["state"]
    out = jitted["update"][grad](state, _batch(jax.random.key(5)), jax.random.key(6))
    new, metrics = out.state, out.metrics
    if grad == "reinforce":  # with replay context: the posteriors to write back, [T, B]
        assert out.context.deter.shape == (CFG.batch_length, CFG.batch_size, CFG.model.deter)
    else:
        assert out.context is None
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert float(metrics["grad_norm/actor"]) > 0
    assert int(new.updates) == int(state.updates) + 1
    for name in ("model", "actor", "critic"):
        assert _delta(new.params[name], state.params[name]) > 0, name
    assert np.all(np.isfinite(np.asarray(new.retnorm)))
    # the slow critic moves towards the updated critic by exactly its EMA rate
    ema = lambda old, fast: old + CFG.slow_rate * (fast - old)
    expected = jax.tree.map(ema, state.slow_critic, new.params["critic"])
    chex.assert_trees_all_close(new.slow_critic, expected, rtol=1e-7, atol=1e-6)


def _reference_actor_critic(state, new, batch, post, key):
    """DreamerV3's actor and critic losses and gradients, each through its own forward passes."""
    sg, m = jax.lax.stop_gradient, CFG.model
    model = make_rssm(m, SPEC.obs_shape, SPEC.action_size)
    policy = make_actor_critic(CFG, model, SPEC.action_size).policy
    critic = norm_mlp(
        model.feat_size, (CFG.units,) * CFG.layers, m.num_bins, norm=m.norm, act=m.act
    )
    bins = dict(num_bins=m.num_bins, vmin=m.vmin, vmax=m.vmax)
    value = lambda params, s: dists.two_hot_inv(critic.apply(params, model.feat(s)), **bins)
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    start, cont0 = jax.tree.map(flat, post), flat(1.0 - batch.terminated.astype(jnp.float32))
    k_imag = jax.random.split(key)[1]
    critic_params, disc = state.params["critic"], CFG.discount

    def policy_fn(actor_params):
        def sample(latent, k):
            mean, std = policy(actor_params, sg(latent))
            return sg(mean + std * jax.random.normal(k, mean.shape))

        return sample

    def actor_loss(actor_params):
        latents, actions, outs = imagine(
            model, new.params["model"], start, policy_fn(actor_params), CFG.horizon, k_imag
        )
        states = jax.tree.map(lambda s, x: jnp.concatenate([s[None], x]), start, latents)
        weight = sg(jnp.cumprod(disc * jnp.concatenate([cont0[None], outs.cont]), 0) / disc)
        values = value(sg(critic_params), states)
        returns = lambda_returns(outs.reward, outs.cont, values, disc, CFG.lam)
        retnorm = update_retnorm(
            state.retnorm, returns, CFG.retnorm_rate, CFG.retnorm_low, CFG.retnorm_high
        )
        scale = return_scale(retnorm, CFG.retnorm_limit)
        mean, std = policy(actor_params, sg(jax.tree.map(lambda x: x[:-1], states)))
        half_log_2pi = 0.5 * np.log(2 * np.pi)
        logp = jnp.sum(-0.5 * ((actions - mean) / std) ** 2 - jnp.log(std) - half_log_2pi, -1)
        entropy = jnp.sum(0.5 + half_log_2pi + jnp.log(std), -1)
        objective = logp * sg((returns - values[:-1]) / scale) + CFG.entropy * entropy
        return -jnp.mean(weight[:-1] * objective), (states, weight, sg(returns), retnorm)

    def critic_loss(params, states, weight, returns):
        states = jax.tree.map(lambda x: x[:-1], states)
        logits = critic.apply(params, model.feat(states))
        slow = value(state.slow_critic, states)
        ce = dists.soft_ce(logits, returns, **bins) + CFG.slow_reg * dists.soft_ce(
            logits, slow, **bins
        )
        return jnp.mean(weight[:-1] * ce)

    (a_loss, (states, weight, returns, retnorm)), a_grad = jax.value_and_grad(
        actor_loss, has_aux=True
    )(state.params["actor"])
    c_loss, c_grad = jax.value_and_grad(critic_loss)(critic_params, states, weight, returns)
    norm = lambda tree: jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))
    return {
        "loss/actor": a_loss,
        "loss/critic": c_loss,
        "grad_norm/actor": norm(a_grad),
        "grad_norm/critic": norm(c_grad),
        "retnorm": retnorm,
    }


def test_reinforce_update_equals_the_direct_actor_and_critic_losses(jitted):
    # The update runs the REINFORCE imagination outside `grad` and takes the critic's values and
    # its loss from one forward pass (`jax.vjp`); DreamerV3 differentiates each loss through its
    # own passes. Same keys, so losses, gradient norms and the return scale must agree.
    state = jitted["state"]
    wiggle = lambda tree, phase: jax.tree.map(
        lambda x: x + 0.3 * jnp.sin(phase + jnp.arange(x.size).reshape(x.shape)), tree
    )  # a critic and slow critic that predict non-zero, different values
    params = dict(state.params, critic=wiggle(state.params["critic"], 0.0))
    state = state.replace(params=params, slow_critic=wiggle(state.slow_critic, 1.0))
    batch, key = _batch(jax.random.key(5)), jax.random.key(6)
    new, metrics, post = jitted["update"]["reinforce"](state, batch, key)
    ref = jax.jit(_reference_actor_critic)(state, new, batch, post, key)
    assert float(ref["grad_norm/critic"]) > 0 and float(ref["grad_norm/actor"]) > 0
    for name in ("loss/actor", "loss/critic", "grad_norm/actor", "grad_norm/critic"):
        np.testing.assert_allclose(metrics[name], ref[name], rtol=2e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(new.retnorm, ref["retnorm"], rtol=1e-5, atol=1e-6)


def test_no_recompile_on_second_call(agents, jitted, count_compiles):
    agent = agents["reinforce"]
    act, update = jax.jit(agent.act, static_argnames="eval"), jax.jit(agent.update)
    state = jitted["state"]
    carry = agent.initial_carry(state, 3)

    def step(i, state, carry):
        obs = jax.random.normal(jax.random.key(i), (3, 4))
        carry, _, _ = act(state, carry, obs, jnp.zeros(3, bool), jax.random.key(i))
        state = update(state, _batch(jax.random.key(i)), jax.random.key(i))[0]
        return jax.block_until_ready((state, carry))

    state, carry = step(0, state, carry)
    with count_compiles() as events:
        for i in range(1, 3):
            state, carry = step(i, state, carry)
    assert events == []


@pytest.mark.parametrize(
    "field,value",
    [
        ("horizon", 0),
        ("batch_length", 0),
        ("batch_size", 0),
        ("lam", 1.5),
        ("discount_horizon", 0.5),
        ("slow_rate", 0.0),
        ("retnorm_rate", 2.0),
        ("entropy", -1.0),
        ("actor_lr", 0.0),
        ("min_std", 0.0),
        ("max_std", 0.01),
        ("actor_grad", "sideways"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DreamerConfig(**{field: value})


def test_presets_data_spec_and_replay_validation():
    assert DreamerConfig().discount == pytest.approx(1 - 1 / 333)
    data = make_dreamer(DreamerConfig(), SPEC).data
    assert (data.seq_len, data.batch_size, data.cross_episodes) == (64, 16, True)
    assert make_dreamer(DreamerConfig.cpu(), SPEC).data.updates_per_step == 1
    # the replay must hold one Dreamer sequence (+1) per env; TD-MPC2's horizon 3 would pass
    env, spec = make_env("inverted_pendulum", num_envs=4)
    small = TrainConfig(agent=DreamerConfig.cpu(), num_envs=4, replay_capacity=4 * 10)
    with pytest.raises(ValueError, match="replay_capacity"):
        make_train(small, env, spec, make_dreamer(small.agent, spec))
    make_train(small, env, spec, make_tdmpc2(TDMPC2Config.tiny(), spec))


TINY = TrainConfig(
    agent=CFG,
    num_envs=2,
    action_repeat=2,
    episode_length=20,
    seed_steps=40,
    chunk_steps=5,
    replay_capacity=200,
    eval_episodes=1,
)


# All marked slow (1-3 minutes each: `pytest -m slow tests/agents/test_dreamer.py`); the default
# run trains a chunk from pixels below, the same train loop and agent with a CNN in front.
@pytest.mark.slow
@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_trains_one_chunk(name):
    cfg = dataclasses.replace(TINY, env=name)
    spec, _, trainer = build(cfg)
    state = trainer.init(jax.random.key(0))
    state, _ = trainer.seed_chunk(state)
    state, metrics = trainer.train_chunk(state)
    result = trainer.evaluate(state.agent, jax.random.key(1))
    for k in ("loss/model", "loss/actor", "loss/critic"):
        assert np.isfinite(float(metrics[k])), k
    assert np.isfinite(float(result["eval/return"]))
    assert 0 < float(result["eval/length"]) <= cfg.episode_length
    assert state.carry.action.shape == (cfg.num_envs, spec.action_size)
    assert int(state.agent.updates) == cfg.chunk_steps


def test_pixels_train_one_chunk_with_collection_in_the_scan(count_compiles):
    """`wm train dreamer --obs pixels`: frames rendered on device, CNN world model."""
    cfg = dataclasses.replace(TINY, obs="pixels", image_size=16, replay_capacity=100)
    spec, _, trainer = build(cfg)
    assert spec.image_shape == (16, 16, 3)
    state = trainer.init(jax.random.key(0))
    assert state.replay.data.obs.shape[2:] == (16, 16, 3)
    assert state.replay.data.obs.dtype == jnp.uint8
    state, _ = trainer.seed_chunk(state)
    state, metrics = trainer.train_chunk(state)
    for k in ("loss/model", "loss/decoder", "loss/actor", "loss/critic"):
        assert np.isfinite(float(metrics[k])), k
    assert int(state.agent.updates) == cfg.chunk_steps
    assert state.carry.action.shape == (cfg.num_envs, spec.action_size)
    assert "convs" in state.agent.params["model"]["encoder"]
    # Replay context rides in replay: acting latents of the trained steps (first=False there).
    first = np.asarray(state.replay.data.context.first)
    assert first[: int(state.replay.rows)].mean() < 1.0
    result = trainer.evaluate(state.agent, jax.random.key(1))
    assert np.isfinite(float(result["eval/return"]))
    with count_compiles() as events:
        state, _ = trainer.train_chunk(state)
    assert events == []
