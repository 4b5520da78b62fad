"""Video: one look per shot, streamed frame by frame, frames and audio kept (issue 14)."""

import av
import numpy as np
import pytest

from histocolor.cli import main
from histocolor.errors import HistocolorError
from histocolor.imageio import read_image
from histocolor.engine import ColorTransfer
from histocolor.video import added_flicker, frame_change, recolour_video, sample_frames, shot_look

from conftest import SAMPLES, benchmark_module

REFERENCE = SAMPLES / "reference.jpg"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """24 frames of a pan across the sample photo (each frame's colours differ), with audio."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    benchmark_module()["make_clip"](path, read_image(SAMPLES / "source.jpg").rgb, 24, (96, 64), rate=12)
    return path


def _frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _streams(path):
    """(frame count, rate, width, height, time base) of the video stream, and the audio packets."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        packets = 0 if audio is None else sum(1 for p in container.demux(audio) if p.dts is not None)
        description = (video.frames, video.average_rate, video.width, video.height, video.time_base)
    if description[0] == 0:  # WebM (Matroska) headers hold no frame count: count the frames
        description = (len(_frames(path)), *description[1:])
    return description, packets


def test_the_video_command_keeps_frames_rate_size_and_audio(tmp_path, clip, capsys, tiny_weights):
    out = tmp_path / "out.mp4"
    code = main(["video", str(clip), "--reference", str(REFERENCE), "-o", str(out), "--weights", str(tiny_weights),
                 "--max-side", "64", "--save-lut", str(tmp_path / "look.cube")])
    assert code == 0, capsys.readouterr().err
    assert "frame" in capsys.readouterr().err  # the progress bar
    (video_in, audio_in), (video_out, audio_out) = _streams(clip), _streams(out)
    assert video_out == video_in and audio_in > 0 and audio_out == audio_in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["look.cube", "out.mp4"]  # no temporary file left
    # Every frame got the shot's one look (up to the encoder's loss).
    from histocolor.cube import read_cube
    from histocolor.lut import apply_lut

    lut = read_cube(tmp_path / "look.cube")
    for before, after in zip(_frames(clip), _frames(out)):
        assert np.abs(apply_lut(before, lut).astype(int) - after).mean() < 3


@pytest.mark.parametrize("method", ["analogy", "mkl"])
def test_one_look_for_the_shot_adds_no_flicker(tmp_path, clip, method, tiny_weights):
    engine = ColorTransfer(method, weights=tiny_weights, max_side=64)
    reference = read_image(REFERENCE).rgb
    out = tmp_path / "shot.mp4"
    recolour_video(clip, reference, out, engine)
    assert added_flicker(clip, out) <= 0.5  # the bar: no more than the input's change + 0.5 ΔE
    frames = _frames(clip)
    shot = shot_look(engine, iter(frames), reference)
    together = [shot.apply(frame) for frame in frames]
    assert frame_change(together) <= frame_change(frames) + 0.5
    assert np.abs(np.stack(together).astype(int) - np.stack(frames)).mean() > 3  # and the look is not the identity


def test_smoothed_looks_stay_stable(tmp_path, clip):
    out = tmp_path / "smooth.mp4"
    look = recolour_video(clip, read_image(REFERENCE).rgb, out, ColorTransfer("mkl"), temporal="smooth")
    assert look is None and _streams(out)[0][0] == 24
    assert added_flicker(clip, out) <= 0.5


def test_sampling_holds_few_frames_spread_over_the_clip():
    frames = (np.full((2, 2, 3), index % 256, np.uint8) for index in range(1000))
    sampled = sample_frames(frames, 9)
    picked = [int(frame[0, 0, 0]) for frame in sampled]
    assert 9 <= len(picked) <= 18 and picked[0] == 0
    gaps = np.diff([index for index in range(1000) if index % 256 in picked][: len(picked)])
    assert len(set(gaps.tolist())) == 1  # evenly spaced


def test_video_user_errors_are_one_line_and_leave_nothing(tmp_path, capsys, clip):
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all")
    cases = [
        ["video", str(tmp_path / "fake.mp4"), "--reference", str(REFERENCE), "-o", str(tmp_path / "o.mp4")],
        ["video", str(tmp_path / "missing.mp4"), "--reference", str(REFERENCE), "-o", str(tmp_path / "o.mp4")],
        ["video", str(clip), "--reference", str(REFERENCE), "-o", str(tmp_path / "o.gif")],
        ["video", str(clip), "--reference", str(REFERENCE), "-o", str(clip)],
        ["video", str(clip), "--reference", str(REFERENCE), "-o", str(tmp_path / "o.mp4"), "--temporal", "smooth",
         "--save-lut", str(tmp_path / "l.cube")],
    ]
    for argv in cases:
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("histocolor: error:"), (argv, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.mp4"]
    with pytest.raises(HistocolorError, match="temporal"):
        recolour_video(clip, read_image(REFERENCE).rgb, tmp_path / "o.mp4", ColorTransfer("mkl"), temporal="nope")


def test_odd_sized_clips_keep_their_size(tmp_path):
    clip = tmp_path / "odd.mp4"
    benchmark_module()["make_clip"](clip, read_image(SAMPLES / "source.jpg").rgb, 5, (33, 21), rate=5, audio=False)
    out = tmp_path / "out.mp4"
    recolour_video(clip, read_image(REFERENCE).rgb, out, ColorTransfer("reinhard"))
    assert _streams(out)[0][:4] == _streams(clip)[0][:4]


def test_evaluate_reports_the_added_flicker_of_video_pairs(tmp_path, clip):
    from histocolor.evaluate import evaluate

    (tmp_path / "clips.csv").write_text(f"source,reference\n{clip},{REFERENCE}\n")
    summary = evaluate({"clips": tmp_path / "clips.csv"}, ["mkl", "identity"], tmp_path / "report")["clips"]
    assert summary["identity"]["added_flicker"] == 0.0
    assert summary["mkl"]["added_flicker"] <= 0.5
    assert summary["mkl"]["swd"] < summary["identity"]["swd"]  # the frames took the reference's colours
    assert "added flicker" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "videos" / "clips" / f"{clip.stem}-mkl.mp4").is_file()


