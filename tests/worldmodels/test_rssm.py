import dataclasses
import re
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from worldmodels import dists, rssm
from worldmodels.nets import block_gru
from worldmodels.rssm import RSSMConfig, kl_balance, make_rssm
from worldmodels.sequence import imagine, observe_sequence
from worldmodels.types import StepOutput, WorldModel

# Tiny widths and one layer per MLP: XLA compile time on CPU grows with the number of layers.
CFG = RSSMConfig(
    deter=16,
    hidden=8,
    groups=3,
    classes=4,
    blocks=4,
    units=8,
    num_bins=21,
    enc_layers=1,
    dec_layers=1,
    inv_layers=1,
    img_layers=1,
)
INV_CFG = dataclasses.replace(CFG, objective="inverse_dynamics", absolute=True)
OBS, ACT, T, B = 5, 2, 6, 4


class Batch(NamedTuple):  # the fields of `worldmodels.Transition` the loss reads
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    done: jax.Array


@pytest.fixture(scope="module")
def model():
    return make_rssm(CFG, OBS, ACT)


@pytest.fixture(scope="module")
def jitted(model):
    """Each model function jitted once for the module (eager dispatch would dominate runtime)."""
    return {
        "observe": jax.jit(model.observe),
        "imagine": jax.jit(model.imagine),
        # ((loss, (metrics, post)), grads): one program for every loss test.
        "grad": jax.jit(jax.value_and_grad(model.model_loss, has_aux=True)),
    }


@pytest.fixture(scope="module")
def params(model):
    p = jax.jit(model.init)(jax.random.key(0))
    # A non-zero learned initial state, so resets are distinguishable from zeros.
    return dict(p, initial=jnp.linspace(-1.0, 1.0, CFG.deter))


def _batch(key):
    """Sequences of a linear system (obs' = 0.9 obs + [a, 0..]; reward = obs'[0]), one reset."""
    k = jax.random.split(key, 2)
    actions = jnp.tanh(jax.random.normal(k[1], (T, B, ACT)))

    def step(o, a):
        o2 = 0.9 * o + jnp.pad(a, ((0, 0), (0, OBS - ACT)))
        return o2, (o, o2)

    _, (obs, next_obs) = jax.lax.scan(step, jax.random.normal(k[0], (B, OBS)), actions)
    terminated = jnp.zeros((T, B), bool).at[2, 0].set(True)
    done = terminated.at[4, 1].set(True)  # row 1 is truncated by a time limit
    return Batch(obs, actions, next_obs[..., 0], next_obs, terminated, done)


def _allclose(a, b, **kw):
    chex.assert_trees_all_close(a, b, **{"rtol": 1e-5, "atol": 1e-5, **kw})


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(classes=1), "classes"),
        (dict(groups=0), "groups"),
        (dict(deter=30, blocks=4), "deter"),
        (dict(unimix=1.0), "unimix"),
        (dict(free_nats=-1.0), "free_nats"),
        (dict(vmin=1.0, vmax=1.0), "vmin"),
        (dict(norm="batch"), "norm"),
        (dict(objective="pixels"), "objective"),
        (dict(objective="inverse_dynamics"), "absolute"),
        (dict(enc_layers=0), "enc_layers"),
        (dict(depth=0), "depth"),
        (dict(kernel=0), "kernel"),
        (dict(minres=0), "minres"),
        (dict(mults=()), "mults"),
        (dict(mults=[2, 3]), "mults"),
        (dict(mults=(2, 0)), "mults"),
    ],
)
def test_bad_config_is_one_clear_error(bad, field):
    with pytest.raises(ValueError, match=rf"RSSMConfig\.{field}"):
        RSSMConfig(**bad)


def test_presets_match_dreamerv3():
    expected = {"size1m": (512, 64, 4, 64, 4), "size12m": (2048, 256, 16, 256, 16)}
    expected |= {"size25m": (3072, 384, 24, 384, 24), "size200m": (8192, 1024, 64, 1024, 64)}
    for name, sizes in expected.items():
        cfg = getattr(RSSMConfig, name)()
        assert (cfg.deter, cfg.hidden, cfg.classes, cfg.units, cfg.depth) == sizes
        assert (cfg.groups, cfg.blocks) == (32, 8)
        assert (cfg.mults, cfg.kernel, cfg.minres) == ((2, 3, 4, 4), 5, 4)
    assert RSSMConfig() == RSSMConfig.size1m()
    assert RSSMConfig.size12m(unimix=0.0).unimix == 0.0


