"""What the learned part adds: held-out validation L1 of a model and of its alignment alone.

A developer tool (training/README.md has the results):

    .venv/bin/python benchmarks/ctn_gain.py training/paper/sees-source-weights \\
        --recipe training/paper/sliced-fine-tune.json --items 96

The triplets are those `histocolor train` validates on: the recipe's held-out photos under
its own pair kinds and looks (seed = the recipe's seed + 1). "Alignment alone" is the same
model with the CTN's residual heads at zero.
"""

import argparse

import torch

from histocolor.training.data.photos import PhotoFolderDataset, list_photos
from histocolor.model import HistogramAnalogy
from histocolor.training.train import TrainConfig, validate

RECIPE_FIELDS = ("crop", "identical_rate", "same_grade_rate", "same_photo_rate", "natural_source_rate",
                 "strong_style_rate", "region_rate", "unpaired_region_rate", "reference_flip_rate", "unpaired_rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("--recipe", required=True, help="a training config (its held-out photos and recipe)")
    parser.add_argument("--data", nargs="+", default=["../shared/data/photos", "../shared/data/dpst-dev/input"])
    parser.add_argument("--items", type=int, default=96)
    arguments = parser.parse_args()
    config = TrainConfig.from_file(arguments.recipe)
    held_out = [p for p in list_photos(arguments.data) if p.name in set(config.holdout)]
    recipe = {name: getattr(config, name) for name in RECIPE_FIELDS}
    dataset = PhotoFolderDataset(None, seed=config.seed + 1, photos=held_out, length=10**9, **recipe)
    triplets = [dataset[i] for i in range(arguments.items)]
    regions = [t for t in triplets if t.source_regions is not None]
    model = HistogramAnalogy.from_pretrained(arguments.weights)
    device = torch.device("cpu")
    rows = {"model": (validate(model, triplets, device), validate(model, regions, device))}
    with torch.no_grad():
        for head in model.ctn.heads:
            head.weight.zero_()
            head.bias.zero_()
    rows["alignment alone"] = (validate(model, triplets, device), validate(model, regions, device))
    print(f"| | all {len(triplets)} triplets | {len(regions)} region triplets |\n| --- | --- | --- |")
    print(f"| doing nothing | {rows['model'][0]['identity_l1']:.2f} | {rows['model'][1]['identity_l1']:.2f} |")
    for name, (every, by_region) in rows.items():
        print(f"| {name} | {every['validation_l1']:.3f} | {by_region['validation_l1']:.3f} |")


if __name__ == "__main__":
    main()
