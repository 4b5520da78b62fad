"""Video: one look for a shot, applied frame by frame while streaming (PyAV, the ffmpeg bindings).

A look fitted on each frame alone would change with every frame's content and flicker.
Instead the shot's look is fitted once, on a mosaic of frames sampled evenly across the
clip (``temporal="shot"``), or fitted on key frames and smoothed over time
(``temporal="smooth"``, for shots whose light changes). Frames are decoded, recoloured and
encoded one at a time, so memory does not grow with the clip's length. The frame count,
timestamps (so the frame rate), size, audio, display rotation and metadata are kept.
"""

import math
from pathlib import Path

import numpy as np

from histocolor.atomic import atomic_path
from histocolor.colormap import Look, LutMap, from_unit
from histocolor.errors import HistocolorError, first_line
from histocolor.imageio import check_writable

VIDEO_EXTENSIONS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
TEMPORAL_MODES = ("shot", "smooth")
_TILE_SIDE = 512  # long side of a sampled frame in the mosaic the shot's look is fitted on
_KEY_FRAMES_PER_SECOND = 2  # temporal="smooth": looks fitted per second of video
_SMOOTHING_SECONDS = 1.0  # temporal="smooth": time constant of the looks' moving average
_QUALITY = {"libx264": {"crf": "17", "preset": "fast"}, "libvpx-vp9": {"crf": "20", "b": "0"}}
# Audio codecs each container takes as they are (others are re-encoded); None: any (Matroska).
_AUDIO_CODECS = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}, ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le"}, ".webm": {"opus", "vorbis"}, ".mkv": None,
}
# Metadata tags about how the source was encoded, not about its content: the output gets its own.
_ENCODING_TAGS = {"encoder", "duration", "major_brand", "minor_version", "compatible_brands"}


def check_video_output(path) -> Path:
    """The output must be a video format histocolor writes, in a writable place."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise HistocolorError(f"cannot write video '{path.name}': use one of {', '.join(VIDEO_EXTENSIONS)}")
    return check_writable(path)


def _open(path):
    import av

    path = Path(path)
    if not path.is_file():
        raise HistocolorError(f"video '{path}' does not exist")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise HistocolorError(f"cannot read video '{path}': {first_line(error)}") from None
    if not container.streams.video:
        container.close()
        raise HistocolorError(f"'{path}' holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def read_frames(path):
    """Every frame of the first video stream as ``(H, W, 3)`` uint8 sRGB, in order, one at a time."""
    import av

    container, stream = _open(path)
    with container:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise HistocolorError(f"cannot decode video '{path}': {first_line(error)}") from None


def sample_frames(frames, count: int) -> list[np.ndarray]:
    """About ``count`` frames spread evenly over ``frames`` (any iterable), holding at most ``2 * count``.

    The stride doubles whenever the kept frames fill up, so the memory used does not depend
    on the clip's length, and the kept frames stay evenly spaced.

    Example:
        >>> [int(f[0, 0, 0]) for f in sample_frames((np.full((1, 1, 3), i, np.uint8) for i in range(20)), 4)]
        [0, 4, 8, 12, 16]
    """
    kept, stride = [], 1
    for index, frame in enumerate(frames):
        if index % stride:
            continue
        kept.append(_shrink(frame))
        if len(kept) > 2 * count:
            kept, stride = kept[::2], stride * 2
    step = max(1, len(kept) // count)
    return kept[::step]


def _shrink(frame: np.ndarray) -> np.ndarray:
    """A frame (uint8, uint16 or float) with its long side at most the mosaic's tile side, same dtype."""
    from histocolor.methods.network import image_tensor

    if max(frame.shape[:2]) <= _TILE_SIDE:
        return frame
    small = image_tensor(np.ascontiguousarray(frame), _TILE_SIDE)[0].permute(1, 2, 0).numpy()
    return from_unit(small, frame.dtype)


def mosaic(frames: list[np.ndarray]) -> np.ndarray:
    """Frames of one size tiled in a near-square grid (empty cells repeat frames, never black)."""
    columns = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    cells = [frames[index % len(frames)] for index in range(rows * columns)]
    return np.concatenate([np.concatenate(cells[r * columns:(r + 1) * columns], axis=1) for r in range(rows)], axis=0)


def frame_mosaic(frames, sample_count: int = 9) -> np.ndarray:
    """A mosaic of frames sampled evenly across ``frames`` (a video's path, or any iterable of
    frames): what the shot looks like."""
    sampled = sample_frames(read_frames(frames) if isinstance(frames, (str, Path)) else frames, sample_count)
    if not sampled:
        raise HistocolorError("the video has no frames")
    return mosaic(sampled)


