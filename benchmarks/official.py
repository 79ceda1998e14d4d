"""Ours against the official TD-MPC2 (PyTorch) and DreamerV3 (JAX), same machine, same run.

Runs the official code, unchanged, on the same shapes as ours, taking turns (ours, theirs, ours,
theirs, ... a few calls a turn) so that both see the same load, and reports medians, the ratio
(official time / ours: above 1 means ours is faster), FLOPs counted the same way on both sides and
both fractions of the f32 matmul peak measured in this run. Writes
`benchmarks/results/official_<machine>.json` and `.md` (machine = SIMD kind, CPU vendor, family
and model number). `benchmarks/throughput.py` reads its ratios from the newest such file measured
on the same CPU model.

Pinned official code (clone each, check out the commit, pass the folder):
  TD-MPC2    github.com/nicklashansen/tdmpc2 @ e9f59321933cbc8e11a002b842adc7d4ffae8ff1
  DreamerV3  github.com/danijar/dreamerv3    @ e3f02248693a79dc8b0ebd62c93683888ddaccfe

  git clone https://github.com/nicklashansen/tdmpc2 SRC/tdmpc2
  git -C SRC/tdmpc2 checkout e9f59321933cbc8e11a002b842adc7d4ffae8ff1
  git clone https://github.com/danijar/dreamerv3 SRC/dreamerv3
  git -C SRC/dreamerv3 checkout e3f02248693a79dc8b0ebd62c93683888ddaccfe
  python benchmarks/official.py --tdmpc2-src SRC/tdmpc2 --dreamerv3-src SRC/dreamerv3
  python benchmarks/official.py ... --quick        # fewer rounds, 1M/size1m rows only

Each official code runs in its own venv, built once from its own pins under `--cache-dir`
(`benchmarks/official/envs.py`: torch 2.7.1 + tensordict 0.8.3 + hydra-core 1.3.2 + omegaconf
2.3.0 + numpy 1.24.4 on Python 3.11; jax[cpu] 0.4.33 + DreamerV3's requirements), as a
long-lived subprocess (`benchmarks/official/*_harness.py`) that builds its agent once per workload
and answers "run workload W n times" over stdin/stdout. Each implementation's rows run in their own
process, with the glibc malloc setting that `wm` uses for that agent (`agents.hostmem`: tuned for
Dreamer, glibc's default for TD-MPC2), the official harness given the same one. Both sides: 2
threads (torch.set_num_threads; XLA's default on 2 cores), float32.

Workloads (our shapes are `benchmarks/throughput.py`'s: Brax hopper's 11 observations and 3
actions):
  TD-MPC2 plan (one env, the whole MPPI plan, exploring) and update (batch 256, horizon 3) at the
    official 5M and 1M model sizes, the official planner (horizon 3, 6 iterations, 512 samples,
    64 elites, 24 policy trajectories). Work differs: the official code evaluates all 5 Q heads
    of the 5M model and then picks 2 at random; ours evaluates the 2 it picks (1M has 2 heads).
  DreamerV3 imagination (1024 starts x horizon 15, forward) and train step (16 x 64 batch,
    replay context 1) at size1m and size12m.
  DreamerV3 size1m train-step compile time: lower + compile, each side in a fresh process with
    no persistent compilation cache.
FLOPs: ours from `agents.bench.matmul_flops` (a jaxpr walk: every dot_general, scan bodies times
their trip count); DreamerV3's from the same walk over its own jaxpr; TD-MPC2's from
`torch.utils.flop_counter.FlopCounterMode` over one call (matmuls, forward and backward).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HARNESS = HERE / "official"
sys.path.insert(0, str(HARNESS))
import envs as official_envs  # noqa: E402 - standard library only

PINNED = {
    "tdmpc2": {
        "repo": "github.com/nicklashansen/tdmpc2",
        "commit": "e9f59321933cbc8e11a002b842adc7d4ffae8ff1",
    },
    "dreamerv3": {
        "repo": "github.com/danijar/dreamerv3",
        "commit": "e3f02248693a79dc8b0ebd62c93683888ddaccfe",
    },
}
TDMPC2_SIZES = {"5M": 5, "1M": 1}  # ours: throughput.OFFICIAL[name]; theirs: model_size
DREAMER_SIZES = ("size1m", "size12m")
OBS_SIZE, ACTION_SIZE, EPISODE_LENGTH = 11, 3, 1000  # Brax hopper; DMControl's episode length
STARTS, HORIZON, BATCH = 1024, 15, (16, 64)


def wants_tuned_allocator(agent: str) -> bool:
    """Whether `wm` tunes the host allocator for this agent (its config's class attribute)."""
    if agent == "tdmpc2":
        from agents.tdmpc2 import TDMPC2Config as config
    else:
        from agents.dreamer import DreamerConfig as config
    return bool(config.tune_host_allocator)


def workloads(quick: bool) -> list[dict]:
    """Every row of the table, in the order run."""
    out = []
    for size in ("1M",) if quick else ("5M", "1M"):
        for kind in ("plan", "update"):
            out.append(
                {"name": f"tdmpc2_{size}_{kind}", "agent": "tdmpc2", "size": size, "kind": kind}
            )
    for size in ("size1m",) if quick else DREAMER_SIZES:
        for kind in ("imagine", "train"):
            out.append(
                {
                    "name": f"dreamerv3_{size}_{kind}",
                    "agent": "dreamerv3",
                    "size": size,
                    "kind": kind,
                }
            )
    out.append(
        {
            "name": "dreamerv3_size1m_compile",
            "agent": "dreamerv3",
            "size": "size1m",
            "kind": "compile",
        }
    )
    return out


# ---------------------------------------------------------------------------------------------
# Machine and results files (no JAX needed: the test and throughput.py use these).


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """Vendor, family, model number, model name and the SIMD flags that matter, from cpuinfo."""
    fields, flags = {}, set()
    try:
        with open(path) as f:
            for line in f:
                if ":" not in line:
                    if fields:
                        break  # the first processor is enough
                    continue
                key, value = (s.strip() for s in line.split(":", 1))
                if key == "flags":
                    flags = set(value.split())
                elif key in ("vendor_id", "cpu family", "model", "model name", "stepping"):
                    fields.setdefault(key, value)
    except OSError:
        pass
    simd = [
        f
        for f in (
            "avx2",
            "fma",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512_bf16",
            "avx512_vnni",
            "amx_tile",
        )
        if f in flags
    ]
    return {
        "vendor": fields.get("vendor_id", "unknown"),
        "family": fields.get("cpu family", "?"),
        "model": fields.get("model", "?"),
        "model_name": fields.get("model name", "unknown"),
        "stepping": fields.get("stepping", "?"),
        "simd": simd,
        "kind": "AVX-512" if "avx512f" in flags else "AVX2",
        "cores": os.cpu_count(),
    }


def cpu_key(machine: dict) -> tuple[str, str, str]:
    """What makes two machines the same CPU model here: vendor, family, model number."""
    return (str(machine.get("vendor")), str(machine.get("family")), str(machine.get("model")))


def machine_stem(machine: dict) -> str:
    """`official_cpu_avx512_amd_f25_m17`: the results file's name for this CPU model."""
    vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(
        machine["vendor"], machine["vendor"].lower()
    )
    kind = machine["kind"].lower().replace("-", "")
    return f"official_cpu_{kind}_{vendor}_f{machine['family']}_m{machine['model']}"


def find_official(machine: dict, results: Path = RESULTS) -> dict | None:
    """The newest `official_*.json` under `results` measured on the same CPU model, or None."""
    best, best_key = None, None
    for path in sorted(results.glob("official_*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if cpu_key(r.get("machine", {})) != cpu_key(machine):
            continue
        key = (r.get("timestamp", ""), path.stat().st_mtime)
        if best_key is None or key > best_key:
            best, best_key = dict(r, path=str(path)), key
    return best


def _fmt_time(row: dict) -> tuple[str, str]:
    def one(side):
        s = row[side]
        if s is None:
            return "-"
        if "steps_per_s" in s:
            return f"{s['steps_per_s'] / 1e3:,.1f}k steps/s"
        if row["kind"] == "compile":
            return f"{s['s']:.1f} s"
        return f"{s['ms']:,.0f} ms" if s["ms"] >= 100 else f"{s['ms']:,.1f} ms"

    theirs = one("official")
    if row.get("official_2thread") and row["official"].get("threads") != 2:
        theirs += f" (1 thread; 2 threads: {one('official_2thread')})"
    elif row.get("official_2thread"):
        theirs += f" (2 threads; 1 thread: {one('official_1thread')})"
    return one("ours"), theirs


def _allocator(a) -> str:
    """`"tuned"`, or per implementation (`merge_results`): `"tdmpc2 default, dreamerv3 tuned"`."""
    return a if isinstance(a, str) else ", ".join(f"{k} {v}" for k, v in a.items())


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def markdown(r: dict) -> str:
    """The short table of a results dict (see `run`)."""
    m = r["machine"]
    lines = [
        f"# Ours vs the official implementations on {m['model_name']} "
        f"({m['vendor']} family {m['family']} model {m['model']})",
        "",
        f"{m['kind']} ({', '.join(m['simd'])}), {m['cores']} cores; date {r['date']}; our JAX "
        f"{r['ours']['jax']}; official: TD-MPC2 {r['official']['tdmpc2']['commit'][:7]} on "
        f"{r['official']['tdmpc2'].get('framework', '-')}, DreamerV3 "
        f"{r['official']['dreamerv3']['commit'][:7]} on "
        f"{r['official']['dreamerv3'].get('framework', '-')}. "
        f"f32 matmul peak (XLA, 4096^2, this run) **{r['peak_gflops']} GFLOP/s** "
        f"(start {r['peak_start_gflops']}, end {r['peak_end_gflops']}). Both sides float32, "
        f"host allocator {_allocator(r['ours']['allocator'])} (both sides; `agents/hostmem.py`), "
        "2 threads (XLA's default on 2 cores; "
        f"torch.set_num_threads(2), and 1 where noted). Turns: {r['rounds']} rounds of "
        f"ours-then-official per workload, medians of every call; load average before "
        f"{r['load_before']}, after {r['load_after']}.",
        "",
        "| workload | ours | official | ratio | GFLOP ours / official | of peak ours / official |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        if row.get("not_measured"):
            lines.append(f"| {row['label']} | not measured: {row['not_measured']} | | | | |")
            continue
        ours, theirs = _fmt_time(row)
        o, t = row["ours"] or {}, row["official"] or {}
        gflop = (
            f"{o.get('gflop', '-')} / {t.get('gflop', '-')}" if row["kind"] != "compile" else "-"
        )
        frac = (
            f"{_pct(o.get('frac_peak'))} / {_pct(t.get('frac_peak'))}"
            if row["kind"] != "compile"
            else "-"
        )
        ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.2f}x"
        lines.append(f"| {row['label']} | {ours} | {theirs} | {ratio} | {gflop} | {frac} |")
    lines += [
        "",
        "Ratio: official time / ours (above 1: ours is faster). FLOPs: matmuls only; ours and "
        "DreamerV3's from the same jaxpr walk (`agents.bench.matmul_flops`, scan bodies times "
        "their trip count), TD-MPC2's from torch's `FlopCounterMode`. The official TD-MPC2 "
        "evaluates all 5 Q heads of the 5M model and picks 2; ours evaluates 2 (the 1M model has "
        "2). TD-MPC2's official figure is the faster of 1 and 2 PyTorch threads, both timed in "
        "the same turns (OpenMP at 2 threads suffers badly when other processes share the "
        "cores). Notes:",
        "",
    ]
    lines += [f"- {n}" for n in r.get("notes", [])]
    lines += [
        "",
        "Reproduce: `python benchmarks/official.py --tdmpc2-src SRC/tdmpc2 --dreamerv3-src "
        "SRC/dreamerv3` (see its `--help` for the pinned commits).",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The official side: a harness subprocess per implementation.


class Official:
    """A long-lived harness process in the official code's venv, answering JSON lines."""

    def __init__(self, name: str, python: str, src: Path, log, allocator: str = "tuned"):
        self.logfile = Path(python).parent.parent / "harness.log"  # in its venv, outside the repo
        script = HARNESS / f"{name}_harness.py"
        env = dict(os.environ, WM_HOST_ALLOCATOR=allocator)  # protocol.setup_malloc reads it
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        env.pop("PYTHONPATH", None)
        env.setdefault("OMP_NUM_THREADS", "2")
        self.name, self.log = name, log
        self.proc = subprocess.Popen(
            [python, str(script), "--src", str(src)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.logfile, "a"),
            text=True,
            env=env,
        )

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} harness exited (its stderr: {self.logfile})")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError(answer["error"])
        return answer

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def official_request(w: dict) -> dict:
    if w["agent"] == "tdmpc2":
        return {
            "workload": w["name"],
            "kind": w["kind"],
            "model_size": TDMPC2_SIZES[w["size"]],
            "obs_size": OBS_SIZE,
            "action_size": ACTION_SIZE,
            "episode_length": EPISODE_LENGTH,
        }
    return {
        "workload": w["name"],
        "kind": w["kind"],
        "size": w["size"],
        "obs_size": OBS_SIZE,
        "action_size": ACTION_SIZE,
        "batch": list(BATCH),
        "starts": STARTS,
        "horizon": HORIZON,
    }


# ---------------------------------------------------------------------------------------------
# Our side, in this process.


def build_ours(w: dict):
    """`(call, info)`: `call()` runs the workload once to completion; `info` has flops etc."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    from throughput import OFFICIAL, dreamer_config

    from agents.bench import _observations, _sequence_batch, compiled_flops
    from agents.dreamer import make_dreamer, make_imagination
    from agents.envs import make_env
    from agents.tdmpc2 import TDMPC2Config, make_tdmpc2
    from worldmodels.rssm import RSSMState

    _, spec = make_env("hopper")
    assert (spec.obs_size, spec.action_size) == (OBS_SIZE, ACTION_SIZE), spec
    if w["agent"] == "tdmpc2":
        agent = make_tdmpc2(TDMPC2Config(model=OFFICIAL[w["size"]]), spec)
        state = agent.init(jax.random.key(0))
        if w["kind"] == "plan":
            carry = agent.initial_carry(state, 1)
            obs = _observations(spec, (1,), jax.random.key(1))
            fn = jax.jit(lambda s, c, o, f, k: agent.act(s, c, o, f, k))
            args = (state, carry, obs, jnp.zeros(1, bool), jax.random.key(2))
        else:
            data = _sequence_batch(agent, state, spec, agent.data.seq_len, agent.data.batch_size)
            fn, args = jax.jit(agent.update), (state, data, jax.random.key(3))
    else:
        b, t = BATCH
        cfg = dataclasses.replace(dreamer_config(w["size"]), batch_size=b, batch_length=t)
        agent = make_dreamer(cfg, spec)
        state = agent.init(jax.random.key(0))
        if w["kind"] == "imagine":
            m = cfg.model
            k = jax.random.split(jax.random.key(4), 2)
            start = RSSMState(
                deter=jnp.tanh(jax.random.normal(k[0], (STARTS, m.deter))),
                stoch=jax.nn.one_hot(
                    jax.random.randint(k[1], (STARTS, m.groups), 0, m.classes), m.classes
                ),
            )
            fn = jax.jit(make_imagination(dataclasses.replace(cfg, horizon=HORIZON), spec))
            args = (state, start, jax.random.key(5))
        else:
            data = _sequence_batch(agent, state, spec, t, b)
            fn, args = jax.jit(agent.update), (state, data, jax.random.key(3))
    flops, xla, compile_s, compiled = compiled_flops(fn, *args)

    def call():
        jax.block_until_ready(compiled(*args))

    call()  # warm-up
    return call, {"flops": flops, "xla_cost_flops": xla, "compile_s": round(compile_s, 3)}


def probe_compile(size: str) -> None:
    """`--probe-compile SIZE`: our Dreamer train-step compile seconds, printed as JSON (run in a
    fresh process by `compile_turns`)."""
    from agents.hostmem import tune_host_allocator

    if wants_tuned_allocator("dreamerv3"):
        tune_host_allocator()
    import dataclasses

    import jax
    from throughput import dreamer_config

    from agents.bench import _sequence_batch
    from agents.dreamer import make_dreamer
    from agents.envs import make_env

    assert not jax.config.jax_compilation_cache_dir, "a persistent compilation cache is set"
    _, spec = make_env("hopper")
    b, t = BATCH
    cfg = dataclasses.replace(dreamer_config(size), batch_size=b, batch_length=t)
    agent = make_dreamer(cfg, spec)
    state = agent.init(jax.random.key(0))
    data = _sequence_batch(agent, state, spec, t, b)
    start = time.perf_counter()
    jax.jit(agent.update).lower(state, data, jax.random.key(3)).compile()
    print(json.dumps({"compile_s": time.perf_counter() - start}))


# ---------------------------------------------------------------------------------------------
# Taking turns.


def calls_per_turn(seconds: float, turn_s: float) -> int:
    """How many calls make one turn of about `turn_s` seconds (1 to 10)."""
    return max(1, min(10, round(turn_s / max(seconds, 1e-6))))


def summarise(w: dict, times: list[float], flops: float | None, peak: float) -> dict:
    sec = statistics.median(times)
    out = {"s": round(sec, 4), "ms": round(sec * 1e3, 2), "calls": len(times)}
    out["spread_ms"] = [round(min(times) * 1e3, 2), round(max(times) * 1e3, 2)]
    if w["kind"] == "imagine":
        out["steps_per_s"] = round(STARTS * HORIZON / sec, 1)
    if flops:
        out["gflop"] = round(flops / 1e9, 2)
        out["gflops"] = round(flops / sec / 1e9, 2)
        out["frac_peak"] = round(flops / sec / 1e9 / peak, 4)
    return out


def ratio(w: dict, ours: dict | None, theirs: dict | None) -> float | None:
    if not ours or not theirs:
        return None
    return round(theirs["s"] / ours["s"], 3)


def label(w: dict) -> str:
    if w["agent"] == "tdmpc2":
        what = {"plan": "plan (1 env)", "update": "update (batch 256)"}[w["kind"]]
        return f"TD-MPC2 {w['size']} {what}"
    what = {
        "imagine": f"imagination {STARTS} x H{HORIZON}",
        "train": f"train step {BATCH[0]} x {BATCH[1]}",
        "compile": "train-step compile (fresh process)",
    }[w["kind"]]
    return f"DreamerV3 {w['size']} {what}"


def official_variants(w: dict) -> dict[str, dict]:
    """The official settings timed in each turn: `{"official": run-request extras, ...}`.

    TD-MPC2 (PyTorch's OpenMP pool) is timed at 2 threads, as ours, and at 1 thread in the same
    turns: with other processes on the 2 cores, an OpenMP barrier waits for a descheduled thread
    and the 2-thread plan ran 5-15x slower than the 1-thread one (measured while writing this);
    the ratio is taken against the faster of the two, so a busy machine cannot flatter ours.
    """
    if w["agent"] == "tdmpc2":
        return {"official": {"threads": 2}, "official_1thread": {"threads": 1}}
    return {"official": {}}


def timed_turns(w, ours_call, official: Official, rounds: int, turn_s: float, log):
    """Alternate ours and theirs (each of `official_variants`) `rounds` times; every call's
    seconds, per side."""
    variants = official_variants(w)
    t = time.perf_counter()
    ours_call()
    n = {"ours": calls_per_turn(time.perf_counter() - t, turn_s)}
    for name, extra in variants.items():
        first = official.ask(cmd="run", workload=w["name"], n=1, **extra)["times"][0]
        n[name] = calls_per_turn(first, turn_s)
    times = {side: [] for side in n}
    times["rounds"] = []
    for i in range(rounds):
        mine = []
        for _ in range(n["ours"]):
            t = time.perf_counter()
            ours_call()
            mine.append(time.perf_counter() - t)
        turn = {"ours": mine}
        for name, extra in variants.items():
            turn[name] = official.ask(cmd="run", workload=w["name"], n=n[name], **extra)["times"]
        for side, ts in turn.items():
            times[side] += ts
        medians = {f"{side}_ms": round(statistics.median(ts) * 1e3, 2) for side, ts in turn.items()}
        times["rounds"].append(medians)
        log(f"  round {i + 1}/{rounds}: " + ", ".join(f"{k} {v}" for k, v in medians.items()))
    return times


def compile_turns(w, official_python: str, src: Path, rounds: int, log) -> dict:
    """Fresh processes, taking turns: ours (`--probe-compile`), then the official harness."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    allocator = "tuned" if wants_tuned_allocator("dreamerv3") else "default"
    ours, theirs = [], []
    for i in range(rounds):
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--probe-compile", w["size"]],
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE.parent,
        )
        if out.returncode != 0:
            raise RuntimeError(f"our compile probe failed: {out.stderr[-2000:]}")
        ours.append(json.loads(out.stdout.strip().splitlines()[-1])["compile_s"])
        h = Official("dreamerv3", official_python, src, log, allocator)
        try:
            theirs.append(h.ask(cmd="build", **official_request(w), flops=False)["compile_s"])
        finally:
            h.close()
        log(f"  round {i + 1}/{rounds}: ours {ours[-1]:.1f} s, official {theirs[-1]:.1f} s")
    return {"ours": ours, "official": theirs}


def select(args) -> list[dict]:
    """The workloads `--quick`, `--only` and `--workloads` leave, in the order run."""
    selected = [w for w in workloads(args.quick) if args.only in (None, w["agent"])]
    if args.workloads:
        keep = set(args.workloads.split(","))
        selected = [w for w in selected if w["name"] in keep]
    return selected


def run_per_agent(argv: list[str], agents: list[str], log) -> dict:
    """Each implementation's rows in a child process of its own (the host allocator is set once
    per process, and `wm` sets it per agent), merged into one results dict."""
    import tempfile

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for agent in agents:
            stem = Path(tmp) / agent
            log(f"--- {agent}: its own process")
            cmd = [sys.executable, __file__, *argv, "--only", agent, "--out", str(stem)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            parts.append(json.loads(stem.with_suffix(".json").read_text()))
    return merge_results(parts)


def merge_results(parts: list[dict]) -> dict:
    """One results dict from per-implementation runs (`run_per_agent`): rows in run order, each
    official block from the run that measured it, the higher matmul peak, each run's allocator."""
    first, last = parts[0], parts[-1]
    out = dict(first)
    out["rows"] = [row for p in parts for row in p["rows"]]
    out["official"] = dict(first["official"])
    for p in parts[1:]:
        for name, info in p["official"].items():
            if len(info) > len(out["official"].get(name, {})):  # the measured one says more
                out["official"][name] = info
    out["notes"] = list(dict.fromkeys(n for p in parts for n in p.get("notes", [])))
    out["peak_gflops"] = max(p["peak_gflops"] for p in parts)
    out["peak_end_gflops"] = last["peak_end_gflops"]
    out["load_after"] = last["load_after"]
    out["ours"] = dict(first["ours"])
    out["ours"]["allocator"] = {
        row["agent"]: p["ours"]["allocator"] for p in parts for row in p["rows"]
    }
    out["peaks_per_process"] = {p["rows"][0]["agent"]: p["peak_gflops"] for p in parts if p["rows"]}
    return out


def run(args, log) -> dict:
    from agents.hostmem import host_allocator, tune_host_allocator

    selected = select(args)
    if selected and all(wants_tuned_allocator(w["agent"]) for w in selected):
        tune_host_allocator()  # before JAX's first computation
    import jax

    from agents.bench import matmul_peak

    machine = cpu_info()
    cache = Path(args.cache_dir).expanduser()
    srcs = {"tdmpc2": args.tdmpc2_src, "dreamerv3": args.dreamerv3_src}
    notes = [
        "TD-MPC2 official on the CPU: built under a mode that sends its hard-coded `cuda:0` to "
        "the CPU, Adam `capturable=False` (CUDA-graph option, fails on the CPU), `compile: false` "
        "(its default torch.compile mode is CUDA graphs): eager PyTorch.",
        "DreamerV3 official: `jax.compute_dtype: float32` (default bfloat16), `jax.platform: cpu`; "
        "its train step timed through `agent.train` until its parameters are ready.",
    ]
    official_info, harnesses, pythons = {}, {}, {}
    for name in ("tdmpc2", "dreamerv3"):
        official_info[name] = dict(PINNED[name], src=str(srcs[name]) if srcs[name] else None)
        if not any(w["agent"] == name for w in selected):
            continue
        why = None
        if srcs[name] is None:
            why = f"--{name}-src not given"
        else:
            head = _git_head(Path(srcs[name]))
            official_info[name]["checked_out"] = head
            if head and head != PINNED[name]["commit"]:
                notes.append(
                    f"{name}: the source is at {head[:10]}, "
                    f"not the pinned {PINNED[name]['commit'][:10]}"
                )
            try:
                env = official_envs.ensure(name, cache, log)
                pythons[name] = env["python"]
                official_info[name]["env"] = {
                    "pins": env["pins"],
                    "freeze": env["freeze"],
                    "notes": env.get("notes", []),
                }
                notes += [f"{name} env: {n}" for n in env.get("notes", [])]
                harnesses[name] = Official(
                    name, env["python"], Path(srcs[name]).resolve(), log, host_allocator()
                )
                official_info[name].update(harnesses[name].ask(cmd="info"))
            except Exception as e:  # noqa: BLE001 - recorded as not measured
                why = f"{type(e).__name__}: {e}"
        if why:
            official_info[name]["error"] = why
            log(f"{name}: not measured ({why})")

    load_before = [round(x, 2) for x in os.getloadavg()]
    peak_start = matmul_peak(repeats=10)
    log(
        f"machine: {machine['model_name']} ({machine['vendor']} family {machine['family']} model "
        f"{machine['model']}), matmul peak {peak_start:.1f} GFLOP/s"
    )
    rows = []
    for w in selected:
        row = {
            "name": w["name"],
            "label": label(w),
            "agent": w["agent"],
            "size": w["size"],
            "kind": w["kind"],
        }
        rows.append(row)
        if w["agent"] not in harnesses:
            row["not_measured"] = official_info[w["agent"]].get("error", "not selected")
            continue
        log(f"{row['label']}")
        try:
            if w["kind"] == "compile":
                t = compile_turns(
                    w,
                    pythons[w["agent"]],
                    Path(srcs[w["agent"]]).resolve(),
                    args.compile_rounds,
                    log,
                )
                row["ours"] = {
                    "s": round(statistics.median(t["ours"]), 2),
                    "all_s": [round(x, 2) for x in t["ours"]],
                }
                row["official"] = {
                    "s": round(statistics.median(t["official"]), 2),
                    "all_s": [round(x, 2) for x in t["official"]],
                }
                row["ratio"] = ratio(w, row["ours"], row["official"])
                continue
            official = harnesses[w["agent"]]
            info_theirs = official.ask(cmd="build", **official_request(w))
            ours_call, info_ours = build_ours(w)
            t = timed_turns(w, ours_call, official, args.rounds, args.turn_s, log)
            row["ours"] = summarise(w, t["ours"], info_ours["flops"], peak_start)
            sides = [k for k in t if k.startswith("official")]
            for side in sides:
                row[side] = summarise(w, t[side], info_theirs.get("flops"), peak_start)
                row[side]["threads"] = official_variants(w)[side].get("threads")
            if len(sides) > 1:  # the faster official setting is the one compared
                row["official_2thread"] = row["official"]
                row["official"] = dict(min((row[s] for s in sides), key=lambda r: r["s"]))
            row["rounds"] = t["rounds"]
            row["ours"].update(
                compile_s=info_ours["compile_s"],
                xla_cost_gflop=round(info_ours["xla_cost_flops"] / 1e9, 2),
            )
            row["official"].update({k: v for k, v in info_theirs.items() if k not in ("flops",)})
            row["ratio"] = ratio(w, row["ours"], row["official"])
            official.ask(cmd="release", workload=w["name"])
            del ours_call
            jax.clear_caches()
            gc.collect()
        except Exception as e:  # noqa: BLE001 - recorded as not measured
            row["not_measured"] = f"{type(e).__name__}: {str(e)[:300]}"
            log(f"  not measured: {row['not_measured']}")
    peak_end = matmul_peak(repeats=10)
    peak = max(peak_start, peak_end)
    for row in rows:  # fractions against the higher of the two peak measurements
        for side in [k for k in row if k == "ours" or k.startswith("official")]:
            s = row.get(side)
            if s and "gflops" in s:
                s["frac_peak"] = round(s["gflops"] / peak, 4)
    for h in harnesses.values():
        h.close()
    return {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "peak_gflops": round(peak, 1),
        "peak_start_gflops": round(peak_start, 1),
        "peak_end_gflops": round(peak_end, 1),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": args.rounds,
        "turn_s": args.turn_s,
        "quick": args.quick,
        "ours": {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "allocator": host_allocator(),
        },
        "official": official_info,
        "shapes": {
            "obs": OBS_SIZE,
            "action": ACTION_SIZE,
            "starts": STARTS,
            "horizon": HORIZON,
            "batch": list(BATCH),
        },
        "rows": rows,
        "notes": notes,
    }


def _git_head(src: Path) -> str | None:
    out = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or None if out.returncode == 0 else None


def parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(
        description=doc[0],
        epilog="\n\n".join(doc[2:4]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--tdmpc2-src",
        type=Path,
        help=f"checkout of {PINNED['tdmpc2']['repo']} at {PINNED['tdmpc2']['commit']}",
    )
    p.add_argument(
        "--dreamerv3-src",
        type=Path,
        help=f"checkout of {PINNED['dreamerv3']['repo']} at {PINNED['dreamerv3']['commit']}",
    )
    p.add_argument(
        "--cache-dir",
        default="~/.cache/worldmodels-official",
        help="where the official venvs are built (once)",
    )
    p.add_argument("--rounds", type=int, default=7, help="turns per side per workload (default 7)")
    p.add_argument(
        "--turn-s", type=float, default=1.5, help="about how long one turn runs (default 1.5 s)"
    )
    p.add_argument(
        "--compile-rounds", type=int, default=3, help="fresh-process compiles per side (default 3)"
    )
    p.add_argument(
        "--quick", action="store_true", help="1M / size1m rows only, 5 rounds, 2 compiles"
    )
    p.add_argument("--only", choices=("tdmpc2", "dreamerv3"), help="one implementation's rows")
    p.add_argument("--workloads", help="comma-separated row names (e.g. tdmpc2_1M_plan)")
    p.add_argument(
        "--out", type=Path, help="results stem (default benchmarks/results/official_<machine>)"
    )
    p.add_argument("--setup-only", action="store_true", help="build the venvs and exit")
    p.add_argument("--probe-compile", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.probe_compile:
        probe_compile(args.probe_compile)
        return
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.setup_only:
        for name in ("tdmpc2", "dreamerv3"):
            print(
                json.dumps(
                    {
                        k: v
                        for k, v in official_envs.ensure(
                            name, Path(args.cache_dir).expanduser(), log
                        ).items()
                        if k != "freeze"
                    }
                )
            )
        return
    if args.quick:
        args.rounds = min(args.rounds, 5)
        args.compile_rounds = min(args.compile_rounds, 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    agents = list(dict.fromkeys(w["agent"] for w in select(args)))
    if args.only is None and len(agents) > 1:
        result = run_per_agent(sys.argv[1:], agents, log)
    else:
        result = run(args, log)
    stem = args.out or RESULTS / machine_stem(result["machine"])
    if args.quick and not args.out:
        stem = stem.with_name(stem.name + "_quick")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