def test_shapes_dtypes_under_jit(model, params, jitted):
    batch, key = _batch(jax.random.key(1)), jax.random.key(2)
    latent = jax.jit(model.initial, static_argnums=1)(params, B)
    assert latent.deter.shape == (B, CFG.deter) and latent.stoch.shape == (B, 3, 4)
    obs, act, first = batch.obs[0], batch.action[0], jnp.ones(B, bool)
    latent, out = jitted["observe"](params, latent, act, obs, first, key)
    assert out.extras["logits"].shape == (B, 3, 4)
    nxt, out = jitted["imagine"](params, latent, act, key)
    assert model.feat(nxt).shape == (B, model.feat_size) and model.feat_size == 16 + 12
    assert out.reward.shape == (B,) and out.cont.shape == (B,)
    assert jax.eval_shape(model.decode, params, nxt).shape == (B, OBS)
    (loss, (metrics, post)), _ = jitted["grad"](params, batch, key)
    assert loss.shape == () and post.deter.shape == (T, B, CFG.deter)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((loss, metrics, post)))
    assert {"loss/dyn", "loss/rep", "loss/reward", "loss/cont", "loss/decoder"} <= set(metrics)
    with pytest.raises(ValueError, match=r"action must have shape \[\.\.\., 2\]"):
        model.imagine(params, latent, jnp.zeros((B, 3)), key)
    with pytest.raises(ValueError, match="inverse_dynamics"):
        model.inverse(params, latent.stoch, latent.stoch)


def test_model_loss_gradient_equals_the_plain_scan(model, params, jitted, monkeypatch, key):
    # The posterior loop takes the weights' gradient after the loop (`hoisted_scan`); with the
    # plain `lax.scan` autodiff instead, every gradient must be the same.
    batch = _batch(key)
    start = model.initial(params, B)  # replay context: a latent to continue from, two resets
    start = start.replace(deter=start.deter + jax.random.normal(key, start.deter.shape))
    first = jnp.array([True, False, False, True])
    args = (params, batch, jax.random.key(3), start, first)
    (loss, _), grads = jitted["grad"](*args)
    plain = lambda step, p, c, xs: jax.lax.scan(lambda c, x: step(p, c, x), c, xs)
    monkeypatch.setattr(rssm, "hoisted_scan", plain)
    reference = make_rssm(CFG, OBS, ACT)  # built after the patch: traces the plain scan
    (ref_loss, _), ref = jax.jit(jax.value_and_grad(reference.model_loss, has_aux=True))(*args)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for name in ("core", "post", "encoder", "initial"):
        _allclose(grads[name], ref[name], rtol=1e-4, atol=1e-6)
    assert float(optax.tree.norm(grads["core"])) > 0


def test_observe_sequence_equals_python_loop(model, params, jitted):
    batch, key = _batch(jax.random.key(3)), jax.random.key(4)
    first = jnp.zeros((T, B), bool).at[0].set(True).at[3, 1].set(True)
    start = model.initial(params, B)
    latents, outs = jax.jit(observe_sequence, static_argnums=0)(
        model, params, start, batch.action, batch.obs, first, key
    )
    latent, ref = start, []
    for t, k in enumerate(jax.random.split(key, T)):
        latent, _ = jitted["observe"](params, latent, batch.action[t], batch.obs[t], first[t], k)
        ref.append(latent)
    _allclose(latents, jax.tree.map(lambda *xs: jnp.stack(xs), *ref))
    assert outs.extras["logits"].shape == (T, B, 3, 4)
    assert outs.reward.shape == (T, B) and outs.cont.shape == (T, B)


def test_is_first_resets_to_learned_initial_state(model, params, jitted, key):
    init = model.initial(params, B)
    np.testing.assert_allclose(init.deter[0], jnp.tanh(params["initial"]), rtol=1e-6)
    k = jax.random.split(key, 3)
    junk = rssm.RSSMState(
        jax.random.normal(k[0], (B, 16)), jax.nn.one_hot(jnp.ones((B, 3), int), 4)
    )
    act, obs = jax.random.normal(k[1], (B, ACT)), jnp.ones((B, OBS))
    first = jnp.array([True, False, True, False])
    observe, never = jitted["observe"], jnp.zeros(B, bool)
    got, _ = observe(params, junk, act, obs, first, k[2])
    fresh, _ = observe(params, init, jnp.zeros_like(act), obs, never, k[2])
    kept, _ = observe(params, junk, act, obs, never, k[2])
    _allclose(jax.tree.map(lambda x: x[first], got), jax.tree.map(lambda x: x[first], fresh))
    _allclose(jax.tree.map(lambda x: x[~first], got), jax.tree.map(lambda x: x[~first], kept))