def video_megapixels(path) -> float:
    """Pixels in all frames of the video, in millions (counted by decoding when the header lacks it)."""
    container, stream = _open(path)
    with container:
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        return frames * stream.width * stream.height / 1e6


def shot_look(engine, frames, reference, sample_count: int = 9) -> Look:
    """The look of a whole shot: ``engine`` fitted on a mosaic of frames sampled across ``frames``.

    A reference that is a graded frame of the shot shares pixels with some sampled frame: the
    look is then fitted on the pixels of the frame that shares the most (see
    :meth:`~histocolor.engine.ColorTransfer.fit_shared`), the grade itself.
    """
    sampled = sample_frames(read_frames(frames) if isinstance(frames, (str, Path)) else frames, sample_count)
    if not sampled:
        raise HistocolorError("the video has no frames")
    found = [(shared.coverage, index) for index, shared in
             enumerate(engine.find_shared(frame, reference) for frame in sampled) if shared is not None]
    look = engine.fit_shared(sampled[max(found)[1]], reference) if found else None
    return look if look is not None else engine.fit(mosaic(sampled), reference)


class _SmoothedLook:
    """``temporal="smooth"``: a look fitted on every key frame, as a LUT averaged over time."""

    def __init__(self, engine, reference, frame_rate: float):
        self.engine, self.reference = engine, reference
        self.interval = max(1, round(frame_rate / _KEY_FRAMES_PER_SECOND))
        self.blend = 1.0 - math.exp(-self.interval / (frame_rate * _SMOOTHING_SECONDS))
        self.lut = None

    def at(self, index: int, frame: np.ndarray) -> LutMap:
        if index % self.interval == 0:
            fitted = self.engine.fit(frame, self.reference).maps[0].to_lut(self.engine.lut_size)
            self.lut = fitted if self.lut is None else self.lut + self.blend * (fitted - self.lut)
        return LutMap(self.lut)


def recolour_video(source, reference, output, engine, *, strength: float = 1.0, temporal: str = "shot",
                   sample_frames: int = 9, progress: bool = False, overwrite: bool = True) -> Look | None:
    """Recolour the video ``source`` after ``reference`` into ``output``; return the look applied.

    ``engine`` is a :class:`~histocolor.engine.ColorTransfer`. Every frame goes through the
    look tabulated as a 3D LUT of the engine's ``lut_size`` (what a saved .cube does, and
    fast). The output is written to a temporary file next to ``output`` and renamed when
    complete (without ``overwrite``, never over a file that exists by then). Returns the look
    applied, strength included (None with ``temporal="smooth"``, whose look changes over time).
    """
    import av

    if temporal not in TEMPORAL_MODES:
        raise HistocolorError(f"unknown temporal mode {temporal!r}: choose one of {', '.join(TEMPORAL_MODES)}")
    output = check_video_output(output)
    look = None
    if temporal == "shot":
        shot = shot_look(engine, read_frames(source), reference, sample_frames).blended(strength)
        look = Look([shot.maps[0].tabulated(engine.lut_size)])
    with _progress(None, progress) as bar, atomic_path(output, output.suffix, replace=overwrite) as temporary:
        try:
            frames = _encode_video(source, reference, temporary, output.suffix.lower(), engine, look, strength, bar)
        except (av.FFmpegError, ValueError) as error:  # PyAV reports unsupported formats as ValueError
            raise HistocolorError(f"video processing failed: {first_line(error)}") from None
        if frames == 0:
            raise HistocolorError(f"video '{source}' has no frames")
    return look


def _encode_video(source, reference, temporary, extension, engine, look, strength, bar) -> int:
    """Decode, recolour and encode every frame into ``temporary``, audio alongside; return the frame count."""
    import av

    container, stream = _open(source)
    with container, av.open(temporary, mode="w") as written:
        written.metadata.update(_content_tags(container.metadata))
        rate = stream.average_rate or stream.guessed_rate or 25
        smoothed = _SmoothedLook(engine, reference, float(rate)) if look is None else None
        video = _video_stream(written, stream, rate, VIDEO_EXTENSIONS[extension], _display_matrix(source))
        audio = {s.index: _audio_stream(written, s, extension) for s in container.streams.audio}
        bar.reset(total=stream.frames or None)
        index = 0
        for packet in container.demux(stream, *container.streams.audio):
            if packet.stream.index in audio:
                _write_audio(written, packet, *audio[packet.stream.index])
                continue
            for frame in packet.decode():
                rgb = frame.to_ndarray(format="rgb24")
                colour_map = look or smoothed.at(index, rgb).blended(strength)
                new = av.VideoFrame.from_ndarray(colour_map.apply(rgb), format="rgb24")
                # Timestamps are kept (variable frame rates too); a frame without one gets its slot.
                new.time_base = stream.time_base
                new.pts = frame.pts if frame.pts is not None else round(index / rate / stream.time_base)
                written.mux(video.encode(new))
                index += 1
                bar.update(1)
        written.mux(video.encode(None))
        for target, encoder in audio.values():
            if encoder:
                written.mux(target.encode(None))
    return index


