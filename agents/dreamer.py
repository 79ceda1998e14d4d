"""Dreamer agent: learns the RSSM world model from replay and an actor-critic in its imagination.

One `update` on a `[T, B]` replay batch (DreamerV3, Hafner et al. 2023):
  1. world model: one optimiser step on `RSSMModel.model_loss`, which also gives the posterior
     latents `[T, B]`, the starts of imagination (stop-gradient);
  2. imagination: `H` prior steps from all `T * B` starts under the actor, with the updated
     model (`worldmodels.sequence.imagine`: one `lax.scan` of the actor and the RSSM's prior
     `transition`, the reward and continue heads once on all steps after it);
  3. lambda-returns of the predicted rewards, bootstrapped with the critic; the continue head
     discounts them and weights every loss by `cumprod(discount * cont) / discount`;
  4. actor: REINFORCE with advantages `(R - v) / max(1, P95 - P5)` (EMA of the return percentiles,
     DreamerV3's `retnorm`) or, with `actor_grad="dynamics"`, the normalised returns maximised by
     backpropagation through the model (Dreamer v1); both with an entropy bonus;
  5. critic: two-hot cross-entropy towards the lambda-returns plus the same towards the slow
     critic's value (the regulariser); the slow critic then follows by an EMA.
Steps 2-5 are `agents.actor_critic`, the return maths `worldmodels.returns`; this module wires
them with the model's step into the `Agent` contract.

Departures from DreamerV3, with reasons:
  * Optimisers: `optax.adam` after `optax.clip_by_global_norm` (one chain per network: model,
    actor, critic), not LaProp with adaptive gradient clipping, which optax does not ship in this
    form; global-norm thresholds are DreamerV3's first release's (1000 model, 100 actor/critic).
  * Replay context (`replay_context=True`, DreamerV3's default) as DreamerV3 does it: the
    acting latent is stored in replay with every step (`Agent.context`, `Transition.context`); a
    training sequence starts from the latent stored at its first step instead of from scratch,
    and the posteriors the update computes are written back to the steps that follow
    (`agents.replay.write_context`), so the latent at the end of one training sequence is
    where a sequence starting there continues. Steps collected with random actions, and
    episode starts, begin from the learned initial state as before.
  * Imagined continues are the continue head's probability (DreamerV3 takes its mode); the
    start of each rollout uses the true `1 - terminated` as DreamerV3 does.
  * No replay-value loss on the real trajectories (DreamerV3's `repval`, scale 0.3).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from agents.types import EnvSpec
  >>> spec = EnvSpec(name="toy", obs_size=4, action_size=1, num_envs=2, episode_length=100,
  ...                action_repeat=1)
  >>> agent = make_dreamer(DreamerConfig.tiny(), spec)
  >>> state = agent.init(jax.random.key(0))
  >>> carry = agent.initial_carry(state, 2)
  >>> carry, action, _ = agent.act(state, carry, jnp.zeros((2, 4)), jnp.ones(2, bool),
  ...                              jax.random.key(1))
  >>> action.shape
  (2, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agents.actor_critic import make_actor_critic
from agents.types import Agent, DataSpec, EnvSpec, UpdateOutput
from worldmodels.checks import Range, check_config, check_order
from worldmodels.nets import check_image_shape
from worldmodels.rssm import RSSMState, make_rssm
from worldmodels.rssm_config import RSSMConfig
from worldmodels.sequence import imagine

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True, kw_only=True)
class DreamerConfig:
    """Dreamer agent hyper-parameters.

    `DreamerConfig()` is DreamerV3's (its `size1m` model); `DreamerConfig.cpu()` is what
    `wm train dreamer` starts from on a 2-core CPU.

    Attributes:
      model: the RSSM world model.
      horizon: imagination steps per start.
      lam: lambda of the lambda-returns.
      discount_horizon: the discount is `1 - 1 / discount_horizon` (DreamerV3: 333).
      units: width of the actor and critic MLPs on `model.feat`.
      layers: hidden layers of the actor and critic MLPs.
      min_std: the actor's lowest Gaussian std (its mean is `tanh`ed, samples clipped).
      max_std: the actor's highest Gaussian std.
      actor_grad: `"reinforce"` (DreamerV3) or `"dynamics"` (backprop through the model, v1).
      entropy: actor entropy bonus.
      slow_rate: EMA rate of the slow critic per update.
      slow_reg: weight of the critic's regulariser towards the slow critic.
      retnorm_rate: EMA rate of the return percentiles.
      retnorm_low: the lower return percentile (`P_low`).
      retnorm_high: the upper return percentile (`P_high`).
      retnorm_limit: the return scale is `max(retnorm_limit, P_high - P_low)`.
      model_lr: Adam learning rate of the world model.
      actor_lr: Adam learning rate of the actor.
      critic_lr: Adam learning rate of the critic.
      model_grad_clip: global-norm clip of the world model's gradients.
      ac_grad_clip: global-norm clip of the actor's and the critic's gradients.
      batch_size: replay sequences per update.
      batch_length: their length in agent steps (a sequence may span episodes: the RSSM resets
        its latent after every `done`).
      updates_per_step: updates after each vectorised env step (one: an update trains three
        networks on `batch_size x batch_length` sequences and imagines from every step of them).
      replay_context: start training sequences from the latent stored in replay (refreshed by
        training) rather than from the initial state; see the module docstring.

    Every float must be finite (`worldmodels.checks`); learning rates, gradient clips, `min_std`
    (<= `max_std`) and `retnorm_limit` > 0; `entropy`, `slow_reg` >= 0; `slow_rate`,
    `retnorm_rate` in (0, 1]; `lam` in [0, 1]; `discount_horizon` >= 1; and
    `0 <= retnorm_low < retnorm_high <= 100`.
    """

    name: ClassVar[str] = "dreamer"
    # `wm` tunes glibc's malloc for this agent (agents.hostmem): its updates' large temporaries.
    tune_host_allocator: ClassVar[bool] = True

    model: RSSMConfig = dataclasses.field(default_factory=RSSMConfig.size1m)
    horizon: int = 15
    lam: float = 0.95
    discount_horizon: float = 333.0
    units: int = 64
    layers: int = 3
    min_std: float = 0.1
    max_std: float = 1.0
    actor_grad: Literal["reinforce", "dynamics"] = "reinforce"
    entropy: float = 3e-4
    slow_rate: float = 0.02
    slow_reg: float = 1.0
    retnorm_rate: float = 0.01
    retnorm_low: float = 5.0
    retnorm_high: float = 95.0
    retnorm_limit: float = 1.0
    model_lr: float = 4e-5
    actor_lr: float = 4e-5
    critic_lr: float = 4e-5
    model_grad_clip: float = 1000.0
    ac_grad_clip: float = 100.0
    batch_size: int = 16
    batch_length: int = 64
    updates_per_step: int = 1
    replay_context: bool = True

    def __post_init__(self):
        sizes = {"horizon": 1, "units": 1, "layers": 0, "batch_size": 1, "batch_length": 1}
        sizes["updates_per_step"] = 0
        positive = ("model_lr", "actor_lr", "critic_lr", "model_grad_clip", "ac_grad_clip")
        check_config(
            self,
            {name: Range(ge=low, integer=True) for name, low in sizes.items()}
            | {name: Range(gt=0) for name in (*positive, "min_std", "max_std", "retnorm_limit")}
            | {"entropy": Range(ge=0), "slow_reg": Range(ge=0)}
            | {"slow_rate": Range(gt=0, le=1), "retnorm_rate": Range(gt=0, le=1)}
            | {"lam": Range(ge=0, le=1), "discount_horizon": Range(ge=1)}
            | {"retnorm_low": Range(ge=0, le=100), "retnorm_high": Range(ge=0, le=100)},
        )
        check_order(self, "min_std", "max_std", strict=False)
        check_order(self, "retnorm_low", "retnorm_high")
        if self.actor_grad not in ("reinforce", "dynamics"):
            raise ValueError(
                f"DreamerConfig.actor_grad must be 'reinforce' or 'dynamics', "
                f"got {self.actor_grad!r}"
            )

    @property
    def discount(self) -> float:
        return 1.0 - 1.0 / self.discount_horizon

    @classmethod
    def cpu(cls) -> DreamerConfig:
        """The `wm train dreamer` default, for a 2-core CPU.

        Changed (DreamerV3 in brackets) and why:
          * RSSM deter 256 [512] with 16 groups [32], batch length 32 [64], model lr 1e-4 [4e-5]:
            an update must cost tens of milliseconds so that a few thousand fit in minutes of CPU
            time, and the few updates that allows need a larger step.
          * critic lr 3e-4, actor lr 1e-4 [4e-5], slow critic rate 0.05 [0.02], discount horizon
            100 [333]: with the critic at 1e-4 and horizon 333 its value was still rising
            linearly after 30k env steps and inverted_pendulum's eval stayed near 200; with these
            it reached 1000 at 30k env steps (`benchmarks/results/learning_dreamer_*`).
        Everything else is DreamerV3's.
        """
        return cls(
            model=RSSMConfig.size1m(deter=256, groups=16),
            batch_length=32,
            discount_horizon=100.0,
            slow_rate=0.05,
            model_lr=1e-4,
            actor_lr=1e-4,
            critic_lr=3e-4,
        )

    @classmethod
    def tiny(cls) -> DreamerConfig:
        """A very small config for tests: optional RSSM layers removed (they cost compile time)."""
        sizes = dict(deter=16, hidden=8, groups=4, classes=4, blocks=2, units=16, num_bins=21)
        zero = ("dec", "img", "obs", "reward", "cont", "dyn")
        model = RSSMConfig(**sizes, enc_layers=1, **{f"{name}_layers": 0 for name in zero})
        return cls(model=model, horizon=4, units=16, layers=1, batch_size=4, batch_length=6)


@struct.dataclass
class DreamerCarry:
    """Per-env acting state, carried across env steps on device.

    Attributes:
      latent: the RSSM posterior `RSSMState` `[N, ...]` after the last observation.
      action: `[N, A]` the action taken from it (fed to the model with the next observation).
    """

    latent: RSSMState
    action: jax.Array


@struct.dataclass
class DreamerState:
    """Everything the agent learns or carries between updates.

    Attributes:
      params: `{"model", "actor", "critic"}` parameter pytrees.
      slow_critic: EMA of `params["critic"]`, the critic's regularisation target.
      model_opt, actor_opt, critic_opt: optax states.
      retnorm: `[2]` EMA of the `(low, high)` percentiles of the lambda-returns.
      updates: int32 count of updates done.
    """

    params: dict
    slow_critic: dict
    model_opt: Any
    actor_opt: Any
    critic_opt: Any
    retnorm: jax.Array
    updates: jax.Array


def make_imagination(cfg: DreamerConfig, spec: EnvSpec):
    """The imagination inside `make_dreamer(cfg, spec).update`, alone (for benchmarks).

    Returns:
      `(state, start, key) -> (latents [H, N], actions [H, N, A], outs)`: `cfg.horizon` prior
      steps under the actor from the `RSSMState` `start [N]`, with the agent's `DreamerState`.
    """
    model = make_rssm(cfg.model, spec.obs_shape, spec.action_size)
    ac = make_actor_critic(cfg, model, spec.action_size)

    def imagination(state: DreamerState, start: RSSMState, key):
        p = state.params
        return imagine(model, p["model"], start, ac.policy_fn(p["actor"]), cfg.horizon, key)

    return imagination


def make_dreamer(cfg: DreamerConfig, spec: EnvSpec) -> Agent:
    """Build the Dreamer agent for an environment spec (see the module docstring).

    Raises:
      ValueError: image observations the CNN encoder cannot take (`cfg.model.minres`).
    """
    if spec.image_shape is not None:
        try:
            check_image_shape(spec.image_shape, cfg.model.minres)
        except ValueError as e:
            raise ValueError(f"Dreamer cannot take these frames (--image-size): {e}") from None
    model, a_size = make_rssm(cfg.model, spec.obs_shape, spec.action_size), spec.action_size
    ac = make_actor_critic(cfg, model, a_size)
    chain = lambda clip, lr: optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr))
    model_tx = chain(cfg.model_grad_clip, cfg.model_lr)
    actor_tx = chain(cfg.ac_grad_clip, cfg.actor_lr)
    critic_tx = chain(cfg.ac_grad_clip, cfg.critic_lr)

    def init(key) -> DreamerState:
        k_model, k_actor, k_critic = jax.random.split(key, 3)
        params = {
            "model": model.init(k_model),
            "actor": ac.actor.init(k_actor),
            "critic": ac.critic.init(k_critic),
        }
        return DreamerState(
            params=params,
            slow_critic=params["critic"],
            model_opt=model_tx.init(params["model"]),
            actor_opt=actor_tx.init(params["actor"]),
            critic_opt=critic_tx.init(params["critic"]),
            retnorm=jnp.zeros((2,), jnp.float32),
            updates=jnp.zeros((), jnp.int32),
        )

    def initial_carry(state: DreamerState, num_envs: int) -> DreamerCarry:
        latent = model.initial(state.params["model"], num_envs)
        return DreamerCarry(latent=latent, action=jnp.zeros((num_envs, a_size)))

    def act(state: DreamerState, carry: DreamerCarry, obs, is_first, key, *, eval: bool = False):
        """`obs [N, O]`, `is_first [N]` -> `(carry, action [N, A] in [-1, 1], info)`."""
        k_obs, k_act = jax.random.split(key)
        params = state.params
        latent, _ = model.observe(params["model"], carry.latent, carry.action, obs, is_first, k_obs)
        mean, std = ac.policy(params["actor"], latent)
        action = mean if eval else mean + std * jax.random.normal(k_act, mean.shape)
        action = jnp.clip(action, -1.0, 1.0)
        return DreamerCarry(latent=latent, action=action), action, {}

    def step(tx, grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def update(state: DreamerState, batch, key) -> UpdateOutput:
        """One Dreamer update on a `[T, B]` batch of sequences (`Transition`)."""
        k_model, k_imag = jax.random.split(key)
        p = state.params
        start = {}
        if cfg.replay_context:
            ctx = batch.context
            start = dict(start=jax.tree.map(lambda x: x[0], ctx.value), start_first=ctx.first[0])
        grad_fn = jax.value_and_grad(model.model_loss, has_aux=True)
        (_, (metrics, post)), grads = grad_fn(p["model"], batch, k_model, **start)
        metrics["grad_norm/model"] = optax.tree.norm(grads)
        model_params, model_opt = step(model_tx, grads, state.model_opt, p["model"])

        flat = lambda x: sg(x.reshape(-1, *x.shape[2:]))
        start = jax.tree.map(flat, post)
        cont0 = flat(1.0 - batch.terminated.astype(jnp.float32))
        actor_grads, critic_grads, retnorm, ac_metrics = ac.gradients(
            p, model_params, state.slow_critic, state.retnorm, start, cont0, k_imag
        )
        metrics["grad_norm/actor"] = optax.tree.norm(actor_grads)
        metrics["grad_norm/critic"] = optax.tree.norm(critic_grads)
        actor_params, actor_opt = step(actor_tx, actor_grads, state.actor_opt, p["actor"])
        critic_params, critic_opt = step(critic_tx, critic_grads, state.critic_opt, p["critic"])
        slow = optax.incremental_update(critic_params, state.slow_critic, cfg.slow_rate)
        metrics.update(ac_metrics)
        new_state = DreamerState(
            params={"model": model_params, "actor": actor_params, "critic": critic_params},
            slow_critic=slow,
            model_opt=model_opt,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            retnorm=retnorm,
            updates=state.updates + 1,
        )
        # The posteriors of each step's next_obs, for agents.replay.
        return UpdateOutput(new_state, metrics, sg(post) if cfg.replay_context else None)

    def context(carry: DreamerCarry) -> RSSMState:
        """What replay stores with a step: the posterior latent of its `obs` (`[N, ...]`)."""
        return carry.latent

    data = DataSpec(
        seq_len=cfg.batch_length,
        batch_size=cfg.batch_size,
        cross_episodes=True,
        updates_per_step=cfg.updates_per_step,
    )
    return Agent(
        data=data,
        init=init,
        initial_carry=initial_carry,
        act=act,
        update=update,
        context=context if cfg.replay_context else None,
    )