def test_loss_forgets_everything_before_a_done(params, jitted, key):
    batch = _batch(jax.random.key(5))  # row 0 has done at t=2: steps 3.. start a new episode
    changed = batch._replace(
        obs=batch.obs.at[:3, 0].add(3.0), action=batch.action.at[:3, 0].multiply(-1.0)
    )
    (_, (_, post)), _ = jitted["grad"](params, batch, key)
    (_, (_, post2)), _ = jitted["grad"](params, changed, key)
    _allclose(jax.tree.map(lambda x: x[3:, 0], post), jax.tree.map(lambda x: x[3:, 0], post2))
    assert not np.allclose(post.deter[:3, 0], post2.deter[:3, 0])


def test_unimix_mixes_exactly_one_percent_uniform(key):
    logits = jax.random.normal(key, (5, 4)) * 3.0
    probs = jnp.exp(dists.unimix_logits(logits, 0.01))
    np.testing.assert_allclose(probs, 0.99 * jax.nn.softmax(logits) + 0.01 / 4, rtol=1e-6)
    extreme = jnp.exp(dists.unimix_logits(jnp.array([1e4, 0.0, 0.0, 0.0]), 0.01))
    np.testing.assert_allclose(extreme, [0.99 + 0.0025, 0.0025, 0.0025, 0.0025], rtol=1e-5)


def test_straight_through_forward_is_one_hot_backward_is_probs(key):
    logits = dists.unimix_logits(jax.random.normal(key, (3, 5)), 0.01)
    sample = dists.categorical_sample_st(logits, jax.random.key(1))
    assert set(np.unique(np.asarray(sample))) <= {0.0, 1.0}
    np.testing.assert_array_equal(sample.sum(-1), 1.0)
    w = jax.random.normal(jax.random.key(2), (3, 5))
    grad_st = jax.grad(lambda x: jnp.sum(w * dists.categorical_sample_st(x, jax.random.key(1))))
    grad_probs = jax.grad(lambda x: jnp.sum(w * jax.nn.softmax(x)))
    np.testing.assert_allclose(grad_st(logits), grad_probs(logits), rtol=1e-5, atol=1e-7)
    mode = dists.categorical_mode_st(logits)
    np.testing.assert_array_equal(mode, jax.nn.one_hot(jnp.argmax(logits, -1), 5))
    many = dists.categorical_sample_st(jnp.broadcast_to(logits[0], (4000, 5)), key)
    np.testing.assert_allclose(many.mean(0), jnp.exp(logits[0]), atol=0.03)


def test_unimix_sampling_equals_sampling_the_unimix_logits(key):
    raw = jax.random.normal(key, (64, 4)) * 3.0
    fused = dists.categorical_sample_st(raw, jax.random.key(1), 0.01)
    direct = dists.categorical_sample_st(dists.unimix_logits(raw, 0.01), jax.random.key(1))
    np.testing.assert_array_equal(fused, direct)
    u = jax.random.uniform(jax.random.key(1), (64, 1))  # the draw categorical_sample_st makes
    np.testing.assert_array_equal(dists.categorical_sample_st_from_uniform(raw, u, 0.01), fused)
    edges = dists.categorical_sample_st_from_uniform(raw[:2], jnp.array([[0.0], [1.0 - 1e-7]]))
    np.testing.assert_array_equal(jnp.argmax(edges, -1), [0, 3])  # u near 0 and 1: first, last
    np.testing.assert_allclose(
        dists.unimix_probs(raw, 0.01), jnp.exp(dists.unimix_logits(raw, 0.01)), rtol=1e-5
    )
    w = jax.random.normal(jax.random.key(2), (64, 4))
    g_fused = jax.grad(
        lambda x: jnp.sum(w * dists.categorical_sample_st(x, jax.random.key(1), 0.01))
    )
    g_probs = jax.grad(lambda x: jnp.sum(w * jnp.exp(dists.unimix_logits(x, 0.01))))
    np.testing.assert_allclose(g_fused(raw), g_probs(raw), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="unimix"):
        dists.categorical_sample_st(raw, key, 1.0)


