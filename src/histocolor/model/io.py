"""Weights on disk: ``config.json`` + ``model.safetensors`` in a directory, never pickle."""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from histocolor.atomic import atomic_write
from histocolor.errors import HistocolorError, first_line
from histocolor.model.config import AnalogyConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "histogram-analogy"
FORMAT_VERSION = 1
# The shipped model, which every front end runs when no weights are given.
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "resources" / "weights" / "default"


def save_pretrained(model, directory) -> None:
    """Write ``model``'s config and weights into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, **model.config.to_dict()}
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    with atomic_write(directory / WEIGHTS_NAME) as stream:
        stream.write(save(tensors))
    with atomic_write(directory / CONFIG_NAME) as stream:
        stream.write((json.dumps(document, indent=2) + "\n").encode())


def load_config(directory) -> AnalogyConfig:
    """Read and check ``config.json``; any problem is a one-line :class:`HistocolorError`."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).exists():
        raise HistocolorError(f"weights directory '{directory}' does not exist")
    if not Path(directory).is_dir():
        raise HistocolorError(f"weights path '{directory}' is not a directory")
    if not path.is_file():
        raise HistocolorError(f"'{directory}' holds no {CONFIG_NAME}: not a histocolor weights directory")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HistocolorError(f"cannot read '{path}': {error}") from None
    if not isinstance(document, dict) or document.pop("model_type", None) != MODEL_TYPE:
        raise HistocolorError(f"'{path}' does not describe a {MODEL_TYPE} model")
    version = document.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise HistocolorError(f"'{path}' has format version {version}; this histocolor reads {FORMAT_VERSION}")
    try:
        return AnalogyConfig.from_dict(document)
    except (TypeError, ValueError) as error:
        raise HistocolorError(f"invalid config '{path}': {error}") from None


def grow_state(model, state: dict) -> None:
    """Load ``state`` into ``model``, a model grown from it: extra input channels start at zero.

    Every tensor must have its shape in ``model`` or be smaller along dimension 1 only (a
    layer that reads more inputs, e.g. the CTN stem with ``ctn_sees_source``); the new
    inputs then get zero weights, so the grown model computes exactly what the old one did.
    Tensors ``state`` lacks (blocks the grown model adds, e.g. cross-attention, whose output
    projections start at zero) keep the model's own initial values.
    """
    grown = {}
    for name, target in model.state_dict().items():
        if name not in state:
            grown[name] = target
            continue
        tensor = state[name]
        if tensor.shape != target.shape:
            if tensor.dim() < 2 or tensor.shape[:1] + tensor.shape[2:] != target.shape[:1] + target.shape[2:] \
                    or tensor.shape[1] > target.shape[1]:
                raise HistocolorError(f"cannot grow {name} from {tuple(tensor.shape)} to {tuple(target.shape)}")
            tensor = torch.cat([tensor, tensor.new_zeros(tensor.shape[0], target.shape[1] - tensor.shape[1],
                                                          *tensor.shape[2:])], dim=1)
        grown[name] = tensor
    model.load_state_dict(grown)


def from_pretrained(directory, device="cpu"):
    """Build the model that ``directory`` describes and load its weights, in eval mode."""
    from histocolor.model.analogy import HistogramAnalogy

    config = load_config(directory)
    weights_path = Path(directory) / WEIGHTS_NAME
    if not weights_path.is_file():
        raise HistocolorError(f"'{directory}' holds no {WEIGHTS_NAME}")
    try:
        state = load_file(weights_path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise HistocolorError(f"corrupt weights file '{weights_path}': {first_line(error)}") from None
    model = HistogramAnalogy(config)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(name for name in set(expected) & set(state) if state[name].shape != expected[name])
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if names
        )
        raise HistocolorError(f"weights in '{directory}' do not match its config.json ({details})")
    broken = sorted(name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all())
    if broken:
        raise HistocolorError(
            f"weights in '{directory}' hold NaN or infinite values ({', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''})"
        )
    model.load_state_dict(state)
    return model.to(torch.device(device)).eval()


def load_weights(weights=None, device="cpu"):
    """:func:`from_pretrained` of ``weights``, or of the shipped model when it is None."""
    directory = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights is None and not (directory / WEIGHTS_NAME).is_file():
        raise HistocolorError(
            f"no trained weights found at '{directory}': pass --weights DIR, or pick a classical method (--method mkl)"
        )
    return from_pretrained(directory, device)
