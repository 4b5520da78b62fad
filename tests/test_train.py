import json
import subprocess
import sys

import pytest
import torch

from histocolor.training.data.photos import PhotoFolderDataset, Triplet
from histocolor.training.data.retouch import RetouchStyle, apply_style
from histocolor.errors import HistocolorError
from histocolor.model import AnalogyConfig, HistogramAnalogy, from_pretrained
from histocolor.training.train import TrainConfig, train

pytestmark = pytest.mark.train

TINY_MODEL = {"hen_widths": [4, 4, 4, 4], "feature_size": 8, "ctn_width": 4, "ctn_depth": 2}
TINY_TRANSFORMER = {"encoder": "transformer", "transformer": {"depth": 1, "width": 16, "heads": 2}}
TINY_ATTENTION = {"attention": "bottleneck+decoder", "attention_window": 4, "transformer": {"depth": 1, "width": 16, "heads": 2}}
TINY_BOTH = {**TINY_TRANSFORMER, **TINY_ATTENTION}


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


@pytest.mark.parametrize(
    "model",
    [{"head": "ctn"}, {"head": "lut"}, TINY_TRANSFORMER, TINY_ATTENTION, TINY_BOTH,
     {**TINY_BOTH, "head": "lut", "attention": "bottleneck"}],
    ids=["ctn", "lut", "transformer", "cross-attention", "both", "lut-both"],
)
def test_training_lowers_the_loss(tmp_path, photo_folder, model):
    losses = []
    config = _config(steps=40, batch_size=4, learning_rate=3e-3, checkpoint_every=100, model={**TINY_MODEL, **model})
    out = train(
        config,
        _BrightenDataset(photo_folder),
        tmp_path / "run",
        progress_bar=False,
        callback=lambda p: losses.append(p.losses["l1"]),
    )
    # The transformer's features move more under this short run's high rate (its loss is noisier):
    # it must still learn, by a smaller margin in 40 steps (about 0.84 here, the conv HEN about 0.72).
    assert sum(losses[-10:]) < (0.9 if "encoder" in model else 0.8) * sum(losses[:10])
    if "attention" in model:  # the attention blocks start as no change: they must have moved
        trained = from_pretrained(out)
        blocks = [m for name, m in trained.named_modules() if name.endswith("attention")]
        assert blocks and all(block.out.weight.abs().max() > 0 for block in blocks)
    assert from_pretrained(out).config == AnalogyConfig.from_dict(config.model)  # the variant trained is the one saved


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
        "from histocolor.training.train import TrainConfig, train\n"
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


def test_a_fine_tune_can_let_the_ctn_see_the_source(tmp_path, photo_folder, tiny_weights):
    """The grown model starts as the weights it grew from; its new weights then train."""
    frozen = _config(steps=1, learning_rate=0.0, model={"ctn_sees_source": True, "ctn_width": 99})
    train(frozen, [photo_folder], tmp_path / "frozen", init_weights=tiny_weights, progress_bar=False)
    start, grown = from_pretrained(tiny_weights), from_pretrained(tmp_path / "frozen")
    assert grown.config.ctn_sees_source and grown.config.ctn_width == start.config.ctn_width
    generator = torch.Generator().manual_seed(0)
    source, reference = (torch.rand(1, 3, 24, 32, generator=generator) * 80 for _ in range(2))
    with torch.no_grad():
        assert torch.equal(grown(source, reference).output, start(source, reference).output)
    train(_config(steps=2, learning_rate=1e-2, model={"ctn_sees_source": True}), [photo_folder], tmp_path / "tuned",
          init_weights=tiny_weights, progress_bar=False)
    assert from_pretrained(tmp_path / "tuned").ctn.stem[0].weight[:, 3:].abs().max() > 0
    no_alignment = _config(model={"ctn_sees_source": True, "alignment": {"method": "none"}})
    with pytest.raises(HistocolorError, match="cannot fine-tune .*ctn_sees_source needs"):
        train(no_alignment, [photo_folder], tmp_path / "refused", init_weights=tiny_weights, progress_bar=False)


