"""Official DreamerV3 (JAX) behind `benchmarks/official.py`'s JSON-lines protocol.

  <dreamerv3 venv>/bin/python benchmarks/official/dreamerv3_harness.py --src DIR

Imports `dreamerv3.agent.Agent` from DIR (a checkout of danijar/dreamerv3 at the pinned commit)
and builds it as its `main.py`'s `make_agent` does, from its own `configs.yaml` (`defaults`, then
the size preset), on a vector observation and a continuous action of the requested sizes; its
code is not changed. Config for a CPU comparison: `jax.platform: cpu`, `jax.compute_dtype:
float32` (its default is bfloat16), `jax.prealloc: false`; `jax.precompile`, `jax.profiler` and
`jax.enable_policy` off (the harness compiles the train step itself, so it can time that; the
profiler would start tracing at update 100; the policy copy is for acting, which is not timed).
No persistent compilation cache (none configured; `JAX_COMPILATION_CACHE_DIR` is removed).

Workloads:
  - `imagine`: the imagination inside its loss alone, forward: `dyn.imagine(starts, policy, H)`
    with the policy `sample(pol(feat2tensor(feat)))` from `starts` random latents, then the
    reward and continue heads on all imagined steps; one `jax.jit` of `nj.pure` of that.
  - `train`: `agent.train(carry, batch)` (its jitted train step: world model, imagination,
    actor, critic, slow critic) on a fixed random `[B, T + replay_context]` batch, carrying the
    carry on; timed until its parameters are ready.
  - `compile`: `lower(...).compile()` of that train step, as its `_compile_train` does it.
FLOPs: the same jaxpr walk as `agents.bench.matmul_flops` (every `dot_general` and convolution
is a matmul; a scan body counts once per trip), and XLA's cost analysis beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Harness as Base
from protocol import matmul_gflops, setup_malloc  # noqa: E402

ALLOCATOR = setup_malloc()
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

import jax  # noqa: E402
import numpy as np  # noqa: E402


def jaxpr_flops(jaxpr) -> float:
    """Matmul FLOPs of a jaxpr, loops per trip: `agents.bench._jaxpr_flops`, restated here
    because this process cannot import our package (different JAX)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "dot_general":
            (lhs_contract, _), _ = params["dimension_numbers"]
            lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
            total += 2.0 * np.prod(out) * np.prod([lhs[d] for d in lhs_contract])
        elif name == "conv_general_dilated":
            rhs, out = eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape
            spec = params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
            per_out = np.prod([rhs[d] for d in spec[1:]])
            total += 2.0 * np.prod(out) * per_out
        elif name == "scan":
            total += params["length"] * jaxpr_flops(params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(jaxpr_flops(b.jaxpr) for b in params["branches"])
        elif name == "while":
            total += jaxpr_flops(params["body_jaxpr"].jaxpr)
        else:
            for value in params.values():
                for sub in value if isinstance(value, list | tuple) else (value,):
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        total += jaxpr_flops(getattr(inner, "jaxpr", inner))
    return total


def xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


class Harness(Base):
    def __init__(self, src: Path):
        super().__init__()
        sys.path.insert(0, str(src))
        self.src = src

    def _agent(self, req: dict):
        import elements
        import ruamel.yaml as yaml
        from dreamerv3.agent import Agent

        configs = yaml.YAML(typ="safe").load((self.src / "dreamerv3" / "configs.yaml").read_text())
        config = elements.Config(configs["defaults"]).update(configs[req["size"]])
        config = config.update(
            {
                "jax.platform": "cpu",
                "jax.compute_dtype": "float32",
                "jax.prealloc": False,
                "jax.enable_policy": False,
                "batch_size": req["batch"][0],
                "batch_length": req["batch"][1],
                "logdir": "/tmp/dreamerv3-harness",
            }
        )
        obs_space = {
            "vector": elements.Space(np.float32, (req["obs_size"],)),
            "reward": elements.Space(np.float32),
            "is_first": elements.Space(bool),
            "is_last": elements.Space(bool),
            "is_terminal": elements.Space(bool),
        }
        act_space = {"action": elements.Space(np.float32, (req["action_size"],), -1.0, 1.0)}
        # Options of embodied.jax.Agent that configs.yaml leaves at their defaults:
        jaxcfg = {**dict(config.jax), "profiler": False, "precompile": False}
        # As main.make_agent does:
        agent = Agent(
            obs_space,
            act_space,
            elements.Config(
                **config.agent,
                logdir=config.logdir,
                seed=config.seed,
                jax=jaxcfg,
                batch_size=config.batch_size,
                batch_length=config.batch_length,
                replay_context=config.replay_context,
                report_length=config.report_length,
                replica=config.replica,
                replicas=config.replicas,
            ),
        )
        return agent, config

    def _batch(self, agent, config):
        b, t, c = config.batch_size, config.batch_length, config.replay_context
        rng = np.random.default_rng(0)
        data = agent._zeros(agent.spaces, (b, t + c))
        data["vector"] = rng.normal(size=data["vector"].shape).astype(np.float32)
        data["reward"] = rng.normal(size=data["reward"].shape).astype(np.float32)
        data["action"] = rng.uniform(-1, 1, size=data["action"].shape).astype(np.float32)
        data["is_first"][:, 0] = True
        return data

    def build(self, req: dict) -> dict:
        import ninjax as nj
        from embodied.jax import internal

        kind, w = req["kind"], req["workload"]
        t = time.perf_counter()
        agent, config = self._agent(req)
        build_s = time.perf_counter() - t
        out = {"build_s": round(build_s, 3), "jax": jax.__version__}
        out["params"] = int(sum(v.size for v in agent.params.values()))
        b = config.batch_size
        if kind in ("train", "compile"):
            data = internal.device_put(self._batch(agent, config), agent.train_sharded)
            seed = agent._seeds(0, agent.train_mirrored)
            carry = agent.init_train(b)
            allo = {k: v for k, v in agent.params.items() if k in agent.policy_keys}
            dona = {k: v for k, v in agent.params.items() if k not in agent.policy_keys}
            if req.get("flops", True):
                out["flops"] = jaxpr_flops(
                    jax.make_jaxpr(agent._train)(dona, allo, seed, carry, data).jaxpr
                )
            t = time.perf_counter()
            compiled = agent._train.lower(dona, allo, seed, carry, data).compile()
            out["compile_s"] = round(time.perf_counter() - t, 3)
            out["xla_cost_flops"] = xla_flops(compiled)
            agent._train = compiled
            if kind == "train":
                state = {"carry": carry, "n": 0}

                def call():
                    batch = dict(data, seed=agent._seeds(state["n"], agent.train_mirrored))
                    state["carry"], _, _ = agent.train(state["carry"], batch)
                    state["n"] += 1
                    jax.block_until_ready((agent.params, state["carry"]))

                call()  # warm-up
                self.work[w] = call
        elif kind == "imagine":
            model, horizon, n = agent.model, req["horizon"], req["starts"]
            m = config.agent.dyn.rssm

            def imagination(starts):
                def policy(feat):
                    dist = model.pol(model.feat2tensor(feat), 1)
                    return jax.tree.map(lambda d: d.sample(nj.seed()), dist)

                _, feat, _ = model.dyn.imagine(starts, policy, horizon, False)
                inp = model.feat2tensor(feat)
                return model.rew(inp, 2).pred(), model.con(inp, 2).prob(1)

            pure = nj.pure(imagination)
            fn = jax.jit(lambda params, seed, starts: pure(params, starts, seed=seed)[1])
            rng = np.random.default_rng(4)
            starts = {
                "deter": np.tanh(rng.normal(size=(n, m.deter))).astype(np.float32),
                "stoch": np.eye(m.classes, dtype=np.float32)[
                    rng.integers(0, m.classes, (n, m.stoch))
                ],
            }
            starts = internal.device_put(starts, agent.train_mirrored)
            seed = agent._seeds(5, agent.train_mirrored)
            params = agent.params
            out["flops"] = jaxpr_flops(jax.make_jaxpr(fn)(params, seed, starts).jaxpr)
            t = time.perf_counter()
            compiled = fn.lower(params, seed, starts).compile()
            out["compile_s"] = round(time.perf_counter() - t, 3)
            out["xla_cost_flops"] = xla_flops(compiled)

            def call():
                jax.block_until_ready(compiled(params, seed, starts))

            call()
            self.work[w] = call
        else:
            raise ValueError(f"unknown workload kind {kind!r}")
        return out

    def info(self, req: dict) -> dict:
        import jax.numpy as jnp

        n = req.get("n", 4096)
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        mm = jax.jit(jnp.matmul)
        gflops = matmul_gflops(lambda: jax.block_until_ready(mm(a, a)), n, req.get("repeats", 5))
        return {
            "framework": f"jax {jax.__version__}",
            "allocator": ALLOCATOR,
            "matmul_gflops": gflops,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, required=True, help="checkout of danijar/dreamerv3")
    args = p.parse_args()
    h = Harness(args.src.resolve())
    h.serve()


if __name__ == "__main__":
    main()