def test_kl_balance_and_free_nats_by_hand():
    post = jnp.array([[[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]]])  # [1, groups=2, classes=3]
    prior = jnp.array([[[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]]])
    mix = lambda x: 0.99 * np.exp(x) / np.exp(x).sum(-1, keepdims=True) + 0.01 / 3
    p, q = mix(np.asarray(post)), mix(np.asarray(prior))
    kl = float(np.sum(p * (np.log(p) - np.log(q))))  # summed over groups and classes
    dyn, rep, dyn_raw, rep_raw = kl_balance(post, prior, 0.01, 0.0)
    np.testing.assert_allclose([dyn[0], rep[0], dyn_raw[0]], [kl, kl, kl], rtol=1e-5)
    dyn, rep, _, _ = kl_balance(post, prior, 0.01, kl + 0.5)  # under the free nats: clipped
    np.testing.assert_allclose([dyn[0], rep[0]], [kl + 0.5, kl + 0.5], rtol=1e-6)
    g_dyn = jax.grad(lambda a, b: kl_balance(a, b, 0.01, 0.0)[0].sum(), argnums=(0, 1))
    g_rep = jax.grad(lambda a, b: kl_balance(a, b, 0.01, 0.0)[1].sum(), argnums=(0, 1))
    g_free = jax.grad(lambda a, b: kl_balance(a, b, 0.01, kl + 0.5)[0].sum(), argnums=(0, 1))
    assert np.all(g_dyn(post, prior)[0] == 0) and np.any(g_dyn(post, prior)[1] != 0)
    assert np.any(g_rep(post, prior)[0] != 0) and np.all(g_rep(post, prior)[1] == 0)
    assert all(np.all(g == 0) for g in g_free(post, prior))
    logit = jnp.array([0.3, -2.0])
    np.testing.assert_allclose(
        dists.bernoulli_log_prob(logit, jnp.array([1.0, 0.0])),
        [np.log(1 / (1 + np.exp(-0.3))), np.log(1 - 1 / (1 + np.exp(2.0)))],
        rtol=1e-6,
    )


def test_two_hot_reward_layout_round_trips_and_head_starts_at_zero(model, params):
    x = jnp.array([-1e5, -3.0, 0.0, 0.5, 700.0, 1e6])
    enc = dists.two_hot(x, 255, -20.0, 20.0)
    decoded = dists.two_hot_inv(jnp.log(enc), 255, -20.0, 20.0)
    np.testing.assert_allclose(decoded, x, rtol=1e-4, atol=1e-5)
    assert np.allclose(model.reward(params, model.initial(params, 2)), 0.0, atol=1e-5)


def test_block_gru_matches_dense_block_diagonal_reference(key):
    deter, hidden, blocks = 8, 4, 2
    gru = block_gru(deter, (3,), hidden, blocks, norm="rms", layers=0)
    params = gru.init(key)
    x = jax.random.normal(jax.random.key(1), (5, deter + 3))
    p, xn = jax.tree.map(np.asarray, params), np.asarray(x)
    kernel = p["gates"]["kernel"]  # [blocks, in / blocks, 3 * deter / blocks]
    assert kernel.shape == (blocks, (deter + blocks * 2 * hidden) // blocks, 3 * deter // blocks)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    rms = lambda v: v / np.sqrt(np.mean(v**2, -1, keepdims=True) + 1e-4)  # nets' eps

    def embed(i, v):  # Linear -> RMSNorm -> SiLU
        v = (
            rms(v @ p["embeds"][i]["kernel"] + p["embeds"][i]["bias"])
            * p["embed_norms"][i]["scale"]
        )
        return v * sigmoid(v)

    emb = [embed("0", xn[:, :deter]), embed("1", xn[:, deter:])]
    h = xn[:, :deter]
    rows = [np.concatenate([h[:, 4 * g : 4 * g + 4], *emb], -1) for g in range(blocks)]
    gates = np.concatenate(rows, -1) @ scipy.linalg.block_diag(*kernel) + p["gates"]["bias"]
    r, c, u = (gates.reshape(5, blocks, 3, 4)[:, :, i].reshape(5, deter) for i in range(3))
    u = sigmoid(u - 1.0)
    ref = u * np.tanh(sigmoid(r) * c) + (1 - u) * h
    np.testing.assert_allclose(gru.apply(params, x), ref, rtol=1e-4, atol=1e-5)


def test_imagine_is_deterministic_per_key(model, params):
    start = model.initial(params, B)
    policy = lambda latent, k: jnp.tanh(jax.random.normal(k, (B, ACT)) + latent.deter[:, :ACT])
    run = jax.jit(imagine, static_argnums=(0, 3, 4))
    a = run(model, params, start, policy, 5, jax.random.key(1))
    b = run(model, params, start, policy, 5, jax.random.key(1))
    c = run(model, params, start, policy, 5, jax.random.key(2))
    _allclose(a, b, rtol=0, atol=0)
    assert a[0].deter.shape == (5, B, CFG.deter) and a[1].shape == (5, B, ACT)
    assert not np.allclose(a[1], c[1]) and not np.allclose(a[0].stoch, c[0].stoch)


def test_jit_equals_nojit(model, params, jitted):
    batch, key = _batch(jax.random.key(6)), jax.random.key(7)
    latent, act, obs = model.initial(params, B), batch.action[0], batch.obs[0]
    first = jnp.array([True, False, True, False])
    post = model.observe(params, latent, act, obs, first, key)
    _allclose(post, jitted["observe"](params, latent, act, obs, first, key))
    prior = model.imagine(params, post[0], act, key)
    _allclose(prior, jitted["imagine"](params, post[0], act, key))


def test_no_recompile_and_finite_gradients(params, jitted, count_compiles):
    batch, key = _batch(jax.random.key(6)), jax.random.key(7)
    (loss, _), grads = jitted["grad"](params, batch, key)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert np.any(grads["initial"] != 0)  # resets train the learned initial state
    batch2, key2 = _batch(jax.random.key(8)), jax.random.key(9)
    with count_compiles() as events:
        (other, _), _ = jitted["grad"](params, batch2, key2)
        other.block_until_ready()
    assert events == [] and other != loss


def _train(grad_fn, params, batch, key, steps=60):
    """Adam on one fixed batch; returns the loss and metrics before each step."""
    opt = optax.adam(3e-3)
    apply = jax.jit(
        lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*opt.update(g, s))
    )
    state, curve = opt.init(params), []
    for _ in range(steps):
        (loss, aux), grads = grad_fn(params, batch, key)
        metrics = aux[0] if isinstance(aux, tuple) else aux
        params, state = apply(params, state, grads)
        curve.append((float(loss), metrics))
    return curve