def test_a_fine_tune_can_add_cross_attention(tmp_path, photo_folder, tiny_weights):
    """``--init`` weights without attention, ``"attention"`` asked: step 0 is the old model, then it trains."""
    asked = {"attention": "bottleneck+decoder", "attention_window": 4}
    train(_config(steps=1, learning_rate=0.0, model=asked), [photo_folder], tmp_path / "frozen",
          init_weights=tiny_weights, progress_bar=False)
    start, grown = from_pretrained(tiny_weights), from_pretrained(tmp_path / "frozen")
    assert grown.config.attention == "bottleneck+decoder" and grown.config.attention_window == 4
    generator = torch.Generator().manual_seed(0)
    source, reference = (torch.rand(1, 3, 24, 32, generator=generator) * 80 for _ in range(2))
    with torch.no_grad():
        assert torch.equal(grown(source, reference).output, start(source, reference).output)
    train(_config(steps=2, learning_rate=1e-2, model=asked), [photo_folder], tmp_path / "tuned",
          init_weights=tiny_weights, progress_bar=False)
    assert from_pretrained(tmp_path / "tuned").ctn.decoder_attention.out.weight.abs().max() > 0


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path, photo_folder):
    """``histocolor train`` interrupted: the step ends, a checkpoint is saved, exit 130."""
    import signal
    import time

    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_config(steps=100_000, checkpoint_every=100_000).__dict__, "log_every": 1}))
    command = [sys.executable, "-m", "histocolor", "train", "--data", str(photo_folder), "--config", str(config),
               "--out", str(tmp_path / "run")]
    # As from a terminal: Ctrl-C reaches it (a shell's background job, e.g. under nohup ... &, would
    # hand it SIGINT ignored, and an ignored signal stays ignored by design).
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = tmp_path / "run" / "log.csv"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 130, errors
    assert "add --resume to continue" in errors and "Traceback" not in errors
    latest = (tmp_path / "run" / "latest").read_text()
    stopped_at = int(latest.rsplit("-", 1)[1])
    assert 2 <= stopped_at < 100_000 and (tmp_path / "run" / latest).is_dir()
    from_pretrained(tmp_path / "run")  # the weights so far are usable
    config.write_text(json.dumps({**_config(steps=stopped_at + 2).__dict__, "log_every": 1}))
    assert subprocess.run([*command, "--resume"], capture_output=True, timeout=120).returncode == 0
    assert (tmp_path / "run" / "latest").read_text() == f"checkpoint-{stopped_at + 2:07d}"


def _largest_difference(first, second):
    assert first.keys() == second.keys()
    return max((first[k].double() - second[k].double()).abs().max().item() for k in first)


def test_fine_tuning_starts_from_existing_weights(tmp_path, photo_folder, tiny_weights):
    start, start_config = _weights(tiny_weights), from_pretrained(tiny_weights).config

    def one_step(name, learning_rate, **options):
        settings = dict(steps=1, learning_rate=learning_rate, model={})
        out = train(_config(**settings), [photo_folder], tmp_path / name, progress_bar=False, **options)
        assert from_pretrained(out).config == start_config
        return _weights(out)

    # Learning rate 0: Adam's update is exactly zero, so the result is the start, bit for bit.
    assert _same(one_step("frozen", 0.0, init_weights=tiny_weights), start)
    # One Adam step moves each weight by at most about the learning rate.
    stepped = one_step("stepped", 1e-4, init_weights=tiny_weights)
    moved = _largest_difference(stepped, start)
    assert 0.0 < moved <= 2e-4
    # What ignoring init_weights would give: a fresh network of the same config.
    torch.manual_seed(_config().seed)
    fresh = HistogramAnalogy(start_config).state_dict()
    assert _largest_difference(fresh, start) > 0.05  # far: a run from fresh weights could not pass the above
    assert _largest_difference(stepped, fresh) > 0.05


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