def test_webm_output_reencodes_the_audio_and_strength_reaches_the_saved_look(tmp_path, clip):
    from histocolor.cube import read_cube
    from histocolor.lut import identity_lut

    out = tmp_path / "new" / "folder" / "out.webm"  # a folder that does not exist yet
    outputs = []
    for strength in ("1", "0.5"):
        look = tmp_path / f"look{strength}.cube"
        assert main(["video", str(clip), "--reference", str(REFERENCE), "-o", str(out), "--method", "mkl",
                     "--strength", strength, "--save-lut", str(look), "--overwrite"]) == 0
        outputs.append(read_cube(look))
    (video_in, audio_in), (video_out, audio_out) = _streams(clip), _streams(out)
    assert video_out[0] == video_in[0] and video_out[2:4] == video_in[2:4]
    assert audio_in > 0 and audio_out > 0  # AAC does not go into WebM: re-encoded to Opus, not dropped
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    full, half = outputs
    assert np.abs(half - (identity_lut(17) + full) / 2).max() < 1e-5  # the saved look is the one applied


def test_a_graded_frame_of_the_clip_gives_the_clip_its_grade(tmp_path, tiny_weights):
    """Issue 38: the reference is one frame of the shot, graded; the matched look is that grade."""
    clip = tmp_path / "pan.mp4"
    benchmark_module()["make_clip"](clip, read_image(SAMPLES / "source.jpg").rgb, 12, (320, 240), rate=12,
                                    audio=False)

    def grade(rgb):
        unit = rgb.astype(np.float32) / 255.0
        return np.clip(np.rint(np.stack([unit[..., 0] ** 0.8, unit[..., 1], unit[..., 2] ** 1.25], -1) * 255), 0,
                       255).astype(np.uint8)

    frames = _frames(clip)
    reference = grade(frames[5])
    matched = ColorTransfer(weights=tiny_weights)
    look = shot_look(matched, iter(frames), reference)
    assert look.shared_pixels is not None and look.shared_pixels.coverage > 0.95
    outputs = {}
    for name, engine in (("matched", matched), ("network", ColorTransfer(weights=tiny_weights, match="off"))):
        recolour_video(clip, reference, tmp_path / f"{name}.mp4", engine)
        outputs[name] = np.mean([np.abs(out.astype(int) - grade(frame).astype(int)).mean()
                                 for out, frame in zip(_frames(tmp_path / f"{name}.mp4"), frames)])
    assert outputs["matched"] < 2.5 < outputs["network"]


def _rotated_copy(clip, path, degrees: int) -> None:
    """``clip`` remuxed (no re-encoding) into ``path`` as a phone writes a portrait clip: the frames stored
    sideways with a display matrix rotating them by ``degrees``, plus a title and the streams' languages."""
    with av.open(str(clip)) as source, av.open(str(path), "w") as written:
        written.metadata["title"] = "a portrait clip"
        copies = {}
        for stream, language in zip((source.streams.video[0], source.streams.audio[0]), ("fra", "deu")):
            copies[stream.index] = written.add_stream_from_template(stream)
            copies[stream.index].metadata["language"] = language
        copies[source.streams.video[0].index].set_display_rotation(degrees)
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                written.mux(packet)


def _shown_as(path):
    """(the first frame's display rotation, its display matrix, the file's title, its streams' languages)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        matrix = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
        return (frame.rotation, None if matrix is None else bytes(matrix), container.metadata.get("title"),
                [stream.language for stream in container.streams])


@pytest.mark.parametrize("extension", [".mp4", ".mkv", ".webm"])  # audio copied, and re-encoded
def test_a_rotated_clip_keeps_its_rotation_and_metadata(tmp_path, clip, extension):
    """Issue 39: a portrait phone clip (frames stored sideways, shown through a -90° display matrix) comes
    out shown the same way, not sideways; the decoded frames are the stored ones, so the matrix is kept as is."""
    rotated = tmp_path / "portrait.mp4"
    _rotated_copy(clip, rotated, -90)
    shown = _shown_as(rotated)
    assert shown[0] == -90 and shown[1] is not None and shown[2:] == ("a portrait clip", ["fra", "deu"])
    out = tmp_path / f"out{extension}"
    recolour_video(rotated, read_image(REFERENCE).rgb, out, ColorTransfer("reinhard"))
    assert _shown_as(out) == shown
    assert _frames(out)[0].shape == _frames(rotated)[0].shape == (64, 96, 3)  # not rotated twice
