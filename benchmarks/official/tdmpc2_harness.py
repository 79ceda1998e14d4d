"""Official TD-MPC2 (PyTorch) behind `benchmarks/official.py`'s JSON-lines protocol.

  <tdmpc2 venv>/bin/python benchmarks/official/tdmpc2_harness.py --src DIR

Imports `TDMPC2` from `DIR/tdmpc2` (a checkout of nicklashansen/tdmpc2 at the pinned commit)
and builds it from its own `config.yaml` through its own `parse_cfg`, at `model_size` 5 or 1,
state observations of the requested size; its code is not changed. What a CPU run needs:
  - the code puts everything on `cuda:0`: construction runs under a `TorchFunctionMode` that
    sends `cuda` devices to the CPU, and `agent.device` is set to the CPU after it (the plan and
    update read it); nothing is intercepted while timing;
  - `torch.optim.Adam(capturable=True)` is for CUDA graphs and fails on the CPU: the two
    optimisers' param groups get `capturable=False`;
  - `compile: false` (its default `torch.compile(mode="reduce-overhead")` is CUDA graphs): eager.
A `run` request may name `threads` (torch.set_num_threads for that run; default `--threads`).
Workloads: `plan` = `agent.act(obs, t0=False)` for one env (the whole MPPI plan, exploring, as
in training); `update` = `agent.update(buffer)` on a fixed random batch (`buffer.sample()` hands
back the same `[H+1, B]` tensors each time). FLOPs over one call with the formulas of
`torch.utils.flop_counter` (`FlopCounterMode`'s registry: matmuls, forward and backward).
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

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class CudaToCpu(TorchFunctionMode):
    """Every `cuda` device named in a torch call becomes the CPU (construction only)."""

    @staticmethod
    def _cpu(x):
        if isinstance(x, torch.device) and x.type == "cuda":
            return torch.device("cpu")
        if isinstance(x, str) and x.startswith("cuda"):
            return "cpu"
        return x

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = {k: self._cpu(v) for k, v in (kwargs or {}).items()}
        return func(*(self._cpu(a) for a in args), **kwargs)


class MatmulFlops(TorchDispatchMode):
    """FLOPs of every op in `torch.utils.flop_counter`'s registry (mm, addmm, bmm, baddbmm,
    convolutions, attention; forward and backward): `FlopCounterMode`'s own formulas, without
    its module tracker (which trips over the TensorDict parameters of the Q ensemble)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils.flop_counter import flop_registry

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.flops += count(*args, **kwargs, out_val=out)
        return out


class FixedBuffer:
    """Stands in for `common.buffer.Buffer`: `sample()` returns the same random batch."""

    def __init__(self, cfg, obs_size, generator):
        h, b, a = cfg.horizon, cfg.batch_size, cfg.action_dim
        self.batch = (
            torch.randn(h + 1, b, obs_size, generator=generator),
            torch.rand(h, b, a, generator=generator) * 2 - 1,
            torch.randn(h, b, 1, generator=generator),
            torch.zeros(h, b, 1),
            None,
        )

    def sample(self):
        return self.batch


class Harness(Base):
    def __init__(self, src: Path, threads: int):
        super().__init__()
        sys.path.insert(0, str(src / "tdmpc2"))
        os.chdir(src / "tdmpc2")  # the code's `from common import ...` and config.yaml
        torch.set_num_threads(threads)
        self.src, self.threads = src, threads

    def _cfg(self, model_size: int, obs_size: int, action_size: int, episode_length: int):
        from common.parser import parse_cfg
        from hydra.conf import HydraConf
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(self.src / "tdmpc2" / "config.yaml")
        del cfg["defaults"]  # the submitit launcher override: a Hydra plugin, not the agent
        cfg.task, cfg.model_size, cfg.compile, cfg.steps = "benchmark", model_size, False, 1
        cfg.enable_wandb, cfg.save_video, cfg.save_agent = False, False, False
        if not HydraConfig.initialized():  # parse_cfg reads hydra.utils.get_original_cwd()
            hydra = OmegaConf.structured(HydraConf)
            hydra.runtime.cwd = os.getcwd()
            HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra}))
        cfg = parse_cfg(cfg)
        # As its envs/__init__.py does from the environment:
        cfg.obs_shape = {"state": (obs_size,)}
        cfg.action_dim = action_size
        cfg.episode_length = episode_length
        cfg.seed_steps = max(1000, 5 * episode_length)
        return cfg

    def build(self, req: dict) -> dict:
        from common.seed import set_seed
        from tdmpc2 import TDMPC2

        w = req["workload"]
        set_seed(req.get("seed", 1))
        cfg = self._cfg(
            req["model_size"], req["obs_size"], req["action_size"], req["episode_length"]
        )
        t = time.perf_counter()
        with CudaToCpu():
            agent = TDMPC2(cfg)
        agent.device = torch.device("cpu")
        for opt in (agent.optim, agent.pi_optim):
            for group in opt.param_groups:
                group["capturable"] = False
        build_s = time.perf_counter() - t
        g = torch.Generator().manual_seed(0)
        if req["kind"] == "plan":
            obs = torch.randn(req["obs_size"], generator=g)
            call = lambda: agent.act(obs, t0=False)  # noqa: E731
        else:
            buffer = FixedBuffer(cfg, req["obs_size"], g)
            call = lambda: agent.update(buffer)  # noqa: E731
        torch.set_num_threads(self.threads)
        call()  # warm-up (first-call allocations)
        with MatmulFlops() as counter:
            call()
        self.work[w] = call
        params = sum(p.numel() for p in agent.model.parameters() if p.requires_grad)
        return {
            "flops": float(counter.flops),
            "build_s": round(build_s, 3),
            "params": int(params),
            "num_q": cfg.num_q,
            "config": {
                k: getattr(cfg, k)
                for k in (
                    "enc_dim",
                    "mlp_dim",
                    "latent_dim",
                    "num_enc_layers",
                    "num_q",
                    "horizon",
                    "iterations",
                    "num_samples",
                    "num_elites",
                    "num_pi_trajs",
                    "batch_size",
                    "episodic",
                    "compile",
                )
            },
        }

    def prepare(self, req: dict) -> None:
        torch.set_num_threads(req.get("threads", self.threads))

    def info(self, req: dict) -> dict:
        n = req.get("n", 4096)
        a, b = torch.randn(n, n), torch.randn(n, n)
        gflops = matmul_gflops(lambda: a @ b, n, req.get("repeats", 5))
        return {
            "framework": f"torch {torch.__version__}",
            "threads": torch.get_num_threads(),
            "allocator": ALLOCATOR,
            "matmul_gflops": gflops,
            "blas": torch.__config__.show().splitlines()[:12],
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, required=True, help="checkout of nicklashansen/tdmpc2")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    h = Harness(args.src.resolve(), args.threads)
    h.serve()


if __name__ == "__main__":
    main()
