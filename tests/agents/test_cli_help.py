"""`wm --help` for every command: each flag has a description, each command only its own flags,
and errors point at the help of the command used."""

import re

import pytest

from agents.cli import main
from agents.config import AGENT_CONFIGS

COMMANDS = [["train"], ["eval"], ["bench"]] + [
    [cmd, agent.name] for cmd in ("train", "bench") for agent in AGENT_CONFIGS
]
# What tyro adds to a flag's own text.
_TYRO_NOTES = re.compile(r"\((default|required|fixed|sets)\b[^)]*\)")


def _help(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def flag_help(text: str) -> dict[str, str]:
    """`--flag: its help text` of one `--help` page (plain or boxed layout): a flag's line starts
    with it, its description follows on that line or on the lines indented below it."""
    flags, current, indent = {}, None, 0
    for line in text.splitlines():
        line = line.removeprefix("│").rstrip().removesuffix("│").rstrip()
        body = line.lstrip(" ")
        m = re.match(r"^(-[a-zA-Z]|--[a-z][-\w.]*)(?:, -[-\w.]+)*(?: \S+)?(?: {2,}(.*))?$", body)
        if m:
            current, indent = m.group(1), len(line) - len(body)
            flags[current] = (m.group(2) or "").strip()
        elif current and body and len(line) - len(body) > indent + 1:
            flags[current] = f"{flags[current]} {body}".strip()
        else:
            current = None
    return flags


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_flag_has_a_description(capsys, monkeypatch, argv):
    """Issue 16.6: two dozen agent flags showed only their default."""
    monkeypatch.setenv("COLUMNS", "100")
    flags = flag_help(_help(capsys, argv))
    assert len(flags) > (2 if argv == ["eval"] else 20)  # the page was read
    bare = [f for f, text in flags.items() if not _TYRO_NOTES.sub("", text).strip(" .")]
    assert bare == [], f"wm {' '.join(argv)}: flags without a description: {bare}"


def test_the_help_walker_sees_a_flag_without_one():
    page = (
        "  --a INT   the a. (default: 1)\n  --b INT   (default: 2)\n options\n  --c STR\n"
        "      the c.\n the next section\n"
    )
    assert flag_help(page) == {"--a": "the a. (default: 1)", "--b": "(default: 2)", "--c": "the c."}


def test_bench_shows_only_the_flags_it_reads(capsys):
    run_only = ("--steps", "--eval-every", "--eval-episodes", "--checkpoint-every")
    bench, train = (flag_help(_help(capsys, [cmd])) for cmd in ("bench", "train"))
    assert all(f in train for f in run_only) and not any(f in bench for f in run_only)
    assert "--repeats" in bench and "--num-envs" in bench and "--repeats" not in train


def test_agent_boxes_do_not_call_the_cpu_preset_official(capsys):
    """Issue 16.6: `wm train --help` titled the CPU preset's model flags "the official 5M
    config"."""
    for argv in (["train"], ["train", "dreamer"]):
        text = _help(capsys, argv)
        assert "5M" not in text and "defaults are" not in text


def test_errors_point_at_the_help_of_the_command_used(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "dreamer", "--planner.num-samples", "8"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "wm train tdmpc2 --help" in err
    assert "in wm tdmpc2" not in err and "wm --help" not in err
    with pytest.raises(SystemExit):
        main(["bench", "--stepz", "8"])
    err = capsys.readouterr().err
    assert "wm bench --help" in err and "wm --help" not in err
