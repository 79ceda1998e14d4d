"""`benchmarks/table.py` and the anchors it reads: counted as the anchors count, and the README's
learning table is what the committed results files say (no training here)."""

import json
import re

import pytest
from _bench import BENCHMARKS, load_benchmark

table = load_benchmark("learning_table", BENCHMARKS / "table.py")
ANCHORS = json.loads(table.ANCHORS.read_text())


def test_the_readme_table_is_generated_from_the_committed_results():
    """`python benchmarks/table.py --readme` leaves the README as it is: no figure in its learning
    table that a results file does not hold."""
    text = table.README.read_text()
    block = table.readme_block(table.build())
    assert block in text, "README's table is stale: run python benchmarks/table.py --readme"


def test_the_official_tdmpc2_rows_sit_at_their_true_env_steps():
    """The CSV's step already counts the action repeat (tdmpc2 issue #45): its 100k row (519 on
    cheetah-run, 962 on walker-walk) is at 100k env steps, not 200k."""
    official = ANCHORS["tdmpc2"]
    assert "issue #45" in " ".join(official["step_counting_source"])
    assert official["action_repeat"] == 2
    expected = {"cheetah-run": 519, "walker-walk": 962, "walker-run": 723, "cartpole-swingup": 839}
    for task, mean in expected.items():
        row = official["returns"][task]["100000"]
        assert round(row["mean"]) == mean
        assert row["mean"] == pytest.approx(sum(row["seeds"]) / len(row["seeds"]), abs=0.06)
    for name, anchor in ANCHORS.items():
        if name.startswith("_"):
            continue
        for key in ("source", "step_counting", "step_counting_source", "eval_protocol"):
            assert anchor.get(key), f"anchor {name} has no {key}"


def _result(task, env_steps_means, seeds=3):
    by_step = [
        dict(env_steps=s, wall_s=1.0, mean=m, ci_lo=m - 10, ci_hi=m + 10, lo=m - 20, hi=m + 20)
        for s, m in env_steps_means
    ]
    return {
        "task": task, "agent": "tdmpc2", "file": f"learning_tdmpc2_{task}.json", "commit": "abc",
        "by_step": by_step, "eval_protocol": {"episodes": 10}, "overrides": {},
        "seeds": {str(i): {"last3_mean": 500.0} for i in range(seeds)},
    }  # fmt: skip


def test_a_row_compares_only_at_exactly_the_anchors_env_steps():
    r = _result("dmc:cheetah-run", [(90_000, 480.0), (100_000, 510.0)])
    row = table.row_of(r, ANCHORS, 100_000)
    assert row["env_steps"] == 100_000
    assert row["anchors"]["tdmpc2"]["mean"] == pytest.approx(519.1)
    assert "below by 9 (inside our CI)" == table.verdict(row, "tdmpc2")
    # a run that stopped at 90k is compared at 90k, where no anchor has a row
    short = table.row_of(_result("dmc:cheetah-run", [(90_000, 480.0)]), ANCHORS, 100_000)
    assert short["env_steps"] == 90_000 and short["anchors"] == {}
    # a Brax task has no DMC anchor
    assert table.row_of(_result("hopper", [(100_000, 900.0)]), ANCHORS, 100_000)["anchors"] == {}


def test_dreamer_anchor_is_used_only_where_its_x_is_the_step():
    at_500k = table.anchor_at(ANCHORS, "dmc:cheetah-run", 500_000)
    assert "tdmpc2" in at_500k and "dreamerv3" not in at_500k  # its "500k" is x = 490000
    assert "dreamerv3" in table.anchor_at(ANCHORS, "dmc:cheetah-run", 100_000)


def test_no_dmc_comparison_in_the_docs_reads_the_official_100k_as_200k():
    """The 2x error of issue 27, in the words it was written in: gone from the README and the
    results notes; in HISTORY.md (a dated log) each such line is followed by its correction."""
    pattern = re.compile(
        r"their step 100k at action repeat 2|its step 100k\)? is 200k|step 100k = our 200k"
    )
    for path in [table.README, *sorted(table.RESULTS.glob("*.md"))]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not pattern.search(line):
                continue
            near = " ".join(lines[i : i + 12])
            assert path.name == "HISTORY.md" and "Corrected 2026-12-08" in near, (
                f"{path.name}:{i + 1}: {line}"
            )