def _display_matrix(path) -> list[int] | None:
    """The display matrix (FFmpeg's 9 integers: a rotation, flips) the video ``path`` is shown through, if any.

    A phone's portrait clip is stored sideways with a matrix that turns it upright. Decoders
    leave the pixels as stored (PyAV does not rotate them) and attach the matrix to every frame,
    so the output, made of the stored pixels, needs the same matrix. The first frame's is read:
    it has to be known before anything is written.
    """
    from av.sidedata.sidedata import Type

    container, stream = _open(path)
    with container:
        first = next(container.decode(stream), None)
        matrix = None if first is None else first.side_data.get(Type.DISPLAYMATRIX)
    return None if matrix is None else np.frombuffer(bytes(matrix), dtype=np.int32).tolist()


def _content_tags(metadata) -> dict[str, str]:
    """A file's or stream's metadata (title, language, creation time...) less the tags about its encoding."""
    return {key: value for key, value in metadata.items() if key.lower() not in _ENCODING_TAGS}


def _video_stream(written, template, rate, codec: str, matrix: list[int] | None):
    """An output video stream of ``template``'s size, time base and metadata, shown through the
    display ``matrix`` (see :func:`_display_matrix`; None: as stored)."""
    stream = written.add_stream(codec, rate=rate)
    stream.metadata.update(_content_tags(template.metadata))
    if matrix is not None:
        stream.set_display_matrix(matrix)
    stream.width, stream.height = template.width, template.height
    # 4:2:0 chroma needs even sizes; odd-sized clips keep full chroma instead.
    even = template.width % 2 == 0 and template.height % 2 == 0
    stream.pix_fmt = "yuv420p" if even else "yuv444p"
    # The encoder works in the source's time base, so no timestamp is rounded onto another.
    stream.time_base = stream.codec_context.time_base = template.time_base
    stream.options = dict(_QUALITY.get(codec, {}))
    return stream


def _audio_stream(written, template, extension: str):
    """(output stream, whether it re-encodes): the audio copied as it is where the container takes
    its codec, else re-encoded (AAC in MP4/MOV, Opus in WebM); its metadata (language...) kept."""
    kept = _AUDIO_CODECS.get(extension)
    if kept is None or template.codec_context.name in kept:
        stream, encodes = written.add_stream_from_template(template), False
    else:
        encoder = "libopus" if extension == ".webm" else "aac"
        rate = 48000 if encoder == "libopus" else template.codec_context.sample_rate
        stream, encodes = written.add_stream(encoder, rate=rate), True
        stream.layout = template.codec_context.layout.name if template.codec_context.layout else "stereo"
    stream.metadata.update(_content_tags(template.metadata))
    return stream, encodes


def _write_audio(written, packet, target, encoder: bool) -> None:
    if packet.dts is None:  # the demuxer's final empty packet is not data
        return
    if not encoder:
        packet.stream = target
        written.mux(packet)
        return
    for frame in packet.decode():
        frame.pts = None  # the encoder counts samples itself
        written.mux(target.encode(frame))


def _progress(total, shown: bool):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="video", unit="frame", file=sys.stderr, disable=not shown)


def frame_change(frames, max_side: int = 512) -> float:
    """Mean CIELab distance (ΔE76) between consecutive frames, each shrunk to ``max_side``.

    How much a clip's colours move from frame to frame: its flicker, plus its motion.
    """
    import torch

    from histocolor.color import rgb_to_lab
    from histocolor.methods.network import image_tensor

    previous, changes = None, []
    for frame in frames:
        lab = rgb_to_lab(image_tensor(frame, max_side))
        if previous is not None:
            changes.append(float(torch.linalg.vector_norm(lab - previous, dim=1).mean()))
        previous = lab
    return float(np.mean(changes)) if changes else 0.0


def added_flicker(source, output, max_side: int = 512) -> float:
    """The temporal-stability score: the output's :func:`frame_change` minus the input's (ΔE).

    0 means the recolouring adds no frame-to-frame change; a look refitted per frame adds more.
    ``source`` and ``output`` are video paths (or the input's change, already measured, as a number).
    """
    before = source if isinstance(source, float) else frame_change(read_frames(source), max_side)
    return frame_change(read_frames(output), max_side) - before
