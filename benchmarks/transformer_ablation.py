"""The transformer ablation (issue 13): score several weights folders on the same three sets.

A developer tool (docs/BENCHMARKS.md has the results and the exact commands):

    .venv/bin/python benchmarks/transformer_ablation.py --views views/views.csv --demo demo.csv \\
        --out ablation conv=runs/ab-conv transformer=runs/ab-transformer ...

Each NAME=WEIGHTS is evaluated with `histocolor evaluate`'s code on the strong-relevance views
(PSNR, ΔE2000 against the truth), dpst-dev globally and by regions (SWD to the reference,
gradient SSIM to the source, region SWD on the hand masks) and the demo pair (SWD as a share
of the source's, gradient SSIM). ``--alignment-rounds``/``--alignment-samples`` set the
inference alignment of every model alike (the shipped model's: 24 rounds on 16384 pixels).
Then the parameters and CPU seconds per megapixel (the whole transfer and its network stage): medians of
``--repeats`` transfers of the demo pair with the threads torch has, the machine otherwise idle.
"""

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import torch

from histocolor.engine import ColorTransfer
from histocolor.evaluate import evaluate
from histocolor.imageio import read_image
from histocolor.model import from_pretrained


def _inference_copy(weights: Path, out: Path, rounds: int, samples: int) -> Path:
    """The weights with the common inference alignment, in a folder of their own."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy(weights / name, out / name)
    config = json.loads((out / "config.json").read_text())
    if config.get("alignment", {}).get("method") == "sliced":
        config["alignment"].update(iterations=rounds, samples=samples)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def _seconds_per_megapixel(weights: Path, source, reference, repeats: int) -> dict:
    """Medians of the whole transfer and of its network stage (the alignment and the network
    at the working size), per megapixel of the source."""
    engine = ColorTransfer(weights=weights, device="cpu")
    engine(source, reference)  # warm-up
    whole, network = [], []
    for _ in range(repeats):
        clock = time.perf_counter()
        result = engine(source, reference)
        whole.append(time.perf_counter() - clock)
        network.append(result.timings["network"])
    megapixels = source.shape[0] * source.shape[1] / 1e6
    return {"seconds_per_megapixel": statistics.median(whole) / megapixels,
            "network_seconds_per_megapixel": statistics.median(network) / megapixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=WEIGHTS")
    parser.add_argument("--views", required=True, help="the views CSV (python benchmarks/benchmark.py graded-set)")
    parser.add_argument("--dpst", default="../shared/data/dpst-dev")
    parser.add_argument("--demo", required=True, help="a CSV with the demo pair")
    parser.add_argument("--out", required=True)
    parser.add_argument("--alignment-rounds", type=int, default=24)
    parser.add_argument("--alignment-samples", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-timing", action="store_true", help="only the quality scores (e.g. while training)")
    parser.add_argument("--timing-only", action="store_true", help="only parameters and seconds (idle machine)")
    arguments = parser.parse_args()
    out = Path(arguments.out)
    rows = []
    for item in arguments.models:
        name, _, path = item.partition("=")
        weights = _inference_copy(Path(path), out / name / "weights", arguments.alignment_rounds,
                                  arguments.alignment_samples)
        model = from_pretrained(weights)
        row = {"name": name, "parameters": sum(p.numel() for p in model.parameters())}
        if not arguments.timing_only:
            row.update(_quality(weights, arguments, out / name))
        if not arguments.skip_timing:
            demo_pair = (Path(arguments.demo).read_text().splitlines()[1]).split(",")
            source, reference = (read_image(p.strip()).rgb for p in demo_pair[:2])
            row.update(_seconds_per_megapixel(weights, source, reference, arguments.repeats))
        rows.append(row)
        suffix = "-timing" if arguments.timing_only else ""
        (out / f"{name}{suffix}.json").write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


def _quality(weights: Path, arguments, out: Path) -> dict:
    views = evaluate({"views": arguments.views}, ["analogy"], out / "views", weights=weights, device="cpu",
                     overwrite=True)["views"]
    dpst = evaluate({"dpst": arguments.dpst}, ["identity", "analogy", "analogy+regions"], out / "dpst",
                    weights=weights, device="cpu", overwrite=True)["dpst"]
    demo = evaluate({"demo": arguments.demo}, ["identity", "analogy"], out / "demo", weights=weights,
                    device="cpu", overwrite=True)["demo"]
    return {
        "views_psnr": views["analogy"]["psnr"],
        "views_ciede2000": views["analogy"]["ciede2000"],
        "dpst_swd": dpst["analogy"]["swd"],
        "dpst_gradient_ssim": dpst["analogy"]["gradient_ssim"],
        "dpst_region_swd_global": dpst["analogy"]["region_swd"],
        "regions_region_swd": dpst["analogy+regions"]["region_swd"],
        "regions_gradient_ssim": dpst["analogy+regions"]["gradient_ssim"],
        "demo_swd_share": demo["analogy"]["swd"] / demo["identity"]["swd"],
        "demo_gradient_ssim": demo["analogy"]["gradient_ssim"],
    }

if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
