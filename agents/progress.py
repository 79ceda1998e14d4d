"""The progress bar of a run: what it is doing now, one rate, and an ETA from training alone.

    compiling train chunk…: 27%|███▍     | 8000/30000 env steps [01:12, 410 env steps/s, ETA 00:54]

The description names the phase while it lasts (`compiling train chunk…`, `prefill (random
actions)…`, `evaluating…`), and a ticker redraws the bar every second so the elapsed time keeps
moving through a compile or a long chunk. The one rate is env steps/s of training chunks that
compiled nothing (their evaluations included), and the ETA is the steps left at that rate: the
random-action prefill, which runs many times faster than training, and compiles count in neither.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from tqdm import tqdm

BAR_FORMAT = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} env steps [{elapsed}{postfix}]"


class Progress:
    """A tqdm bar over `total` env steps, starting at `initial` (a resumed run); `file` defaults
    to stderr. Disabled, every method does nothing visible."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, file=None):
        self.total, self.eval = total, None
        self.steps, self.seconds = 0, 0.0  # of the chunks that set the rate
        self.bar = tqdm(
            total=total,
            initial=min(initial, total),
            disable=not enabled,
            file=file if file is not None else sys.stderr,
            dynamic_ncols=True,
            bar_format=BAR_FORMAT,
        )
        self._stop = threading.Event()
        self._ticker = None
        if enabled:
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="wm-progress")
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    @contextlib.contextmanager
    def phase(self, what: str):
        """While the block runs, the description says `what` (e.g. "compiling train chunk")."""
        self.bar.set_description(f"{what}…" if what else "")
        try:
            yield
        finally:
            self.bar.set_description("", refresh=False)

    def advance(self, steps: int, seconds: float, *, rate: bool, eval_return=None) -> None:
        """`steps` more env steps done in `seconds`; `rate`: they count toward the rate and ETA
        (a training chunk that compiled nothing)."""
        self.bar.update(max(0, min(steps, self.total - self.bar.n)))
        if rate:
            self.steps, self.seconds = self.steps + steps, self.seconds + seconds
        if eval_return is not None:
            self.eval = eval_return
        self.bar.set_postfix_str(self.postfix(), refresh=True)

    def postfix(self) -> str:
        parts = []
        if self.steps and self.seconds > 0:
            sps = self.steps / self.seconds
            left = max(0, self.total - self.bar.n) / sps
            parts += [f"{sps:,.0f} env steps/s", f"ETA {tqdm.format_interval(left)}"]
        if self.eval is not None:
            parts.append(f"eval {self.eval:.0f}")
        return ", ".join(parts)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.bar.close()