def test_decoder_variant_trains_on_a_fixed_batch(params, jitted):
    curve = _train(jitted["grad"], params, _batch(jax.random.key(10)), jax.random.key(11))
    (first, m0), (last, m1) = curve[0], curve[-1]
    assert last < 0.7 * first and m1["loss/decoder"] < 0.7 * m0["loss/decoder"]
    assert m1["loss/reward"] < m0["loss/reward"]


def test_inverse_dynamics_variant_trains_on_a_fixed_batch():
    model = make_rssm(INV_CFG, OBS, ACT)
    params = jax.jit(model.init)(jax.random.key(0))
    assert "decoder" not in params and "inverse" in params
    batch, key = _batch(jax.random.key(10)), jax.random.key(11)

    @jax.jit
    def grad_fn(params, batch, key):
        (loss, metrics), grads = jax.value_and_grad(model.loss, has_aux=True)(params, batch, key)
        head = jax.grad(lambda p: model.loss(p, batch, key)[1]["loss/inverse"])(params)
        return (loss, dict(metrics, head_to_post=head["post"]["out"]["kernel"])), grads

    curve = _train(grad_fn, params, batch, key)
    (first, m0), (last, m1) = curve[0], curve[-1]
    assert last < 0.7 * first and m1["loss/inverse"] < 0.7 * m0["loss/inverse"]
    assert m1["loss/reward"] < m0["loss/reward"]
    # The head that replaces reconstruction also shapes the representation (the posterior).
    assert np.any(m0["head_to_post"] != 0)


# --- Image observations: DreamerV3's CNN encoder and decoder ------------------------------------

IMG = (16, 16, 3)  # minres 4: two stride-2 stages, 8 and 12 channels, a 4 * 4 * 12 embedding
IMG_CFG = dataclasses.replace(CFG, depth=4, minres=4)


def _render(obs):
    """uint8 images `[..., 16, 16, 3]` of states `[..., OBS]`: a blob at `tanh(obs[:2])`."""
    lead = obs.shape[:-1]
    grid = jnp.linspace(-1.0, 1.0, IMG[0]).reshape((1,) * len(lead) + (1, IMG[1]))
    x = jnp.tanh(obs[..., 0]).reshape(*lead, 1, 1)
    y = jnp.tanh(obs[..., 1]).reshape(*lead, 1, 1)
    blob = jnp.exp(-((grid - x) ** 2 + (jnp.swapaxes(grid, -1, -2) - y) ** 2) / 0.2)
    colour = jax.nn.sigmoid(jnp.stack([obs[..., 2], -obs[..., 2], obs[..., 3]], axis=-1))
    return jnp.round(255.0 * blob[..., None] * colour[..., None, None, :]).astype(jnp.uint8)


def _image_batch(key):
    batch = _batch(key)
    return batch._replace(obs=_render(batch.obs), next_obs=_render(batch.next_obs))


