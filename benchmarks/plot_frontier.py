"""Draw the frontier benchmark's table: SWD to the reference against gradient SSIM.

    python benchmarks/benchmark.py frontier --csv docs/frontier.csv
    python benchmarks/plot_frontier.py docs/frontier.csv docs/frontier.png [--title TEXT]

Each method is a curve over its strengths (the last point labelled with its strength); the
network (``analogy``) is drawn larger. A developer tool: matplotlib, outside the package.
"""

import argparse
import csv
from pathlib import Path


def read_table(path: Path) -> dict[str, list[tuple[float, float, float]]]:
    """``{method: [(strength, swd, gradient_ssim), ...]}`` in file order."""
    table: dict[str, list[tuple[float, float, float]]] = {}
    with open(path, newline="") as stream:
        for row in csv.DictReader(stream):
            table.setdefault(row["method"], []).append(
                (float(row["strength"]), float(row["swd"]), float(row["gradient_ssim"]))
            )
    return table


def plot(table: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for method, rows in table.items():
        network = method.startswith("analogy")
        structure = [row[2] for row in rows]
        distance = [row[1] for row in rows]
        axes.plot(structure, distance, "*-" if network else "o-", markersize=13 if network else 5,
                  linewidth=2.5 if network else 1.2, label=f"network ({method})" if network else method)
        strength, swd, ssim = rows[-1]
        axes.annotate(f"{strength:g}", (ssim, swd), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel("gradient SSIM to the source (structure kept) →")
    axes.set_ylabel("SWD to the reference, Lab (← closer)")
    axes.set_title(f"{title}\n(each curve: strengths 0.25 to 1; the last point labelled)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="CSV written by `histocolor.benchmark frontier --csv`")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--title", default="Colour distance against structure kept")
    arguments = parser.parse_args(argv)
    plot(read_table(arguments.table), arguments.out, arguments.title)


if __name__ == "__main__":
    main()
