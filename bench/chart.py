"""The benchmark's chart, drawn from the Markdown tables `bench/run.py` prints: every figure as
its ratio to hello-world (and the peer's figures to the peer), each with its target.

    .venv/bin/python bench/run.py > run.md       # run.py draws it too (--chart)
    .venv/bin/python bench/chart.py run.md bench/bench.png

Needs matplotlib (`pip install -e .[bench]`).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TARGET = re.compile(r">= ([\d.]+) x (hello|the peer)")
RATIO = re.compile(r"^([\d.]+)")


@dataclass(frozen=True)
class Bar:
    label: str
    ratio: float
    target: float | None


def bars(text: str) -> tuple[list[Bar], list[Bar]]:
    """(figures x hello-world, figures x the peer), from the tables in `text`."""
    against_hello: list[Bar] = []
    against_peer: list[Bar] = []
    for header, rows in _tables(text):
        names = [cell.strip() for cell in header.strip("|").split("|")]
        hello = _column(names, ("x hello", "x hello-world", "x hello-world (median, spread)"))
        peer = _column(names, ("x Apache + mod_oauth2, same kind",))
        target = _column(names, ("target",))
        for row in rows:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            label = cells[0] if names[0] == "scenario" else f"{names[0]}: {cells[0]}"
            wanted = TARGET.search(cells[target]) if target is not None else None
            if label.startswith("hello world (bare") and any(
                    bar.label == label for bar in against_hello):
                continue  # each scenario's baseline: once is enough
            if hello is not None and (ratio := _number(cells[hello])) is not None:
                against_hello.append(Bar(label, ratio, float(wanted.group(1))
                                         if wanted and wanted.group(2) == "hello" else None))
            if peer is not None and (ratio := _number(cells[peer])) is not None:
                against_peer.append(Bar(label, ratio, float(wanted.group(1))
                                        if wanted and wanted.group(2) == "the peer" else None))
    return against_hello, against_peer


def draw(text: str, path: Path) -> bool:
    """The chart of the tables in `text` as a PNG at `path`; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    hello, peer = bars(text)
    if not hello:
        return False
    panels = [(hello, "x a bare Tornado hello-world (same rounds)")]
    if peer:
        panels.append((peer, "x Apache httpd + mod_oauth2, the same kind of load"))
    heights = [len(items) for items, _ in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 0.32 * sum(heights) + 2.5),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for (items, xlabel), (ax,) in zip(panels, axes, strict=True):
        colors = ["#1a73e8" if bar.target is None or bar.ratio >= bar.target else "#c5221f"
                  for bar in items]
        ax.barh(range(len(items)), [bar.ratio for bar in items], color=colors)
        ax.set_yticks(range(len(items)), [bar.label for bar in items])
        for position, bar in enumerate(items):
            if bar.target is not None:
                ax.plot([bar.target, bar.target], [position - 0.45, position + 0.45],
                        color="black", linewidth=2)
        ax.axvline(1.0, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"{xlabel}; black tick: the target (red bar: below it)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    figure.suptitle(f"oauth-gateway benchmark {time.strftime('%Y-%m-%d')}: every figure "
                    "against its target")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _tables(text: str) -> list[tuple[str, list[str]]]:
    found, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|") and index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(row)
            found.append((line, rows))
    return found


def _column(names: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((index for index, name in enumerate(names) if name in wanted), None)


def _number(cell: str) -> float | None:
    match = RATIO.match(cell)
    return float(match.group(1)) if match else None


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    if not draw(Path(sys.argv[1]).read_text(), Path(sys.argv[2])):
        print("chart: matplotlib missing, or no table with a ratio to hello-world",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