@pytest.fixture(scope="module")
def image_model():
    return make_rssm(IMG_CFG, IMG, ACT)


@pytest.fixture(scope="module")
def image_params(image_model):
    return jax.jit(image_model.init)(jax.random.key(0))


@pytest.fixture(scope="module")
def image_grad(image_model):
    return jax.jit(jax.value_and_grad(image_model.model_loss, has_aux=True))


def test_image_encode_decode_shapes_with_leading_axes(image_model, image_params):
    p = image_params
    assert set(p["encoder"]) == {"convs", "norms"} and "convs" in p["decoder"]
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(p))  # orbax-friendly
    assert p["post"]["layers"]["0"]["kernel"].shape[0] == CFG.deter + 4 * 4 * 12
    obs = _image_batch(jax.random.key(1)).obs  # uint8 [T, B, 16, 16, 3]
    tokens = jax.jit(image_model.encode)(p, obs)
    assert tokens.shape == (T, B, 192) and tokens.dtype == jnp.float32
    np.testing.assert_allclose(image_model.encode(p, obs[0]), tokens[0], rtol=1e-5, atol=1e-5)
    latent = jax.tree.map(lambda x: jnp.broadcast_to(x, (T, *x.shape)), image_model.initial(p, B))
    recon = jax.jit(image_model.decode)(p, latent)
    assert recon.shape == (T, B, *IMG) and recon.dtype == jnp.float32
    assert np.all(np.abs(recon) < 0.5)  # sigmoid - 0.5: the range of x / 255 - 0.5
    with pytest.raises(ValueError, match=r"observation must have shape \[\.\.\., 16, 16, 3\]"):
        image_model.encode(p, obs[..., :8, :])
    with pytest.raises(ValueError, match="must be uint8"):
        image_model.encode(p, obs.astype(jnp.float32))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((60, 60, 3), r"\(60, 60, 3\): size 60 is not minres \* 2\*\*k.* 8, 16, 32, 64, 128"),
        ((64, 32, 3), r"\(64, 32, 3\): height 64 != width 32"),
        ((64, 64), r"\(H, W, C\).*\(64, 64\)"),
        ((4, 4, 3), "size 4 is not minres"),
        ((16, 16, 0), "channels must be >= 1"),
    ],
)
def test_bad_image_shape_is_one_clear_error_before_compiling(shape, message, count_compiles):
    with count_compiles() as events, pytest.raises(ValueError, match=message):
        make_rssm(IMG_CFG, shape, ACT)
    assert events == []
    with pytest.raises(ValueError, match="^make_rssm: obs_shape: "):
        make_rssm(IMG_CFG, shape, ACT)


def test_image_observe_under_jit_does_not_recompile(image_model, image_params, count_compiles):
    batch, keys = _image_batch(jax.random.key(12)), jax.random.split(jax.random.key(13), 2)
    observe, start = jax.jit(image_model.observe), image_model.initial(image_params, B)
    first = jnp.array([True, False, True, False])
    latent, out = observe(image_params, start, batch.action[0], batch.obs[0], first, keys[0])
    assert latent.deter.shape == (B, CFG.deter) and out.extras["logits"].shape == (B, 3, 4)
    args = (image_params, start, batch.action[1], batch.obs[1], ~first, keys[1])
    with count_compiles() as events:
        other, _ = observe(*args)
        other.deter.block_until_ready()
    assert events == [] and not np.allclose(other.deter, latent.deter)


def test_image_decoder_variant_trains_on_a_fixed_batch(image_params, image_grad, count_compiles):
    batch, key = _image_batch(jax.random.key(10)), jax.random.key(11)
    curve = _train(image_grad, image_params, batch, key, steps=30)
    (first, m0), (last, m1) = curve[0], curve[-1]
    assert last < 0.5 * first and m1["loss/decoder"] < 0.5 * m0["loss/decoder"]
    assert m1["loss/reward"] < m0["loss/reward"]
    batch2 = _image_batch(jax.random.key(14))
    with count_compiles() as events:  # new data, same shapes: the compiled loss is reused
        (loss, _), grads = image_grad(image_params, batch2, key)
        loss.block_until_ready()
    assert events == [] and np.isfinite(loss)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_image_inverse_dynamics_variant_runs():
    model = make_rssm(dataclasses.replace(INV_CFG, depth=4, minres=4), IMG, ACT)
    params = jax.jit(model.init)(jax.random.key(0))
    assert "decoder" not in params and "convs" in params["encoder"]
    assert params["post"]["layers"]["0"]["kernel"].shape[0] == 192  # absolute: tokens only
    grad_fn = jax.jit(jax.value_and_grad(model.loss, has_aux=True))
    (loss, metrics), grads = grad_fn(params, _image_batch(jax.random.key(10)), jax.random.key(11))
    assert np.isfinite(loss) and "loss/inverse" in metrics and "loss/decoder" not in metrics
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert np.any(grads["encoder"]["convs"]["0"]["kernel"] != 0)  # the CNN learns from it