@pytest.mark.parametrize("variant", [TINY_TRANSFORMER, TINY_ATTENTION, TINY_BOTH], ids=["transformer", "cross-attention", "both"])
def test_train_and_transfer_commands_with_transformer_variants(tmp_path, photo_folder, capsys, variant):
    """``histocolor train --config`` with a transformer encoder and/or attention, then ``transfer --weights``."""
    from PIL import Image

    from histocolor.cli import main

    config = tmp_path / "config.json"
    settings = {**_config(steps=2, model={**TINY_MODEL, **variant}).__dict__, "holdout": []}
    config.write_text(json.dumps(settings))
    assert main(["train", "--data", str(photo_folder), "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    model = from_pretrained(tmp_path / "out")
    assert model.config == AnalogyConfig.from_dict({**TINY_MODEL, **variant})
    source, reference = photo_folder / "photo0.jpg", photo_folder / "photo3.jpg"
    output = tmp_path / "result.png"
    code = main(["transfer", str(source), str(reference), "-o", str(output), "--weights", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert Image.open(output).size == Image.open(source).size


# Run under torchrun: records the network train() builds, runs the train command, then has every
# rank (not only rank 0, which alone writes the weights) save its start and final weights.
_DDP_SCRIPT = """
import os, sys
from safetensors.torch import save_file
import histocolor.training.train as training
from histocolor.cli import main

real, built = training.HistogramAnalogy, []

def recording(config):
    model = real(config)
    built.append((model, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    return model

training.HistogramAnalogy = recording
code = main(sys.argv[2:])
(model, start), = built
final = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
for name, state in (("start", start), ("final", final)):
    save_file(state, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}-{name}.safetensors"))
sys.exit(code)
"""


def test_ddp_under_torchrun_on_cpu(tmp_path, photo_folder):
    """Two processes (gloo) train one model: the ranks stay in step, and rank 0 writes it."""
    from safetensors.torch import load_file

    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_config(steps=3).__dict__, "holdout": []}))
    script = tmp_path / "ddp_run.py"
    script.write_text(_DDP_SCRIPT)
    (tmp_path / "states").mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        str(script), str(tmp_path / "states"),
        "train", "--data", str(photo_folder), "--config", str(config), "--out", str(tmp_path / "ddp"), "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    names = ("rank0-start", "rank0-final", "rank1-final")
    states = {name: load_file(tmp_path / "states" / f"{name}.safetensors") for name in names}
    assert _same(states["rank0-final"], states["rank1-final"])  # gradients were averaged across ranks
    assert not _same(states["rank0-final"], states["rank0-start"])  # and training happened
    saved = _weights(tmp_path / "ddp")
    assert _same(saved, states["rank0-final"])
    single = train(_config(steps=3), [photo_folder], tmp_path / "single", progress_bar=False)
    assert not _same(saved, _weights(single))  # two ranks saw twice the data
    assert (tmp_path / "ddp" / "latest").read_text() == "checkpoint-0000003"


def test_cosine_schedule_decays_to_the_final_rate():
    config = TrainConfig(steps=11, learning_rate=1e-3, final_learning_rate=1e-5, schedule="cosine")
    rates = [config.learning_rate_at(step) for step in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5) and rates[5] == pytest.approx(5.05e-4)
    assert rates == sorted(rates, reverse=True)
    assert TrainConfig().learning_rate_at(500) == 1e-3
    with pytest.raises(HistocolorError):
        TrainConfig.from_dict({"schedule": "steps"})


def test_warmup_ramps_the_rate_linearly_then_follows_the_schedule():
    config = TrainConfig(steps=11, learning_rate=1e-3, final_learning_rate=1e-5, schedule="cosine", warmup_steps=4)
    cosine = TrainConfig(steps=11, learning_rate=1e-3, final_learning_rate=1e-5, schedule="cosine")
    assert [config.learning_rate_at(step) for step in range(4)] == pytest.approx(
        [cosine.learning_rate_at(step) * (step + 1) / 4 for step in range(4)])
    assert [config.learning_rate_at(step) for step in range(3, 11)] == pytest.approx(
        [cosine.learning_rate_at(step) for step in range(3, 11)])
    constant = TrainConfig(steps=10, learning_rate=2e-3, warmup_steps=2)
    assert constant.learning_rate_at(0) == pytest.approx(1e-3) and constant.learning_rate_at(1) == 2e-3
    with pytest.raises(HistocolorError, match="warmup_steps"):
        TrainConfig.from_dict({"steps": 10, "warmup_steps": 10})


@pytest.mark.parametrize("setting, value", [
    ("checkpoint_every", 0), ("log_every", 0), ("batch_size", 0), ("crop", 0), ("learning_rate", "abc"),
    ("learning_rate", -1), ("steps", "40"), ("crop", 100000), ("identical_rate", 1.5), ("l1_weight", float("nan")),
    ("steps", True), ("schedule", "linear"), ("holdout", "a.jpg"),
])
def test_hostile_training_settings_are_one_line_errors_before_anything_is_allocated(tmp_path, capsys, setting, value):
    from histocolor.cli import main

    config = tmp_path / "config.json"
    config.write_text(json.dumps({setting: value}))
    code = main(["train", "--data", str(tmp_path), "--config", str(config), "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("histocolor: error: invalid training config")
    assert setting in lines[0] and not (tmp_path / "out").exists()


def test_resume_falls_back_to_the_previous_checkpoint_when_the_newest_is_damaged(tmp_path, photo_folder, capsys):
    straight = train(_config(steps=6, checkpoint_every=2), [photo_folder], tmp_path / "straight", progress_bar=False)
    for damage in ("optimizer", "state"):
        run = tmp_path / damage
        script = (
            "import os, signal\n"
            "from histocolor.training.train import TrainConfig, train\n"
            f"config = TrainConfig(**{_config(steps=6, checkpoint_every=2).__dict__!r})\n"
            "def die(progress):\n"
            "    if progress.step == 5:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            f"train(config, [{str(photo_folder)!r}], {str(run)!r}, progress_bar=False, callback=die)\n"
        )
        assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == -9
        assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000002", "checkpoint-0000004"]
        if damage == "optimizer":
            (run / "checkpoint-0000004" / "optimizer.safetensors").write_bytes(b"garbage")
        else:
            state = json.loads((run / "checkpoint-0000004" / "state.json").read_text())
            (run / "checkpoint-0000004" / "state.json").write_text(json.dumps({**state, "step": "abc"}))
        resumed = train(_config(steps=6, checkpoint_every=2), [photo_folder], run, resume=True, progress_bar=False)
        assert "checkpoint-0000004 is unusable" in capsys.readouterr().err
        assert _same(_weights(straight), _weights(resumed))  # from step 2, the same run to the end
    # Another model section cannot be fixed by falling back: one clear error.
    with pytest.raises(HistocolorError, match="another model"):
        train(_config(steps=6, checkpoint_every=2, model={**TINY_MODEL, "ctn_width": 8}), [photo_folder],
              tmp_path / "optimizer", resume=True, progress_bar=False)


def test_a_fresh_run_keeps_its_own_checkpoints_whatever_an_older_run_left(tmp_path, photo_folder):
    out = tmp_path / "run"
    (out / "checkpoint-0010000").mkdir(parents=True)  # an older, longer run's
    train(_config(steps=6, checkpoint_every=2), [photo_folder], out, overwrite=True, progress_bar=False)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0000004", "checkpoint-0000006"]
    assert (out / "latest").read_text() == "checkpoint-0000006"


def _logged_steps(run):
    return [int(row.split(",")[0]) for row in (run / "log.csv").read_text().splitlines()[1:]]


def test_a_resume_past_a_damaged_checkpoint_logs_each_step_once(tmp_path, photo_folder, capsys):
    """Stopped at step 5 (rows 1..5 logged), checkpoint 5 damaged: the run resumes from step 4
    and runs step 5 again; log.csv holds it once."""
    run, steps = tmp_path / "run", []
    train(_config(steps=6, checkpoint_every=2), [photo_folder], run, progress_bar=False,
          callback=lambda p: steps.append(p.step), should_stop=lambda: len(steps) == 4)
    assert _logged_steps(run) == [1, 2, 3, 4, 5]
    (run / "checkpoint-0000005" / "optimizer.safetensors").write_bytes(b"garbage")
    train(_config(steps=6, checkpoint_every=2), [photo_folder], run, resume=True, progress_bar=False)
    assert "checkpoint-0000005 is unusable" in capsys.readouterr().err
    assert _logged_steps(run) == [1, 2, 3, 4, 5, 6]
    assert (run / "log.csv").read_text().splitlines()[0].startswith("step,loss")


def _train_command(photos, config, out, *options):
    from histocolor.cli import main

    return main(["train", "--data", str(photos), "--config", str(config), "--out", str(out), *options])


def test_train_into_a_previous_run_needs_resume_or_overwrite(tmp_path, photo_folder, capsys):
    """A folder holding a run is continued (--resume) or replaced (--overwrite) only when asked;
    otherwise a one-line error before any work, the run untouched."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_config(steps=2, checkpoint_every=1).__dict__, "holdout": []}))
    run = tmp_path / "run"
    run.mkdir()  # an empty folder is fine
    assert _train_command(photo_folder, config, run) == 0
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert _train_command(photo_folder, config, run) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("histocolor: error:")
    assert "--resume" in lines[0] and "--overwrite" in lines[0]
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    for marker in ("log.csv", "model.safetensors", "latest"):  # any trace of a run counts
        other = tmp_path / f"only-{marker}"
        other.mkdir()
        (other / marker).write_text("")
        assert _train_command(photo_folder, config, other) == 2
        assert "holds a previous run" in capsys.readouterr().err
    assert _train_command(photo_folder, config, run, "--resume", "--overwrite") == 2
    assert "give one of them" in capsys.readouterr().err
    # Start over: the old run's checkpoints are gone, the log is the new run's alone.
    (run / "checkpoint-0000009").mkdir()
    assert _train_command(photo_folder, config, run, "--overwrite") == 0
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000001", "checkpoint-0000002"]
    assert _logged_steps(run) == [1, 2]


def test_train_out_naming_a_file_is_a_one_line_error(tmp_path, photo_folder, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_config(steps=1).__dict__, "holdout": []}))
    (tmp_path / "file").write_text("mine")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):  # the folder, or one of its parents, is a file
        for options in ((), ("--resume",), ("--overwrite",)):
            assert _train_command(photo_folder, config, out, *options) == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("histocolor: error: cannot train into"), lines
    assert (tmp_path / "file").read_text() == "mine"
