"""TD-MPC2 agent: plans with MPPI in the latent space of `worldmodels.tdmpc`, learns from replay.

Example:
  >>> import jax
  >>> from agents.types import EnvSpec
  >>> spec = EnvSpec(name="toy", obs_size=4, action_size=1, num_envs=2, episode_length=100,
  ...                action_repeat=1)
  >>> agent = make_tdmpc2(TDMPC2Config.tiny(), spec)
  >>> state = agent.init(jax.random.key(0))
  >>> carry = agent.initial_carry(state, 2)
  >>> carry, action, _ = agent.act(state, carry, jax.numpy.zeros((2, 4)),
  ...                              jax.numpy.ones(2, bool), jax.random.key(1))
  >>> action.shape
  (2, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agents.types import Agent, DataSpec, EnvSpec, UpdateOutput
from worldmodels import planning
from worldmodels.checks import Range, check_config, check_order
from worldmodels.model_step import model_prior_fn, model_root, model_step_fn, model_value_fn
from worldmodels.planner_configs import MPPIConfig
from worldmodels.tdmpc import TDMPCConfig, make_tdmpc_model, same_episode


@dataclasses.dataclass(frozen=True, kw_only=True)
class TDMPC2Config:
    """TD-MPC2 agent hyper-parameters.

    `TDMPC2Config()` is the official 5M setting (model 512 wide, MPPI 512 samples x 6 iterations,
    batch 256, lr 3e-4, encoder lr x0.3, grad clip 20, tau 0.01, discount from the episode length).
    `TDMPC2Config.cpu()` is what `wm train` uses by default on a 2-core CPU; see its docstring.

    Attributes:
      model: the world model and its losses (`worldmodels.TDMPCConfig`).
      planner: MPPI's search (`worldmodels.MPPIConfig`), passed whole to
        `worldmodels.planning.mppi`; its horizon is also the replay sequence length.
      mpc: plan with MPPI; if false, act with the policy prior alone (faster, weaker).
      batch_size: replay sequences per update.
      updates_per_step: updates after each vectorised env step.
      discount: the TD discount; None (default): from the episode length, as below. The agent
        sets `model.discount` from it, so `model.discount` itself must be left at its default.
      lr: Adam learning rate.
      enc_lr_scale: the encoder's learning rate is `lr * enc_lr_scale`.
      grad_clip_norm: global-norm clip of the gradients.
      tau: EMA rate of the target Q-networks per update.
      discount_denom: discount heuristic: `(T / discount_denom - 1) / (T / discount_denom)` for
        episodes of `T` agent steps, clipped to `[discount_min, discount_max]`.
      discount_min: the heuristic's lowest discount.
      discount_max: the heuristic's highest discount.
      alive_discount_max: once the data have shown a failure and a varying reward (below), the
        discount is `1 - 1 / T` up to this (None: the heuristic on every task, as in the
        official code).

    The discount follows one rule on every task, measured from the data, never from the env's
    name. It starts as TD-MPC2's heuristic from the episode length (`discount_denom`,
    `discount_min`, `discount_max`; 0.99 for 500 agent steps). Once the replay batches have shown
    both (1) a *failure*, a step with `terminated` (an episode that ended before its time limit:
    a fall, or the NaN guard), and (2) a reward that is *not the same on every step* (over the
    steps that did not end an episode), the agent switches for good to discounting over the whole
    episode, `1 - 1 / episode_length` up to `alive_discount_max` (0.998 for 500 agent steps).
    Why both: where episodes can end early and the reward varies, the discount decides between
    surviving and scoring fast: at 0.99 a gait worth 1.4 per physics step that falls after 500
    physics steps is worth more than standing to the time limit, so the agent learns to fall; at
    0.998 surviving is worth more. Where every step pays the same (the pendulums' bonus alone),
    every discount already ranks policies by how long they survive, and the longer one only makes
    the value slower to learn. So hopper, walker2d, ant, humanoid and the double pendulum switch at
    the first update (a random policy falls in the seed phase); inverted_pendulum, halfcheetah and
    the DM Control tasks keep the heuristic, and a user's env gets whatever its data shows. The
    state is `TDMPC2State.failures_seen` and `reward_low`/`reward_high`; the discount in use is
    the `discount` metric. Before/after: `benchmarks/results/discount_rule_*.md`.

    Every float must be finite (`worldmodels.checks`); `lr`, `enc_lr_scale` (the encoder's lr is
    `lr * enc_lr_scale`), `grad_clip_norm` and `discount_denom` must be > 0; `tau`, `discount_min`,
    `discount_max`, `alive_discount_max` and `discount` in (0, 1] with
    `discount_min <= discount_max`; `model.discount` is the model's default (see `discount`).
    """

    name: ClassVar[str] = "tdmpc2"
    # glibc's default malloc (agents.hostmem): its one-arena tuning halved the train chunk at
    # `wm train` defaults (49.6 against 110 env steps/s, paired, benchmarks/ab_compile.py).
    tune_host_allocator: ClassVar[bool] = False

    model: TDMPCConfig = TDMPCConfig()
    planner: MPPIConfig = MPPIConfig(horizon=3)
    mpc: bool = True
    batch_size: int = 256
    updates_per_step: int = 4
    discount: float | None = None
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    tau: float = 0.01
    discount_denom: float = 5.0
    discount_min: float = 0.95
    discount_max: float = 0.995
    alive_discount_max: float | None = 0.998

    def __post_init__(self):
        positive = ("lr", "enc_lr_scale", "grad_clip_norm", "discount_denom")
        unit = ("tau", "discount_min", "discount_max")
        check_config(
            self,
            {"batch_size": Range(ge=1, integer=True), "updates_per_step": Range(ge=0, integer=True)}
            | {"discount": Range(gt=0, le=1, allow_none=True)}
            | {name: Range(gt=0) for name in positive}
            | {name: Range(gt=0, le=1) for name in unit}
            | {"alive_discount_max": Range(gt=0, le=1, allow_none=True)},
        )
        check_order(self, "discount_min", "discount_max", strict=False)
        if self.model.discount != TDMPCConfig().discount:
            raise ValueError(
                f"TDMPC2Config.model.discount ({self.model.discount}) is set by the agent: set "
                "TDMPC2Config.discount instead (None: from the episode length)"
            )

    @classmethod
    def cpu(cls) -> TDMPC2Config:
        """The `wm train` default, scaled down from the official 5M config for a 2-core CPU.

        Changed (official value in brackets) and why:
          * latent 64 [512], MLP 128 [512], encoder 128 [256], 2 Q-functions [5], batch 64 [256],
            MPPI 64 samples [512], 8 elites [64], 8 policy trajectories [24], 3 iterations [6]:
            a plan for 4 envs plus 4 updates must cost a few milliseconds, so that
            inverted_pendulum reaches 950 within ten minutes of 2-core CPU time.
          * lr 1e-3 [3e-4] and tau 0.05 [0.01]: that budget allows only a few thousand updates,
            and the value (about 200 at discount 0.99) must converge within them; with the
            official rates it was still rising linearly after 6k updates (eval stuck near 200),
            with these inverted_pendulum reaches 1000 after about 16k env steps.
        Unchanged: horizon 3, losses and their weights, bins, temperature, std range, discount.
        """
        return cls(
            model=TDMPCConfig(latent_dim=64, mlp_dim=128, enc_dim=128, num_q=2),
            planner=MPPIConfig(
                horizon=3, num_samples=64, num_elites=8, num_pi_trajs=8, iterations=3
            ),
            batch_size=64,
            lr=1e-3,
            tau=0.05,
        )

    @classmethod
    def tiny(cls) -> TDMPC2Config:
        """A very small config for tests."""
        return cls(
            model=TDMPCConfig(latent_dim=16, mlp_dim=32, enc_dim=32, num_q=2, num_bins=21),
            planner=MPPIConfig(
                horizon=3, num_samples=16, num_elites=4, num_pi_trajs=4, iterations=2
            ),
            batch_size=16,
        )


@struct.dataclass
class TDMPC2State:
    """Everything the agent learns or carries between updates."""

    params: dict
    target_q: dict
    model_opt: Any
    pi_opt: Any
    scale: jax.Array  # running 5th-95th percentile range of Q (TD-MPC2's RunningScale)
    updates: jax.Array  # int32 count of updates done
    failures_seen: jax.Array  # bool []: some batch held a failure (picks the discount)
    reward_low: jax.Array  # [] lowest reward seen on a step that did not end an episode
    reward_high: jax.Array  # [] highest one: the reward varies once they differ


BIG = float(jnp.finfo(jnp.float32).max)  # the reward range before any step is seen: empty


def episode_discount(cfg: TDMPC2Config, episode_length: int, failures: bool = False) -> float:
    """The discount for episodes of `episode_length` agent steps (see `TDMPC2Config`).

    `cfg.discount` if set; else, until the rule switches (`failures=False`), TD-MPC2's
    heuristic: longer episodes get a larger discount, clipped to
    `[discount_min, discount_max]`; once it has (failures and a varying reward seen, with
    `cfg.alive_discount_max` set), `1 - 1 / episode_length` clipped to
    `[discount_min, alive_discount_max]`.
    """
    if cfg.discount is not None:
        return float(cfg.discount)
    if failures and cfg.alive_discount_max is not None:
        horizon, top = episode_length, cfg.alive_discount_max
    else:
        horizon, top = episode_length / cfg.discount_denom, cfg.discount_max
    return float(min(max((horizon - 1) / horizon, cfg.discount_min), top))


def make_tdmpc2(cfg: TDMPC2Config, spec: EnvSpec) -> Agent:
    """Build the TD-MPC2 agent for an environment spec (state vectors only).

    Raises:
      ValueError: `spec` has image observations.
    """
    if spec.image_shape is not None:
        raise ValueError(
            f"TD-MPC2 takes state vectors, not images ({spec.name} with pixel observations): "
            "use obs='state', or an agent with an image encoder (Dreamer)"
        )
    # The rule's two discounts, and the one in use for a state (a traced select).
    before, after = (episode_discount(cfg, spec.episode_length, f) for f in (False, True))

    def discount_of(state):
        spread = state.reward_high - state.reward_low
        varies = spread > 1e-6 * jnp.maximum(1.0, jnp.abs(state.reward_high))
        return jnp.where(state.failures_seen & varies, jnp.float32(after), jnp.float32(before))

    def observe_data(state, batch):
        """The rule's evidence with `batch` added: failures, and the reward's range off `done`."""
        ongoing = ~batch.done
        low = jnp.min(jnp.where(ongoing, batch.reward, BIG))
        high = jnp.max(jnp.where(ongoing, batch.reward, -BIG))
        return state.replace(
            failures_seen=state.failures_seen | jnp.any(batch.terminated),
            reward_low=jnp.minimum(state.reward_low, low),
            reward_high=jnp.maximum(state.reward_high, high),
        )

    model_cfg = dataclasses.replace(cfg.model, discount=episode_discount(cfg, spec.episode_length))
    model, p = make_tdmpc_model(model_cfg, spec.obs_size, spec.action_size), cfg.planner
    model_tx = optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.multi_transform(
            {"enc": optax.adam(cfg.lr * cfg.enc_lr_scale), "rest": optax.adam(cfg.lr)},
            lambda params: {
                k: jax.tree.map(lambda _, label="enc" if k == "encoder" else "rest": label, v)
                for k, v in params.items()
            },
        ),
    )
    pi_tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), optax.adam(cfg.lr, eps=1e-5))

    def split(params):
        return {k: v for k, v in params.items() if k != "pi"}, params["pi"]

    def init(key) -> TDMPC2State:
        params = model.init(key)
        rest, pi = split(params)
        return TDMPC2State(
            params=params,
            target_q=params["q"],
            model_opt=model_tx.init(rest),
            pi_opt=pi_tx.init(pi),
            scale=jnp.ones((), jnp.float32),
            updates=jnp.zeros((), jnp.int32),
            failures_seen=jnp.zeros((), bool),
            reward_low=jnp.full((), BIG, jnp.float32),  # finite: the update guard checks
            reward_high=jnp.full((), -BIG, jnp.float32),
        )

    def initial_carry(state, num_envs: int):
        plan = planning.initial_plan(p.horizon, spec.action_size, std=p.max_std)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs, *x.shape)), plan)

    def plan_one(params, discount, z, prev, key):
        # The root carries an "alive" weight beside the latent (`worldmodels.model_root`), so
        # predicted terminations (`StepOutput.cont`) zero later rewards and the value.
        step_fn = model_step_fn(model, params)
        # One pair of Q-functions per plan, as in TD-MPC2: a key closed over here is the same for
        # every sample, whereas a per-sample key would gather Q weights per sample under vmap.
        key, k_q = jax.random.split(key)
        value_fn = model_value_fn(
            lambda z, k: model.q(params, z, model.pi(params, z, k)[0], k_q, "avg")
        )
        prior_fn = model_prior_fn(lambda z, k: model.pi(params, z, k)[0])

        return planning.mppi(
            key,
            model_root(z),
            step_fn,
            cfg.planner,
            action_size=spec.action_size,
            value_fn=value_fn,
            prior_fn=prior_fn if p.num_pi_trajs else None,
            prev=prev,
            discount=discount,
        )

    def act(state: TDMPC2State, carry, obs, is_first, key, *, eval: bool = False):
        """`obs [N, O]`, `is_first [N]` -> `(carry, action [N, A], info)`."""
        k_plan, k_noise = jax.random.split(key)
        z = model.encode(state.params, obs)
        if not cfg.mpc:
            action, _, mode = model.pi(state.params, z, k_plan)
            return carry, mode if eval else action, {}
        prev = planning.reset_plan(carry, is_first)
        keys = jax.random.split(k_plan, obs.shape[0])
        discount = discount_of(state)
        plan = jax.vmap(plan_one, in_axes=(None, None, 0, 0, 0))(
            state.params, discount, z, prev, keys
        )
        action = plan.action
        if not eval:
            noise = jax.random.normal(k_noise, action.shape) * plan.std[:, 0]
            action = jnp.clip(action + noise, -1.0, 1.0)
        return plan, action, {"plan/value": plan.value.mean()}

    def update(state: TDMPC2State, batch, key) -> UpdateOutput:
        """One TD-MPC2 update on a `[H, B]` batch of sequences (H = planner horizon)."""
        k_model, k_pi = jax.random.split(key)
        seen = observe_data(state, batch)
        discount = discount_of(seen)
        grad_fn = jax.value_and_grad(model.model_loss, has_aux=True)
        (_, (metrics, latents)), grads = grad_fn(
            state.params, batch, k_model, state.target_q, discount
        )
        rest, pi = split(state.params)
        grads_rest, _ = split(grads)
        metrics["grad_norm/model"] = optax.tree.norm(grads_rest)
        updates, model_opt = model_tx.update(grads_rest, state.model_opt, rest)
        params = dict(optax.apply_updates(rest, updates), pi=pi)

        # Latent t (after t actions) is in the sampled episode if no step before it was done.
        mask = same_episode(jnp.concatenate([batch.done, jnp.zeros_like(batch.done[:1])]))

        def pi_objective(pi_params):
            return model.pi_loss(dict(params, pi=pi_params), latents, k_pi, state.scale, mask)

        (_, (pi_metrics, qs)), pi_grads = jax.value_and_grad(pi_objective, has_aux=True)(pi)
        pi_updates, pi_opt = pi_tx.update(pi_grads, state.pi_opt, pi)
        params = dict(params, pi=optax.apply_updates(pi, pi_updates))
        lo, hi = jnp.percentile(jax.lax.stop_gradient(qs[0]), jnp.array([5.0, 95.0]))
        new_scale = jnp.maximum(hi - lo, 1.0)
        scale = jnp.where(
            state.updates == 0, new_scale, state.scale + cfg.tau * (new_scale - state.scale)
        )
        target_q = optax.incremental_update(params["q"], state.target_q, cfg.tau)
        metrics.update(pi_metrics, **{"pi/scale": scale, "discount": discount})
        new_state = seen.replace(  # the rule's evidence from `seen`, the rest learnt here
            params=params,
            target_q=target_q,
            model_opt=model_opt,
            pi_opt=pi_opt,
            scale=scale,
            updates=state.updates + 1,
        )
        return UpdateOutput(new_state, metrics)

    # Sequences may run past an episode's end: the losses mask the steps after it
    # (`worldmodels.tdmpc.same_episode`), so a terminal step is sampled at every position.
    data = DataSpec(
        seq_len=p.horizon,
        batch_size=cfg.batch_size,
        cross_episodes=True,
        updates_per_step=cfg.updates_per_step,
    )
    return Agent(data=data, init=init, initial_carry=initial_carry, act=act, update=update)