def test_replay_context_start_continues_the_sequence(model, params, key):
    """`start` replaces the reset at t = 0 unless `start_first`; no gradient flows into it."""
    k_batch, k_loss = jax.random.split(key)
    batch = _batch(k_batch)
    loss = jax.jit(model.model_loss)
    plain, (_, post) = loss(params, batch, k_loss)
    start = jax.tree.map(lambda x: x[-1], post)  # some other latent per sequence
    first = jnp.ones((B,), bool)
    same, (_, post_same) = loss(params, batch, k_loss, start, first)
    np.testing.assert_allclose(same, plain, rtol=1e-6)
    _allclose(post_same, post)
    cont, (_, post_cont) = loss(params, batch, k_loss, start, first.at[0].set(False))
    assert not np.allclose(post_cont.deter[0, 0], post.deter[0, 0])  # continued from start
    np.testing.assert_allclose(post_cont.deter[0, 1:], post.deter[0, 1:], rtol=1e-6)
    grad = jax.grad(lambda s: model.model_loss(params, batch, k_loss, s, first.at[0].set(False))[0])
    assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grad(start)))
    with pytest.raises(ValueError, match="together"):
        model.model_loss(params, batch, k_loss, start)


@pytest.mark.parametrize(
    "field, change, message",
    [
        ("reward", lambda x: x[0], "[T, B] = (6, 4), got (4,)"),
        ("done", lambda x: x[..., None], "[T, B] = (6, 4), got (6, 4, 1)"),
        ("terminated", lambda x: x[:, :2], "[T, B] = (6, 4), got (6, 2)"),
        ("obs", lambda x: x[0], "[T, B, O] = [T, B, 5], got (4, 5)"),
        ("action", lambda x: x[..., :1], "[T, B, A] = (6, 4, 2), got (6, 4, 1)"),
        ("next_obs", lambda x: x[:3], "[T, B, O] = (6, 4, 5), got (3, 4, 5)"),
    ],
)
def test_loss_names_the_batch_field_of_the_wrong_shape(model, params, field, change, message):
    batch, key = _batch(jax.random.key(1)), jax.random.key(2)
    bad = batch._replace(**{field: change(getattr(batch, field))})
    for loss in (model.loss, model.model_loss):
        with pytest.raises(
            ValueError, match=re.escape(f"RSSM.model_loss: batch.{field} must have shape {message}")
        ):
            loss(params, bad, key)


def test_loss_of_a_dict_batch_names_the_container(model, params):
    batch = _batch(jax.random.key(1))
    container = "batch must be a Transition-like object with array fields obs, action, reward, "
    container += "next_obs, terminated, done read as attributes (e.g. worldmodels.Transition"
    with pytest.raises(TypeError, match=re.escape(container) + ".*got dict$"):
        model.loss(params, batch._asdict(), jax.random.key(2))


