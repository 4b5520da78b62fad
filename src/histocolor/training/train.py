"""The training loop: one device, or several GPUs / nodes under ``torchrun`` (DDP).

Batches are a pure function of the step number (item ``i`` of the dataset is drawn from
``seed`` and ``i``), so a run resumed from its last checkpoint continues exactly where it
stopped. Checkpoints are written whole into a new folder, then named in ``latest`` with an
atomic write: a kill at any moment leaves the previous checkpoint intact.
"""

import contextlib
import copy
import csv
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from histocolor.atomic import atomic_write
from histocolor.color import rgb_to_lab
from histocolor.training.data.fivek import FiveKDataset, MixedDataset
from histocolor.training.data.photos import PhotoFolderDataset, Triplet, collate, list_photos
from histocolor.errors import HistocolorError, first_line
from histocolor.training.losses import LossWeights, transfer_loss
from histocolor.model import AnalogyConfig, HistogramAnalogy, from_pretrained
from histocolor.model.io import WEIGHTS_NAME, grow_state
from histocolor.device import resolve_device


# Documented ranges of the training settings (TrainConfig.__post_init__ checks them).
_INTEGER_RANGES = (
    ("steps", 1, 10_000_000), ("batch_size", 1, 1024), ("crop", 16, 2048), ("seed", 0, 2**63 - 1),
    ("checkpoint_every", 1, 10_000_000), ("log_every", 1, 10_000_000), ("warmup_steps", 0, 10_000_000),
    ("validation_items", 0, 100_000),
)
_RATES = (
    "identical_rate", "same_grade_rate", "same_photo_rate", "natural_source_rate", "strong_style_rate", "region_rate",
    "unpaired_region_rate", "reference_flip_rate", "unpaired_rate", "realistic_style_rate", "flat_source_rate",
    "view_rate",
)
_WEIGHTS = (
    "l1_weight", "deep_supervision_weight", "histogram_weight", "region_swd_weight", "anchor_weight", "swd_weight",
    "gradient_weight", "structure_weight", "alignment_weight",
)
# Checkpoints kept in a run's folder: the newest, and the one before in case it is damaged.
_CHECKPOINTS_KEPT = 2
# Files a run writes into its folder, besides its checkpoint-* folders: a folder holding any holds a run.
_RUN_FILES = ("latest", "log.csv", WEIGHTS_NAME)


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in each checkpoint. Read from JSON with :meth:`from_file`."""

    model: dict = field(default_factory=dict)  # AnalogyConfig fields
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128
    learning_rate: float = 1e-3
    gradient_clip: float = 0.0  # max gradient norm per step; 0 = no clipping
    schedule: str = "constant"  # or "cosine": decays to final_learning_rate over the run
    final_learning_rate: float = 1e-5
    warmup_steps: int = 0  # the rate ramps up linearly over these first steps (attention layers want it)
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    identical_rate: float = 0.17
    same_grade_rate: float = 0.15
    same_photo_rate: float = 0.2
    natural_source_rate: float = 0.0
    strong_style_rate: float = 0.0
    region_rate: float = 0.0
    unpaired_region_rate: float = 0.0
    reference_flip_rate: float = 0.0
    unpaired_rate: float = 0.0
    realistic_style_rate: float = 0.0
    flat_source_rate: float = 0.0
    view_rate: float = 0.0
    l1_weight: float = 1.0
    deep_supervision_weight: float = 0.5
    histogram_weight: float = 0.5
    region_swd_weight: float = 0.0
    anchor_weight: float = 0.0
    swd_weight: float = 0.0
    gradient_weight: float = 0.0
    structure_weight: float = 0.0
    alignment_weight: float = 0.0
    holdout: list = field(default_factory=list)  # photo file names kept out of training
    validation_items: int = 32

    def __post_init__(self):
        """Types and ranges, checked before anything is allocated (a crop of 100000 would ask for 120 GB)."""
        for name, low, high in _INTEGER_RANGES:
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        for name in _RATES + _WEIGHTS + ("learning_rate", "final_learning_rate", "gradient_clip"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")
            if name in _RATES and value > 1:
                raise ValueError(f"{name} is a share of the items: it must be at most 1, got {value!r}")
        if self.learning_rate > 1:  # 0 is allowed: a frozen run checks what a model computes
            raise ValueError(f"learning_rate must be at most 1, got {self.learning_rate!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be constant or cosine, got {self.schedule!r}")
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be an object of model settings, got {self.model!r}")
        if not isinstance(self.holdout, list) or not all(isinstance(name, str) for name in self.holdout):
            raise ValueError(f"holdout must be a list of file names, got {self.holdout!r}")
        if self.warmup_steps >= max(self.steps, 1):
            raise ValueError(f"warmup_steps must be below steps ({self.steps}), got {self.warmup_steps}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "training settings") -> "TrainConfig":
        """Checked settings; any problem is one line naming ``where`` they came from."""
        if not isinstance(data, dict):
            raise HistocolorError(f"invalid {where}: expected an object of settings, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise HistocolorError(f"unknown training settings in {where}: {', '.join(unknown)}")
        try:
            config = cls(**data)
            AnalogyConfig.from_dict(config.model)  # fail early on a bad model section
        except (TypeError, ValueError) as error:
            raise HistocolorError(f"invalid {where}: {first_line(error)}") from None
        return config

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HistocolorError(f"cannot read training config '{path}': {error}") from None
        return cls.from_dict(data, f"training config '{path}'")

    @classmethod
    def fine_tuning(cls, steps: int, learning_rate: float, **changes) -> "TrainConfig":
        """A short run from existing weights, with the shipped default's recipe (pair kinds, looks)."""
        if type(steps) is not int or steps < 1:
            raise HistocolorError(f"steps must be at least 1, got {steps}")
        if not learning_rate > 0:
            raise HistocolorError(f"the learning rate must be positive, got {learning_rate}")
        recipe = {
            "batch_size": 8,
            "schedule": "cosine",
            "final_learning_rate": learning_rate / 100,
            "checkpoint_every": max(10, steps // 10),
            "log_every": max(1, min(10, steps // 20)),
            "same_photo_rate": 0.35,
            "natural_source_rate": 0.35,
            "strong_style_rate": 0.5,
        }
        try:
            return cls(steps=steps, learning_rate=learning_rate, **{**recipe, **changes})
        except ValueError as error:
            raise HistocolorError(str(error)) from None

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based); a pure function of the step, so resumes match.

        A linear warm-up over ``warmup_steps`` (from 1/warmup_steps of the rate) scales the schedule.
        """
        warmup = min((step + 1) / self.warmup_steps, 1.0) if self.warmup_steps else 1.0
        if self.schedule == "constant":
            return warmup * self.learning_rate
        progress = min(step / max(self.steps - 1, 1), 1.0)
        return warmup * (self.final_learning_rate + 0.5 * (self.learning_rate - self.final_learning_rate) * (
            1 + math.cos(math.pi * progress)
        ))

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(
            self.l1_weight, self.deep_supervision_weight, self.histogram_weight, self.region_swd_weight,
            self.anchor_weight, self.swd_weight, self.gradient_weight, self.structure_weight,
            self.alignment_weight,
        )


@dataclass
class Progress:
    """What the callback receives after every step."""

    step: int
    steps: int
    losses: dict
    seconds: float


class _Distributed:
    """Rank and world size; set up by torchrun's environment variables, else a single process."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def anyone(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is True on any (e.g. one rank was asked to stop)."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


# Model settings a fine-tune (``--init``) may change; the others come with the start weights.
FINE_TUNE_CHANGES = ("alignment", "ctn_sees_source", "attention", "attention_window", "relevance")


def _device_for_rank(device: str) -> torch.device:
    resolved = resolve_device(device)
    if resolved.type == "cuda" and "LOCAL_RANK" in os.environ:
        resolved = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(resolved)
    return resolved


# ------------------------------------------------------------------------------ run folder


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Before any work: ``out`` can be a run's folder, and a run already there is continued
    (``resume``) or replaced (``overwrite``) only when asked."""
    if resume and overwrite:
        raise HistocolorError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise HistocolorError(f"cannot train into '{out}': '{existing}' is a file, not a folder")
    if not resume and not overwrite and out.is_dir() and (
        _checkpoints(out) or any((out / name).exists() for name in _RUN_FILES)
    ):
        raise HistocolorError(f"'{out}' holds a previous run: add --resume to continue it, "
                              "or --overwrite to start over (replacing it)")


def _clear_run(out: Path) -> None:
    """Remove a previous run's checkpoints and TensorBoard logs from ``out`` (its weights and
    ``log.csv`` are replaced as the new run writes its own)."""
    with contextlib.suppress(FileNotFoundError):
        (out / "latest").unlink()
    for folder in [*_checkpoints(out), out / "tensorboard"]:
        shutil.rmtree(folder, ignore_errors=True)


def _start_log(path: Path, columns: list[str], resumed_from: int | None) -> None:
    """Begin ``log.csv`` (atomically): its header alone, or on resume the rows up to step ``resumed_from``.

    Rows past that step were logged by steps that now run again (the newest checkpoint was damaged
    and an older one restored, or a kill came between a checkpoint and the rows after it): dropped,
    so that each step is logged once. So is a row a kill cut short.
    """
    header = (",".join(columns) + "\r\n").encode()  # as csv.writer ends its rows
    with atomic_write(path) as kept:
        if resumed_from is None or not path.is_file():
            kept.write(header)
            return
        with open(path, "rb") as old:
            first = old.readline()
            if first.endswith(b"\n"):  # the run's own header (an older version's columns stay with their rows)
                header = first
            kept.write(header)
            for row in old:
                cells = row.split(b",")
                if (row.endswith(b"\n") and len(cells) == header.count(b",") + 1 and cells[0].isdigit()
                        and int(cells[0]) <= resumed_from):
                    kept.write(row)


# ------------------------------------------------------------------------------ checkpoints


def _save_checkpoint(out: Path, model, optimizer, step: int, config: TrainConfig) -> None:
    folder = out / f"checkpoint-{step:07d}"
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value for index, entry in state["state"].items() for name, value in entry.items()}
    with atomic_write(folder / "optimizer.safetensors") as stream:
        stream.write(save({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}))
    document = {"step": step, "param_groups": state["param_groups"], "config": asdict(config)}
    with atomic_write(folder / "state.json") as stream:
        stream.write(json.dumps(document, indent=2).encode())
    with atomic_write(out / "latest") as stream:
        stream.write(folder.name.encode())
    # Keep this one and the one before it (by step, so an older run's later steps never count).
    earlier = [other for other in _checkpoints(out) if _step_of(other) < step][-(_CHECKPOINTS_KEPT - 1):]
    for old in _checkpoints(out):
        if old != folder and old not in earlier:
            shutil.rmtree(old, ignore_errors=True)


def _step_of(folder: Path) -> int:
    return int(folder.name.removeprefix("checkpoint-"))


def _checkpoints(out: Path) -> list[Path]:
    """The run's checkpoint folders, by step."""
    found = [folder for folder in out.glob("checkpoint-*") if folder.name.removeprefix("checkpoint-").isdigit()]
    return sorted(found, key=_step_of)


def _load_checkpoint(out: Path, model, optimizer, config: TrainConfig, report=print) -> int:
    """Restore weights and optimizer from ``out``'s newest usable checkpoint; the step reached.

    The checkpoint named in ``latest`` comes first, then the others, newest first; a damaged one
    (weights, optimizer or state unreadable or inconsistent) is reported and the previous one tried.
    A checkpoint of another model than ``config``'s is a user error: no fallback can fix it.
    """
    named = None
    with contextlib.suppress(OSError):
        named = out / (out / "latest").read_text().strip()
    candidates = [named] if named is not None and named.is_dir() else []
    # Then the earlier ones, newest first (never past the one ``latest`` names: later ones are another run's).
    limit = _step_of(named) if candidates else None
    candidates += [folder for folder in reversed(_checkpoints(out))
                   if folder not in candidates and (limit is None or _step_of(folder) < limit)]
    if not candidates:
        raise HistocolorError(f"no checkpoint in '{out}' to resume from")
    wanted = AnalogyConfig.from_dict(config.model)
    problems = []
    for folder in candidates:
        try:
            return _restore(folder, model, optimizer, wanted)
        except _DamagedCheckpoint as error:
            problems.append(f"{folder.name}: {error}")
            report(f"histocolor: checkpoint {folder.name} is unusable ({error}); trying the one before")
    raise HistocolorError(f"no usable checkpoint in '{out}' to resume from ({problems[0]})")


class _DamagedCheckpoint(Exception):
    """A checkpoint that cannot be restored; the one before may still be."""


def _restore(folder: Path, model, optimizer, wanted: AnalogyConfig) -> int:
    try:
        document = json.loads((folder / "state.json").read_text())
        stored = AnalogyConfig.from_dict(document["config"]["model"])
        step = document["step"]
        if type(step) is not int or step < 0:
            raise ValueError(f"step {step!r} is not a step number")
        tensors = load_file(folder / "optimizer.safetensors")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
        raise _DamagedCheckpoint(first_line(error)) from None
    if stored != wanted:
        raise HistocolorError(f"checkpoint {folder.name} belongs to another model than this config's: resume with "
                              "the config the run started with, or train into a new --out folder")
    before = copy.deepcopy(optimizer.state_dict())
    try:
        weights = from_pretrained(folder).state_dict()
        state = {}
        for name, tensor in tensors.items():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
        optimizer.load_state_dict({"state": state, "param_groups": document["param_groups"]})
        model.load_state_dict(weights)
    except (HistocolorError, ValueError, KeyError, TypeError, RuntimeError) as error:
        optimizer.load_state_dict(before)  # as it was: the next candidate starts clean
        raise _DamagedCheckpoint(first_line(error)) from None
    return step


# ------------------------------------------------------------------------------------ loop


def _batch(dataset, step: int, config: TrainConfig, distributed: _Distributed, device) -> Triplet:
    first = (step * distributed.world + distributed.rank) * config.batch_size
    batch = collate([dataset[first + i] for i in range(config.batch_size)])
    return Triplet(*(None if tensor is None else tensor.to(device) for tensor in batch.__dict__.values()))


def _forward_loss(model, batch: Triplet, config: TrainConfig, device, step: int = 0):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        source_lab, reference_lab, target_lab = (rgb_to_lab(t) for t in (batch.source, batch.reference, batch.target))
        result = model(source_lab, reference_lab, batch.source_regions, batch.reference_regions)
    regions = None
    if batch.source_regions is not None:
        regions = (reference_lab.float(), batch.source_regions, batch.reference_regions)
    # The forward pass returns the alignment it computed. Target-less items are anchored to the
    # careful alignment where the model has a relevance gate (the blended one moves with the gate:
    # anchored to it, the gate could go faithful for free).
    anchor = result.careful if result.careful is not None else result.aligned
    aligned = None if anchor is None else anchor.detach().float()
    # The SWD losses' random pixels and directions follow the step, so resumed runs match.
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    total, parts = transfer_loss(
        result, target_lab.float(), config.loss_weights, paired=batch.paired, regions=regions, aligned_lab=aligned,
        reference_lab=reference_lab.float(), source_lab=source_lab.float(), generator=generator,
    )
    if result.blend is not None:  # how faithful the relevance gate is on average (0 careful, 1 faithful)
        parts["blend"] = float(result.blend.detach().mean())
    return total, parts


@torch.no_grad()
def validate(model, triplets: list[Triplet], device) -> dict:
    """Mean Lab L1 of the model and of doing nothing on fixed held-out triplets."""
    model.eval()
    errors, identity = [], []
    for triplet in triplets:
        if not triplet.paired:  # no target to compare with
            continue
        source, reference, target = (rgb_to_lab(t.unsqueeze(0).to(device)) for t in (triplet.source, triplet.reference, triplet.target))
        regions = [None if r is None else r.unsqueeze(0).to(device) for r in (triplet.source_regions, triplet.reference_regions)]
        errors.append((model(source, reference, *regions).output - target).abs().mean().item())
        identity.append((source - target).abs().mean().item())
    model.train()
    return {"validation_l1": float(np.mean(errors)), "identity_l1": float(np.mean(identity))}


def train(
    config: TrainConfig,
    data,
    out,
    *,
    fivek=None,
    resume: bool = False,
    overwrite: bool = False,
    init_weights=None,
    device: str = "auto",
    callback=None,
    should_stop=None,
    progress_bar: bool = True,
) -> Path:
    """Train and save the final weights into ``out`` (loadable with ``from_pretrained``).

    Args:
        config: the run's settings.
        data: photo folders (triplets made with random retouch styles), or a ready dataset.
        fivek: root of an MIT-Adobe FiveK tree; its expert pairs alternate with the photos'.
        out: output directory: ``config.json`` + ``model.safetensors`` at the end,
            ``checkpoint-*`` + ``latest`` during the run, ``log.csv``.
        resume: continue from the latest checkpoint in ``out``.
        overwrite: start over in ``out`` although a previous run is there, replacing it. A folder
            holding a run (checkpoints, ``latest``, ``log.csv`` or weights) needs one of ``resume``
            and ``overwrite``; a new or empty folder neither.
        init_weights: start from these weights (fine-tuning) instead of random ones.
        callback: called with a :class:`Progress` after every step.
        should_stop: called after every step; when it returns True, a checkpoint is saved and
            training ends early (the weights saved so far are the result).
    """
    out = Path(out)
    _check_out(out, resume, overwrite)
    device = _device_for_rank(device)
    distributed = _Distributed(device)
    torch.manual_seed(config.seed)
    if isinstance(data, torch.utils.data.Dataset):
        dataset, validation = data, []
    elif not data:
        if fivek is None:
            raise HistocolorError("no training data: give photo folders, a FiveK root, or both")
        dataset, validation = None, []
    else:
        photos = list_photos(data)
        held_out = [p for p in photos if p.name in set(config.holdout)]
        # Validation: the held-out photos under the run's own recipe (pair kinds and looks).
        recipe = {
            "crop": config.crop,
            "identical_rate": config.identical_rate,
            "same_grade_rate": config.same_grade_rate,
            "same_photo_rate": config.same_photo_rate,
            "natural_source_rate": config.natural_source_rate,
            "strong_style_rate": config.strong_style_rate,
            "region_rate": config.region_rate,
            "unpaired_region_rate": config.unpaired_region_rate,
            "reference_flip_rate": config.reference_flip_rate,
            "unpaired_rate": config.unpaired_rate,
            "realistic_style_rate": config.realistic_style_rate,
            "flat_source_rate": config.flat_source_rate,
            "view_rate": config.view_rate,
            "length": 10**9,
        }
        dataset = PhotoFolderDataset(None, seed=config.seed, photos=[p for p in photos if p not in held_out], **recipe)
        validation = []
        if len(held_out) >= 2 and config.validation_items:
            held = PhotoFolderDataset(None, seed=config.seed + 1, photos=held_out, **recipe)
            validation = [held[i] for i in range(config.validation_items)]

    if fivek is not None:
        expert_pairs = FiveKDataset(fivek, crop=config.crop, seed=config.seed, same_photo_rate=config.same_photo_rate)
        dataset = expert_pairs if dataset is None else MixedDataset([dataset, expert_pairs])

    if init_weights is not None:
        start = from_pretrained(init_weights)
        # A fine-tune may change the alignment (it has no weights), let the CTN see the source
        # or add cross-attention (new weights that start as no change); every other setting
        # comes with the weights.
        try:
            asked = AnalogyConfig.from_dict({**start.config.to_dict(), **config.model})
        except (TypeError, ValueError) as error:
            raise HistocolorError(f"cannot fine-tune '{init_weights}' with this model config: {error}") from None
        changes = {name: getattr(asked, name) for name in FINE_TUNE_CHANGES if name in config.model}
        model = HistogramAnalogy(replace(start.config, **changes))
        grow_state(model, start.state_dict())
        config.model = model.config.to_dict()
    else:
        model = HistogramAnalogy(AnalogyConfig.from_dict(config.model))
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    step = 0
    if resume:
        step = _load_checkpoint(out, model, optimizer, config, report=lambda line: print(line, file=sys.stderr))
    trained = torch.nn.parallel.DistributedDataParallel(model) if distributed.world > 1 else model
    log_path = out / "log.csv"
    columns = ["step", "loss", "l1", "deep", "histogram", "region_swd", "anchor", "swd", "gradient", "structure",
               "alignment", "blend", "validation_l1", "identity_l1", "seconds"]
    if distributed.main:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _clear_run(out)
        _start_log(log_path, columns, step if resume else None)
    writer = _tensorboard(out) if distributed.main else None

    bar = None
    if progress_bar and distributed.main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step")
    started = time.perf_counter()
    stopped = False
    while step < config.steps and not stopped:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(step)
        batch = _batch(dataset, step, config, distributed, device)
        loss, parts = _forward_loss(trained, batch, config, device, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.gradient_clip:  # one bad batch (a rare extreme look) must not blow the weights up
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
        optimizer.step()
        step += 1
        stopped = distributed.anyone(bool(should_stop and should_stop()), device)
        last = step == config.steps or stopped
        if step % config.checkpoint_every == 0 or last:
            if distributed.main:
                _save_checkpoint(out, model, optimizer, step, config)
            distributed.barrier()
        if distributed.main and (step % config.log_every == 0 or last):
            row = {**parts, "step": step, "seconds": time.perf_counter() - started}
            if validation and (step % config.checkpoint_every == 0 or last):
                row.update(validate(model, validation, device))
            with open(log_path, "a", newline="") as stream:
                csv.writer(stream).writerow([_cell(row.get(name)) for name in columns])
            if writer is not None:
                for name, value in row.items():
                    if name != "step" and value is not None:
                        writer.add_scalar(name, value, step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
        if callback is not None:
            callback(Progress(step, config.steps, parts, time.perf_counter() - started))
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    if distributed.main:
        model.eval().save_pretrained(out)
    distributed.barrier()
    return out


def _cell(value):
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)


def _tensorboard(out: Path):
    """A TensorBoard writer when the optional ``tensorboard`` package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))
