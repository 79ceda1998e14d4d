"""Returns of imagined trajectories: lambda-returns, discount weights, return normalisation.

Pure functions of arrays, for any agent that learns an actor and a critic in a model's
imagination (Dreamer's `agents.dreamer` uses all of them). Time leads: `[H, ...]` for the `H`
imagined steps, `[H + 1, ...]` for the states `0..H` they visit.

Example (`discount = 0.5`, every step rewards 1, the episode goes on, the critic says 0):
  >>> import jax.numpy as jnp
  >>> reward, cont = jnp.ones((3, 1)), jnp.ones((3, 1))
  >>> value = jnp.zeros((4, 1))
  >>> lambda_returns(reward, cont, value, discount=0.5, lam=1.0)[:, 0].tolist()  # Monte-Carlo
  [1.75, 1.5, 1.0]
  >>> lambda_returns(reward, cont, value, discount=0.5, lam=0.0)[:, 0].tolist()  # one-step TD
  [1.0, 1.0, 1.0]
  >>> discount_weights(jnp.ones(1), cont, discount=0.5)[:, 0].tolist()
  [1.0, 0.5, 0.25, 0.125]
  >>> retnorm = update_retnorm(jnp.zeros(2), jnp.arange(101.0), rate=1.0)  # P5, P95
  >>> retnorm.tolist(), float(return_scale(retnorm))
  ([5.0, 95.0], 90.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from worldmodels.types import Array

__all__ = ["discount_weights", "lambda_returns", "return_scale", "update_retnorm"]


def lambda_returns(reward: Array, cont: Array, value: Array, discount: float, lam: float) -> Array:
    """TD(lambda) returns, bootstrapped with `value[-1]`, as a reverse `lax.scan`.

    `R_t = r_t + discount * c_t * ((1 - lam) * v_{t+1} + lam * R_{t+1})`, `R_H = v_H`: `lam = 1`
    is the discounted Monte-Carlo return bootstrapped at the end, `lam = 0` the one-step TD
    target `r_t + discount * c_t * v_{t+1}`.

    Args:
      reward: `[H, ...]` reward of step `t` (into state `t + 1`).
      cont: `[H, ...]` continue probability of state `t + 1` (0 ends the episode there).
      value: `[H + 1, ...]` values of states `0..H`.
      discount, lam: scalars in `[0, 1]`.

    Returns:
      `[H, ...]` returns of states `0..H-1`.
    """

    def step(next_ret, inputs):
        r, c, v_next = inputs
        ret = r + discount * c * ((1.0 - lam) * v_next + lam * next_ret)
        return ret, ret

    _, rets = jax.lax.scan(step, value[-1], (reward, cont, value[1:]), reverse=True)
    return rets


def discount_weights(cont0: Array, cont: Array, discount: float) -> Array:
    """Weights of the imagined states in a loss: `cumprod(discount * cont) / discount`.

    State `t`'s weight is `discount**t` times the probability that the episode is still going
    there, so states after a predicted end count less and the first state counts `cont0`.

    Args:
      cont0: `[...]` continue flag of the start state (`1 - terminated` of a real step).
      cont: `[H, ...]` continue probabilities of the imagined states `1..H`.
      discount: scalar.

    Returns:
      `[H + 1, ...]` weights of states `0..H` (gradients flow; callers usually stop them).
    """
    cont = jnp.concatenate([cont0[None], cont])
    return jnp.cumprod(discount * cont, axis=0) / discount


def update_retnorm(
    retnorm: Array, returns: Array, rate: float, low: float = 5.0, high: float = 95.0
) -> Array:
    """One EMA step of the return percentiles (DreamerV3's return normalisation).

    Args:
      retnorm: `[2]` running `(low, high)` percentiles; start from zeros.
      returns: `[...]` this batch's returns, of any shape (no gradient flows into them).
      rate: EMA rate in `(0, 1]`; 1 replaces the running values by this batch's.
      low, high: the percentiles, `0 <= low < high <= 100` (`jnp.percentile`'s linear method).

    Returns:
      `[2]` the updated `(low, high)`.
    """
    perc = jnp.percentile(jax.lax.stop_gradient(returns), jnp.array([low, high], returns.dtype))
    return retnorm + rate * (perc - retnorm)


def return_scale(retnorm: Array, limit: float = 1.0) -> Array:
    """`max(limit, high - low)` of `retnorm [2]`: returns are divided by it, never scaled up.

    Returns:
      `[]` the scale.
    """
    return jnp.maximum(limit, retnorm[1] - retnorm[0])
