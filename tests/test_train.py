import json
import subprocess
import sys

import pytest
import torch

from histocolor.data.photos import PhotoFolderDataset, Triplet
from histocolor.data.retouch import RetouchStyle, apply_style
from histocolor.errors import HistocolorError
from histocolor.model import from_pretrained
from histocolor.train import TrainConfig, train

TINY_MODEL = {"hen_widths": [4, 4, 4, 4], "feature_size": 8, "ctn_width": 4, "ctn_depth": 2}


def _config(**overrides):
    settings = dict(model=TINY_MODEL, steps=6, batch_size=2, crop=32, checkpoint_every=2, log_every=1, seed=5)
    return TrainConfig(**{**settings, **overrides})


def _weights(directory):
    return from_pretrained(directory).state_dict()


def _same(first, second):
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_training_writes_loadable_weights_logs_and_reports_progress(tmp_path, photo_folder):
    seen = []
    out = train(_config(), [photo_folder], tmp_path / "run", progress_bar=False, callback=seen.append)
    model = from_pretrained(out)
    assert model.config.ctn_width == 4
    assert [p.step for p in seen] == [1, 2, 3, 4, 5, 6] and all("loss" in p.losses for p in seen)
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 7
    assert (out / "latest").read_text() == "checkpoint-0000006"


class _BrightenDataset(torch.utils.data.Dataset):
    """Every target is its source made brighter: a grade any model should pick up quickly."""

    def __init__(self, photo_folder):
        self.base = PhotoFolderDataset([photo_folder], crop=32, identical_rate=0.0, same_grade_rate=0.0)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        item = self.base[index]
        brighter = RetouchStyle(exposure=1.4, gamma=(0.8, 0.8, 0.8))
        return Triplet(item.source, apply_style(item.reference, brighter), apply_style(item.source, brighter))


@pytest.mark.parametrize("head", ["ctn", "lut"])
def test_training_lowers_the_loss(tmp_path, photo_folder, head):
    losses = []
    config = _config(
        steps=40, batch_size=4, learning_rate=3e-3, checkpoint_every=100, model={**TINY_MODEL, "head": head}
    )
    train(
        config,
        _BrightenDataset(photo_folder),
        tmp_path / "run",
        progress_bar=False,
        callback=lambda p: losses.append(p.losses["l1"]),
    )
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])


def test_region_losses_train_on_unpaired_region_triplets(tmp_path, photo_folder):
    losses = []
    config = _config(
        steps=80, batch_size=4, learning_rate=3e-3, checkpoint_every=100, region_rate=1.0, unpaired_region_rate=1.0,
        identical_rate=0.0, same_grade_rate=0.0, region_swd_weight=1.0, validation_items=0,
        # Without the alignment the network starts far from each reference region: the loss alone must get it there.
        model={**TINY_MODEL, "alignment": {"method": "none"}},
    )
    train(config, [photo_folder], tmp_path / "run", progress_bar=False, callback=lambda p: losses.append(p.losses))
    assert all(part["l1"] == 0.0 for part in losses)  # no item has a target
    swd = [part["region_swd"] for part in losses]
    assert sum(swd[-10:]) < 0.8 * sum(swd[:10])
    assert "region_swd" in (tmp_path / "run" / "log.csv").read_text().splitlines()[0]


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, photo_folder):
    reference = train(_config(), [photo_folder], tmp_path / "straight", progress_bar=False)
    # A separate process trains the same run and is killed (SIGKILL) during step 5,
    # after the checkpoint of step 4 was written.
    script = (
        "import os, signal, sys\n"
        "from histocolor.train import TrainConfig, train\n"
        f"config = TrainConfig(**{_config().__dict__!r})\n"
        "def die(progress):\n"
        "    if progress.step == 5:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"train(config, [{str(photo_folder)!r}], {str(tmp_path / 'killed')!r}, progress_bar=False, callback=die)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9
    assert (tmp_path / "killed" / "latest").read_text() == "checkpoint-0000004"
    resumed = train(_config(), [photo_folder], tmp_path / "killed", resume=True, progress_bar=False)
    assert _same(_weights(reference), _weights(resumed))


def test_stop_request_saves_a_checkpoint_and_resume_finishes(tmp_path, photo_folder):
    steps = []
    train(
        _config(),
        [photo_folder],
        tmp_path / "run",
        progress_bar=False,
        callback=lambda p: steps.append(p.step),
        should_stop=lambda: len(steps) == 2,
    )
    assert (tmp_path / "run" / "latest").read_text() == "checkpoint-0000003"
    train(_config(), [photo_folder], tmp_path / "run", resume=True, progress_bar=False)
    assert (tmp_path / "run" / "latest").read_text() == "checkpoint-0000006"


def test_fine_tuning_starts_from_existing_weights(tmp_path, photo_folder, tiny_weights):
    out = train(
        _config(steps=2, model={}), [photo_folder], tmp_path / "tuned", init_weights=tiny_weights, progress_bar=False
    )
    tuned, start = _weights(out), _weights(tiny_weights)
    assert tuned.keys() == start.keys() and not _same(tuned, start)
    assert from_pretrained(out).config == from_pretrained(tiny_weights).config


def test_configs_and_resume_errors(tmp_path, photo_folder):
    (tmp_path / "config.json").write_text(json.dumps({"steps": 3, "learning_rat": 0.1}))
    with pytest.raises(HistocolorError, match="learning_rat"):
        TrainConfig.from_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"model": {"head": "pixels"}}))
    with pytest.raises(HistocolorError, match="invalid training config"):
        TrainConfig.from_file(tmp_path / "config.json")
    with pytest.raises(HistocolorError, match="resume"):
        train(_config(), _BrightenDataset(photo_folder), tmp_path / "empty", resume=True, progress_bar=False)


def test_train_command(tmp_path, photo_folder, capsys):
    from histocolor.cli import main

    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_config(steps=2).__dict__, "holdout": []}))
    assert main(["train", "--data", str(photo_folder), "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    assert from_pretrained(tmp_path / "out").config.ctn_width == 4
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "none")]) == 2
    assert "no training data" in capsys.readouterr().err


def test_ddp_under_torchrun_on_cpu(tmp_path, photo_folder):
    """Two processes (gloo) train one model; rank 0 writes it, and it differs from one process's."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_config(steps=3).__dict__, "holdout": []}))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "histocolor", "train", "--data", str(photo_folder), "--config", str(config), "--out", str(tmp_path / "ddp"), "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    single = train(_config(steps=3), [photo_folder], tmp_path / "single", progress_bar=False)
    assert not _same(_weights(tmp_path / "ddp"), _weights(single))  # two ranks saw twice the data
    assert (tmp_path / "ddp" / "latest").read_text() == "checkpoint-0000003"


def test_cosine_schedule_decays_to_the_final_rate():
    config = TrainConfig(steps=11, learning_rate=1e-3, final_learning_rate=1e-5, schedule="cosine")
    rates = [config.learning_rate_at(step) for step in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5) and rates[5] == pytest.approx(5.05e-4)
    assert rates == sorted(rates, reverse=True)
    assert TrainConfig().learning_rate_at(500) == 1e-3
    with pytest.raises(HistocolorError):
        TrainConfig.from_dict({"schedule": "steps"})