def test_image_loss_names_the_image_shape(image_model, image_params):
    batch, key = _image_batch(jax.random.key(1)), jax.random.key(2)
    message = "batch.obs must have shape [T, B, H, W, C] = [T, B, 16, 16, 3], got (6, 4, 16, 8, 3)"
    with pytest.raises(ValueError, match=re.escape(message)):
        image_model.loss(image_params, batch._replace(obs=batch.obs[..., :8, :]), key)
    message = (
        "batch.next_obs must have shape [T, B, H, W, C] = (6, 4, 16, 16, 3), got (6, 4, 16, 16)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        image_model.loss(image_params, batch._replace(next_obs=batch.next_obs[..., 0]), key)
    loss, _ = jax.eval_shape(image_model.loss, image_params, batch, key)  # the right shapes pass
    assert loss.shape == ()


def test_start_first_must_have_the_batch_shape(model, params):
    batch, key, start = _batch(jax.random.key(1)), jax.random.key(2), model.initial(params, B)
    with pytest.raises(ValueError, match=re.escape("start_first must have shape [B] = (4,), got")):
        model.model_loss(params, batch, key, start, jnp.ones((B + 1,), bool))
    loss, _ = jax.eval_shape(model.model_loss, params, batch, key, start, jnp.ones((B,), bool))
    assert loss.shape == ()


# --- The WorldModel contract ---------------------------------------------------------------------


def test_sizes_are_given_to_the_factory(model, params):
    assert model.world_model == WorldModel(*model[: len(WorldModel._fields)])
    assert model._fields[: len(WorldModel._fields)] == WorldModel._fields
    assert (model.obs_shape, model.action_size) == (OBS, ACT)
    assert make_rssm(CFG, (OBS,), ACT).obs_shape == OBS  # `EnvSpec.obs_shape` of vectors
    assert make_rssm(IMG_CFG, IMG, ACT).obs_shape == IMG
    for bad, message in [((0, ACT), "obs_shape must be an int >= 1"), ((OBS, 0), "action_size")]:
        with pytest.raises(ValueError, match="make_rssm: " + message):
            make_rssm(CFG, *bad)
    # The same parameters as the sizes would give: nothing is read back from them.
    assert params["core"]["embeds"]["2"]["kernel"].shape[0] == ACT
    assert params["encoder"]["layers"]["0"]["kernel"].shape[0] == OBS


def test_observe_and_imagine_return_step_outputs(model, params, jitted, key):
    batch, k = _batch(jax.random.key(1)), jax.random.split(key)
    first = jnp.array([True, False, True, False])
    latent, out = jitted["observe"](params, model.initial(params, B), batch.action[0],
                                    batch.obs[0], first, k[0])  # fmt: skip
    assert isinstance(out, StepOutput)
    assert out.reward.shape == (B,) and out.cont.shape == (B,)
    assert out.extras["logits"].shape == (B, 3, 4)
    _allclose((out.reward, out.cont), (model.reward(params, latent), model.cont(params, latent)))
    nxt, out = jitted["imagine"](params, latent, batch.action[1], k[1])
    assert isinstance(out, StepOutput) and set(out.extras) == {"logits"}
    assert out.reward.shape == (B,) and out.cont.shape == (B,)
    assert out.reward.dtype == jnp.float32 and out.cont.dtype == jnp.float32
    assert np.all((out.cont > 0) & (out.cont < 1))  # a probability
    _allclose((out.reward, out.cont), (model.reward(params, nxt), model.cont(params, nxt)))


def test_imagine_is_transition_then_predict(model, params, jitted, key):
    latent, action = model.initial(params, B), jnp.tanh(jax.random.normal(key, (B, ACT)))
    nxt, out = jitted["imagine"](params, latent, action, jax.random.key(3))
    split = jax.jit(model.transition)(params, latent, action, jax.random.key(3))
    _allclose(split, nxt, rtol=0, atol=0)
    _allclose(jax.jit(model.predict)(params, latent, action, split), out, rtol=1e-6, atol=1e-6)
    # `predict` takes any leading axes, e.g. `[H, B]` after a scan
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), nxt)
    two = model.predict(params, stacked, jnp.stack([action, action]), stacked)
    assert two.reward.shape == (2, B) and two.extras["logits"].shape == (2, B, 3, 4)


def test_sequence_imagine_equals_per_step_imagine_loop(model, params, jitted):
    """`sequence.imagine` runs the heads once after the scan; a Python loop of `model.imagine`
    on the same keys gives the same latents, actions and outputs."""
    start = jax.tree.map(lambda x: x[0], _posterior(model, params))
    policy = lambda latent, k: jnp.tanh(jax.random.normal(k, (B, ACT)) + latent.deter[:, :ACT])
    horizon, key = 5, jax.random.key(4)
    latents, actions, outs = jax.jit(imagine, static_argnums=(0, 3, 4))(
        model, params, start, policy, horizon, key
    )
    latent, ref = start, []
    for step_key in jax.random.split(key, horizon):
        policy_key, model_key = jax.random.split(step_key)
        action = policy(latent, policy_key)
        latent, out = jitted["imagine"](params, latent, action, model_key)
        ref.append((latent, action, out))
    ref_latents, ref_actions, ref_outs = jax.tree.map(lambda *xs: jnp.stack(xs), *ref)
    _allclose(latents, ref_latents, rtol=1e-6, atol=1e-6)
    _allclose(actions, ref_actions, rtol=1e-6, atol=1e-6)
    _allclose(outs, ref_outs, rtol=1e-5, atol=1e-6)
    assert outs.reward.shape == (horizon, B) and outs.cont.shape == (horizon, B)


def _posterior(model, params):
    """Posterior latents `[T, B]` of `_batch`: varied starts for imagination."""
    batch = _batch(jax.random.key(11))
    loss = jax.jit(model.model_loss)
    return loss(params, batch, jax.random.key(12))[1][1]
