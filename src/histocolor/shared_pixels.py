"""Shared pixels: find where the reference shows the source's own pixels, and fit the look there.

When the reference is an edited, cropped or exported copy of the source (or a graded frame
of the same shot), the exact look is in the pixels the two share: a colour map fitted on
them reproduces the edit far better than any histogram can (the reference's histogram is
not the whole edited photo's when it is cropped).

- :func:`find_shared_pixels` registers the reference on the source: ORB features on
  contrast-equalised grey small copies (so they survive exposure, contrast and colour
  grades), mirrored or not, a homography by MAGSAC, then a check that the two images agree
  where the homography lays them over each other. The result says which share of the
  source the reference shows (its *coverage*) and how to warp one onto the other.
- :func:`fit_shared_looks` samples corresponding pixels (registered to a fraction of a pixel,
  away from the overlap's border and from what the reference does not show of the source),
  fits a 3D LUT on them robustly, so that what disagrees with one global look (something that
  moved, a local edit) does not bend it, and reports such a disagreement. By regions, one
  LUT per region, on the shared pixels inside it.

OpenCV does the features and the geometry (measured in docs/BENCHMARKS.md, "Issue 38").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from histocolor.colormap import LutMap
from histocolor.dtypes import full_scale, to_uint
from histocolor.errors import HistocolorError
from histocolor.lut import DEFAULT_LUT_SIZE, DEFAULT_SMOOTHNESS, fit_lut, interpolate

DETECT_SIDE = 640  # long side of the small copies registered (features and the agreement check)
FIT_SIDE = 768  # long side of the source copy the look is fitted on
_FEATURES = 1500
_RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
_REPROJECTION = 4.0  # pixels at DETECT_SIDE: a match farther than this from the homography is an outlier
# The decision, measured on same-photo references against unrelated photos and the other half of
# the same photo (docs/BENCHMARKS.md, "Issue 38"): enough geometric inliers, a sane homography
# and images that agree, structure for structure, where it lays them over each other.
MIN_INLIERS = 20
MIN_AGREEMENT = 0.3
# Fewer inliers than this is weak geometric evidence: a self-similar texture (ripples, cables,
# dunes) can place a crop wrongly with 20-35 of them; then the structure must agree strongly.
STRONG_INLIERS = 50
WEAK_MIN_AGREEMENT = 0.7
MIN_COVERAGE = 0.05
FORCED_MIN_INLIERS = 10  # with the match forced on, fewer inliers (and any coverage) are accepted
_SMALLEST = 48  # pixels on the short side below which an image holds too few features to register
_SMALLEST_SHRUNK = 32  # the same, on the small copies registered
# The fit (each choice measured on the development pairs: docs/BENCHMARKS.md, "Issue 38").
_MAX_SAMPLES = 80_000
_FEWEST_SAMPLES = 500
_BORDER = 3  # pixels of the overlap's border left out (the warp's interpolation reaches outside)
_BLUR = 0.3  # Gaussian sigma (pixels) both images are softened by before their pixels are compared
_CHROMA_BLUR = 1.5  # and their colour, where the reference's colour is coarse (JPEG's 4:2:0)
_COARSE_CHROMA = 0.6  # the reference keeps under this share of the fine colour detail it keeps of brightness
_WINDOW = 15  # pixels: the windows in which the two images' structure is compared (occlusions)
_TEXTURE = 4.0  # grey levels of local deviation from which a window is textured
_MEDIAN_BINS = 24  # bins per axis of source colour for the median look the robust fit starts from
_TRIM = 5.0  # robust scales of residual past which a pixel is left out of a refit
_REFITS = 1
_LOCAL_EDIT_LEVELS = 4.0  # 8-bit levels of mean residual over a sixth of the overlap: a local edit


@dataclass(frozen=True)
class SharedPixels:
    """Where the reference shows the source's pixels.

    Attributes:
        coverage: the share of the source the reference shows, in [0, 1].
        inliers: feature matches that agree with the homography.
        agreement: correlation of the two images' structure where they overlap, in [-1, 1].
        homography: ``(3, 3)`` map of source pixel coordinates (x, y; full size) to the reference's.
        mirrored: the reference is a mirror image of the source.
        local_edit: what the residuals of the fitted look showed, if a part of the reference
            disagrees with one global look (a vignette, a graduated filter, something that moved).
    """

    coverage: float
    inliers: int
    agreement: float
    homography: np.ndarray
    mirrored: bool = False
    local_edit: str | None = None

    def describe(self) -> str:
        """One line for people, e.g. ``same photo: 64 % of the source matched``."""
        line = f"same photo: {100 * self.coverage:.0f} % of the source matched"
        return line if self.local_edit is None else f"{line}; {self.local_edit}"


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise HistocolorError("matching shared pixels needs OpenCV: pip install opencv-python-headless") from None
    return cv2


def _shrink(rgb: np.ndarray, side: int, quick: bool = False) -> tuple[np.ndarray, float]:
    """``rgb`` with its long side at most ``side`` (area averaging), and the scale it was shrunk by.

    ``quick`` first picks pixels to twice the size (nearest neighbour), then averages: features
    need no more, and it reads a fraction of a 12 MP photo's memory.
    """
    cv2 = _cv2()
    height, width = rgb.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if quick and scale < 0.25:
        rgb = cv2.resize(rgb, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA), scale


def _grey(rgb: np.ndarray) -> np.ndarray:
    """8-bit grey of an RGB image of any dtype."""
    cv2 = _cv2()
    if rgb.dtype != np.uint8:
        rgb = to_uint(rgb.astype(np.float32) / np.float32(full_scale(rgb.dtype)), np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _equalised(grey: np.ndarray) -> np.ndarray:
    """Contrast-limited local equalisation: features then see structure, not exposure or grade."""
    return _cv2().createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(grey)


def _features(grey: np.ndarray):
    cv2 = _cv2()
    orb = cv2.ORB_create(nfeatures=_FEATURES, fastThreshold=10, edgeThreshold=15, patchSize=15)
    points, descriptors = orb.detectAndCompute(grey, None)
    return np.float32([p.pt for p in points]).reshape(-1, 2), descriptors


def _matches(source_descriptors, reference_descriptors) -> np.ndarray:
    """Indices ``(M, 2)`` (source, reference) of matches passing the ratio test."""
    cv2 = _cv2()
    if source_descriptors is None or reference_descriptors is None or len(reference_descriptors) < 2:
        return np.zeros((0, 2), np.int64)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(source_descriptors, reference_descriptors, k=2)
    kept = [(best.queryIdx, best.trainIdx) for best, *rest in pairs
            if rest and best.distance < _RATIO * rest[0].distance]
    return np.array(kept, np.int64).reshape(-1, 2)


def _homography(source_points, reference_points):
    """MAGSAC homography source -> reference and its inliers (a boolean per match); (None, None) if none."""
    cv2 = _cv2()
    if len(source_points) < 4:
        return None, None
    matrix, inliers = cv2.findHomography(source_points, reference_points, cv2.USAC_MAGSAC, _REPROJECTION,
                                         maxIters=2000, confidence=0.999)
    if matrix is None or inliers is None:
        return None, None
    return matrix, inliers.ravel() > 0



def _is_sane(matrix: np.ndarray, source_shape) -> bool:
    """A homography a real copy of a photo could have: no fold, a bounded change of scale and tilt."""
    affine = matrix[:2, :2] / matrix[2, 2]
    determinant = np.linalg.det(affine)
    if not np.isfinite(matrix).all() or abs(determinant) < 1 / 64 or abs(determinant) > 64:
        return False
    height, width = source_shape[:2]
    corners = np.float32([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]]) @ matrix.T
    # The source's corners land in front of the camera: a homography through the horizon is no copy.
    return bool((corners[:, 2] * matrix[2, 2] > 0).all())


def _overlap(matrix: np.ndarray, source_shape, reference_shape) -> np.ndarray:
    """Boolean ``(h, w)``: the source pixels whose homography image falls inside the reference."""
    cv2 = _cv2()
    height, width = source_shape[:2]
    inside = np.full(reference_shape[:2], 255, np.uint8)
    warped = cv2.warpPerspective(inside, matrix, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped > 0


def _agreement(source_grey, reference_grey, matrix, overlap) -> float:
    """Correlation of the gradient magnitudes of the source and the warped reference over the overlap.

    Gradients of equalised grey are blind to tone: an edited copy correlates strongly (0.7-0.95
    measured), an image a homography only happened to fit does not.
    """
    cv2 = _cv2()
    height, width = source_grey.shape
    warped = cv2.warpPerspective(reference_grey, matrix, (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

    def edges(grey):
        blurred = cv2.GaussianBlur(grey, (0, 0), 1.0).astype(np.float32)
        return cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))

    inside = cv2.erode(overlap.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if inside.sum() < 64:
        return 0.0
    first, second = edges(source_grey)[inside], edges(warped)[inside]
    first, second = first - first.mean(), second - second.mean()
    norm = float(np.sqrt((first * first).sum() * (second * second).sum()))
    return float((first * second).sum() / norm) if norm > 0 else 0.0


def _scaled(matrix: np.ndarray, source_scale: float, reference_scale: float) -> np.ndarray:
    """A homography between small copies as one between the images at full size (and back)."""
    return np.diag([1 / reference_scale, 1 / reference_scale, 1.0]) @ matrix @ np.diag([source_scale, source_scale, 1.0])


def find_shared_pixels(source_rgb: np.ndarray, reference_rgb: np.ndarray, *, forced: bool = False
                       ) -> SharedPixels | None:
    """Whether ``reference_rgb`` shows pixels of ``source_rgb`` (both ``(H, W, 3)``, any dtype), and where.

    Survives tone changes (exposure, contrast, colour grades), mirroring, rotation, scale,
    crops, perspective and partial overlap. ``forced`` accepts weaker evidence (fewer
    inliers, any coverage), for a user who says the two are the same photo.

    Returns:
        :class:`SharedPixels`, or None when the reference shows none of the source's pixels.

    Example:
        >>> photo = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
        >>> found = find_shared_pixels(photo, np.ascontiguousarray(photo[20:180, ::-1] // 2))
        >>> found.mirrored, round(found.coverage, 1)
        (True, 0.8)
    """
    candidate = best_registration(source_rgb, reference_rgb)
    return candidate if candidate is not None and is_same_photo(candidate, forced) else None


def is_same_photo(candidate: SharedPixels, forced: bool = False) -> bool:
    """The decision on a registration: enough inliers, a share of the source seen, and structure
    that agrees where the homography lays the images over each other (strongly, where the
    inliers are few)."""
    least = WEAK_MIN_AGREEMENT if candidate.inliers < STRONG_INLIERS else MIN_AGREEMENT
    if forced:
        return candidate.inliers >= FORCED_MIN_INLIERS and candidate.agreement >= least
    return candidate.inliers >= MIN_INLIERS and candidate.coverage >= MIN_COVERAGE and candidate.agreement >= least


def best_registration(source_rgb: np.ndarray, reference_rgb: np.ndarray) -> SharedPixels | None:
    """The best geometric hypothesis of where the reference shows the source, with its evidence
    (inliers, coverage, agreement), before any decision; None when there is no sane homography."""
    if min(source_rgb.shape[:2]) < _SMALLEST or min(reference_rgb.shape[:2]) < _SMALLEST:
        return None  # too small to hold features: nothing to match
    small_source, source_scale = _shrink(source_rgb, DETECT_SIDE, quick=True)
    small_reference, reference_scale = _shrink(reference_rgb, DETECT_SIDE, quick=True)
    if min(small_source.shape[:2]) < _SMALLEST_SHRUNK or min(small_reference.shape[:2]) < _SMALLEST_SHRUNK:
        return None  # a strip: too thin, once shrunk, to hold features
    source_grey, reference_grey = _equalised(_grey(small_source)), _equalised(_grey(small_reference))
    source_points, source_descriptors = _features(source_grey)
    width = reference_grey.shape[1]
    best = None
    for mirrored in (False, True):
        grey = reference_grey[:, ::-1].copy() if mirrored else reference_grey
        points, descriptors = _features(grey)
        matched = _matches(source_descriptors, descriptors)
        if len(matched) < 4:
            continue
        # Fitted to the mirrored image as it is (a mirroring homography fails RANSAC's orientation
        # checks), then composed with the flip back to the reference's own coordinates.
        matrix, inliers = _homography(source_points[matched[:, 0]], points[matched[:, 1]])
        if matrix is None or (best is not None and inliers.sum() <= best[1]):
            continue
        if mirrored:
            matrix = np.array([[-1.0, 0.0, width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ matrix
        best = (matrix, int(inliers.sum()), mirrored)
    if best is None or not _is_sane(best[0], source_grey.shape):
        return None
    matrix, inliers, mirrored = best
    overlap = _overlap(matrix, source_grey.shape, reference_grey.shape)
    agreement = _agreement(source_grey, reference_grey, matrix, overlap)
    return SharedPixels(float(overlap.mean()), inliers, agreement, _scaled(matrix, source_scale, reference_scale),
                        mirrored)


def _unit(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / np.float32(full_scale(rgb.dtype))


def _tone_matched(grey: np.ndarray, like: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """``grey`` (uint8) with its histogram matched to ``like``'s (both counted ``where`` given), as
    float32: the same tones for a direct comparison."""
    if where is not None and not where.any():
        return grey.astype(np.float32)  # nothing to compare: the tones as they are
    mine = np.cumsum(np.bincount((grey if where is None else grey[where]).ravel(), minlength=256)).astype(np.float64)
    theirs = np.cumsum(np.bincount((like if where is None else like[where]).ravel(), minlength=256)).astype(np.float64)
    curve = np.interp(mine / mine[-1], theirs / theirs[-1], np.arange(256.0)).astype(np.float32)
    return curve[grey]


def _refined(matrix: np.ndarray, source_rgb: np.ndarray, reference_rgb: np.ndarray) -> np.ndarray:
    """``matrix`` (source -> reference pixels) refined to a fraction of a pixel.

    Feature positions from an image pyramid are off by a pixel or more, which blurs the
    correspondence at every edge. Corners of the source are first tracked (pyramidal
    Lucas-Kanade, on equalised grey) into the reference warped by ``matrix`` and the
    homography refitted on them (robustly); then the enhanced correlation coefficient (ECC)
    aligns the two greys directly, the reference's tones matched to the source's, leaving out
    what the reference does not show of the source (:func:`_occluded`). The candidate that
    correlates best there wins.
    """
    cv2 = _cv2()
    height, width = source_rgb.shape[:2]
    source_grey, reference_grey = _grey(source_rgb), _grey(reference_rgb)
    # Both blurred as ECC sees them (its Gaussian filter of size 3), so the score judges what it optimised.
    template = cv2.GaussianBlur(source_grey.astype(np.float32), (3, 3), 0)
    image = cv2.GaussianBlur(_tone_matched(reference_grey, source_grey), (3, 3), 0)

    def compared(candidate) -> np.ndarray:
        """Where the candidate lays the reference over the source, less what is occluded."""
        overlap = _overlap(candidate, (height, width), reference_rgb.shape)
        warped = cv2.warpPerspective(reference_rgb, candidate, (width, height),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        return overlap & ~_occluded(source_rgb, warped, overlap)

    def score(candidate, where) -> float:
        inside = (where & _overlap(candidate, (height, width), reference_rgb.shape)).astype(np.uint8)
        if inside.sum() < 64:
            return -1.0
        warped = cv2.warpPerspective(image, candidate, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        return float(cv2.computeECC(template, warped, inside))

    candidates = [matrix, _tracked(matrix, source_grey, reference_grey, (height, width))]
    candidates = [c for c in candidates if c is not None and _is_sane(c, (height, width))]
    where = compared(matrix)
    start = max(candidates, key=lambda c: score(c, where))
    if start is not matrix:
        where = compared(start)
    aligned = _ecc(start, template, image, where)
    if aligned is not None and _is_sane(aligned, (height, width)):
        candidates.append(aligned)
    return max(candidates, key=lambda c: score(c, where))


def _tracked(matrix, source_grey, reference_grey, shape):
    """The homography refitted on source corners tracked into the warped reference (equalised grey), or None."""
    cv2 = _cv2()
    height, width = shape
    source_grey = _equalised(source_grey)
    warped = cv2.warpPerspective(_equalised(reference_grey), matrix, (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside = cv2.erode(_overlap(matrix, shape, reference_grey.shape).astype(np.uint8), np.ones((31, 31), np.uint8))
    corners = cv2.goodFeaturesToTrack(source_grey, maxCorners=600, qualityLevel=0.01, minDistance=8, mask=inside)
    if corners is None or len(corners) < 12:
        return None
    tracked, found, _ = cv2.calcOpticalFlowPyrLK(source_grey, warped, corners, None, winSize=(21, 21), maxLevel=2)
    found = found.ravel() == 1
    if found.sum() < 12:
        return None
    # The correction is fitted in the source's frame, where it is near the identity (RANSAC's
    # orientation checks refuse a mirroring homography), then composed with ``matrix``.
    correction, inliers = cv2.findHomography(corners.reshape(-1, 2)[found], tracked.reshape(-1, 2)[found],
                                             cv2.USAC_MAGSAC, 1.0, maxIters=2000, confidence=0.999)
    if correction is None or inliers is None or inliers.sum() < 12:
        return None
    return matrix @ correction


def _ecc(matrix, template, image, where):
    """The homography that maximises the ECC of the source grey and the warped reference ``where``
    (a boolean mask of the source), or None."""
    cv2 = _cv2()
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    start = (matrix / matrix[2, 2]).astype(np.float32)
    try:
        if hasattr(cv2, "findTransformECCWithMask"):  # OpenCV 4.13 and 5
            _, found = cv2.findTransformECCWithMask(template, image, where.astype(np.uint8),
                                                    np.full(image.shape, 255, np.uint8), start,
                                                    cv2.MOTION_HOMOGRAPHY, criteria, 1)
        else:  # older OpenCV: the whole overlap (the candidates are still scored without the occlusions)
            _, found = cv2.findTransformECC(template, image, start, cv2.MOTION_HOMOGRAPHY, criteria, None, 1)
    except cv2.error:  # it did not converge
        return None
    return found.astype(np.float64)


def corresponding_pixels(source_rgb: np.ndarray, reference_rgb: np.ndarray, shared: SharedPixels,
                         rng: np.random.Generator | None = None, source_alpha: np.ndarray | None = None,
                         reference_alpha: np.ndarray | None = None):
    """Corresponding colours of the two images where they share pixels, for fitting the look.

    The homography is first refined to a fraction of a pixel (:func:`_refined`), so edges can
    stay in (leaving the steepest tenth out was measured 0.2-0.4 dB worse once registration is
    sub-pixel; the robust fit drops what still disagrees). Left out: the overlap's border and
    what the reference does not show of the source (:func:`_occluded`), and pixels transparent
    in either image (``source_alpha``, ``reference_alpha``: ``(H, W)`` of each, any dtype).
    Both images are softened alike (:func:`_softened`).

    Returns:
        ``(source_colours, reference_colours, positions)``: ``(N, 3)`` float32 in [0, 1] each,
        and ``(N, 2)`` positions (x, y) as shares of the source's width and height.
    """
    cv2 = _cv2()
    rng = rng or np.random.default_rng(0)
    # The fit runs where a reference pixel is about a source pixel: a smaller reference (an
    # export at half the size) would otherwise be compared, blurred, with the source's detail.
    reference_per_source = float(np.sqrt(abs(np.linalg.det(shared.homography[:2, :2] / shared.homography[2, 2]))))
    side = FIT_SIDE if reference_per_source > 0.8 else max(64, round(max(source_rgb.shape[:2]) * reference_per_source))
    side = min(FIT_SIDE, side)
    small_source, scale = _shrink(source_rgb, side)
    height, width = small_source.shape[:2]
    matrix = shared.homography @ np.diag([1 / scale, 1 / scale, 1.0])  # fit-size source -> full reference
    # A reference larger than the fit's copy is shrunk first, by area as the source was: warping it
    # directly would alias, and filter it otherwise than the source.
    reference_step = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2] / matrix[2, 2]))))
    reference = reference_rgb
    if reference_step > 1.05:
        reference, shrink = _shrink(reference_rgb, int(max(reference_rgb.shape[:2]) / reference_step))
        matrix = np.diag([shrink, shrink, 1.0]) @ matrix
    reference = np.ascontiguousarray(reference)
    matrix = _refined(matrix, small_source, reference)
    source = _unit(small_source)
    warped = cv2.warpPerspective(_unit(reference), matrix, (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    # The warped reference went through interpolation (ours, and often the copy's own rotation or
    # tilt): the source goes through the same round trip, so both are equally soft.
    there = cv2.warpPerspective(source, matrix, (reference.shape[1], reference.shape[0]), flags=cv2.INTER_LINEAR)
    source = cv2.warpPerspective(there, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    usable = _overlap(matrix, (height, width), reference.shape)
    usable = cv2.erode(usable.astype(np.uint8), np.ones((2 * _BORDER + 1,) * 2, np.uint8)) > 0
    for alpha, warp in ((source_alpha, None), (reference_alpha, matrix)):
        if alpha is not None:
            usable &= _visible(alpha, (height, width), warp, reference.shape)
    usable &= ~_occluded(small_source, cv2.warpPerspective(reference, matrix, (width, height),
                                                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP), usable)
    chroma_blur = _CHROMA_BLUR if _chroma_is_coarse(source, warped, usable) else 0.0
    source, warped = _softened(source, chroma_blur), _softened(warped, chroma_blur)
    rows, columns = np.nonzero(usable)
    if len(rows) > _MAX_SAMPLES:
        chosen = rng.choice(len(rows), _MAX_SAMPLES, replace=False)
        rows, columns = rows[chosen], columns[chosen]
    positions = np.stack([(columns + 0.5) / width, (rows + 0.5) / height], axis=1).astype(np.float32)
    return source[rows, columns], np.clip(warped[rows, columns], 0.0, 1.0), positions


def _visible(alpha: np.ndarray, shape, matrix: np.ndarray | None, reference_shape) -> np.ndarray:
    """Boolean ``shape``: where an alpha plane is fully opaque, at the fit's size (the source's) or
    warped there by ``matrix`` (the reference's, first brought to ``reference_shape``)."""
    cv2 = _cv2()
    opaque = (alpha >= full_scale(alpha.dtype)).astype(np.float32)
    if matrix is None:  # area averaging: a pixel next to a transparent one is not fully opaque
        return cv2.resize(opaque, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 0.999
    opaque = cv2.resize(opaque, (reference_shape[1], reference_shape[0]), interpolation=cv2.INTER_AREA)
    warped = cv2.warpPerspective(opaque, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return warped >= 0.999


def _softened(rgb: np.ndarray, chroma_blur: float = 0.0) -> np.ndarray:
    """A float RGB image blurred a little (noise and resampling differ between the two images), and
    its colour more where ``chroma_blur`` (a reference whose colour is coarser than its detail)."""
    cv2 = _cv2()
    if not chroma_blur:
        return cv2.GaussianBlur(rgb, (0, 0), _BLUR)
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    planes = [cv2.GaussianBlur(np.ascontiguousarray(ycc[..., c]), (0, 0), sigma)
              for c, sigma in enumerate((_BLUR, chroma_blur, chroma_blur))]
    return cv2.cvtColor(np.dstack(planes), cv2.COLOR_YCrCb2RGB)


def _chroma_is_coarse(source: np.ndarray, warped: np.ndarray, where: np.ndarray) -> bool:
    """Whether the reference keeps colour at a lower resolution than brightness (JPEG's 4:2:0, most
    video), judged by how much of the source's fine colour detail it keeps against its fine
    brightness detail. The fit then blurs the colour of both images alike."""
    cv2 = _cv2()
    if where.sum() < 1024:
        return False

    def detail(rgb):  # energy of the fine detail of luma and of chroma
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        fine = ycc - cv2.GaussianBlur(ycc, (0, 0), 1.0)
        energy = (fine[where] ** 2).mean(0)
        return energy[0], energy[1] + energy[2]

    source_luma, source_chroma = detail(source)
    reference_luma, reference_chroma = detail(warped)
    kept_luma = reference_luma / max(source_luma, 1e-12)
    kept_chroma = reference_chroma / max(source_chroma, 1e-12)
    return bool(kept_chroma < _COARSE_CHROMA * kept_luma)


def _occluded(source_rgb: np.ndarray, warped_rgb: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """Boolean ``(h, w)``: where the warped reference does not show the source's structure (something
    pasted, moved or covering it). Local correlation of the two greys (the reference's tones matched
    to the source's) in 15-pixel windows: low where both are textured, or one textured and the other
    flat, or their local brightness far apart. The tones are matched twice: the second time
    without what the first pass found occluded (a large black bar would skew them)."""
    source_grey, warped_grey = _grey(source_rgb), _grey(warped_rgb)
    occluded = np.zeros(overlap.shape, bool)
    for _ in range(2):
        agreeing = overlap & ~occluded
        occluded = _disagreeing(source_grey, warped_grey, overlap, agreeing if agreeing.any() else overlap)
    return occluded


def _disagreeing(source_grey, warped_grey, overlap, toned_on) -> np.ndarray:
    """One pass of :func:`_occluded`, the tones matched on ``toned_on``."""
    cv2 = _cv2()
    first = source_grey.astype(np.float32)
    second = _tone_matched(warped_grey, source_grey, toned_on)
    second[~overlap] = first[~overlap]  # outside the overlap nothing is compared: windows on its edge see agreement

    def mean(values):
        return cv2.blur(values, (_WINDOW, _WINDOW))

    first_mean, second_mean = mean(first), mean(second)
    first_var = np.maximum(mean(first * first) - first_mean**2, 0.0)
    second_var = np.maximum(mean(second * second) - second_mean**2, 0.0)
    correlation = (mean(first * second) - first_mean * second_mean) / np.sqrt(first_var * second_var + 1e-6)
    textured = np.minimum(first_var, second_var) > _TEXTURE**2
    one_flat = np.maximum(first_var, second_var) > 16 * (np.minimum(first_var, second_var) + _TEXTURE**2)
    occluded = (textured & (correlation < 0.5)) | one_flat | (np.abs(first_mean - second_mean) > 32.0)
    return cv2.dilate(occluded.astype(np.uint8), np.ones((_WINDOW, _WINDOW), np.uint8)) > 0


def _binned_medians(source: np.ndarray, target: np.ndarray, bins: int = _MEDIAN_BINS):
    """Per bin of source colour (``bins`` per axis): the mean source colour, the median target colour
    and the count. A median is the colour most of a bin's pixels agree on: a pasted object or a
    local edit that covers a minority of a colour's pixels does not move it."""
    cell = np.minimum((source * bins).astype(np.int64), bins - 1)
    key = (cell[:, 0] * bins + cell[:, 1]) * bins + cell[:, 2]
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    middles = starts + (counts - 1) // 2
    # Per channel, one sort by bin then value (the value quantised finer than 8 bits).
    levels = np.clip(np.rint(target * 4095.0), 0, 4095).astype(np.int64)
    medians = np.stack([np.sort(key * 4096 + levels[:, c])[middles] % 4096 for c in range(3)], axis=1) / 4095.0
    means = np.add.reduceat(source[order], starts, axis=0) / counts[:, None]
    return means.astype(np.float32), medians.astype(np.float32), counts.astype(np.float32)


def _robust_weights(residual: np.ndarray) -> np.ndarray:
    """Pixels whose residual is far past the robust scale of all residuals (the median, as a normal
    deviation) weigh 0, the others 1."""
    scale = max(1.4826 * float(np.median(residual)), 1.0 / 255)
    return (residual <= _TRIM * scale).astype(np.float32)


def _local_edit(residual: np.ndarray, positions: np.ndarray) -> str | None:
    """A note when the fit's signed residuals gather in one part of the image (a vignette, a graduated
    filter, something that moved): mean residual brightness over each cell of a 4x4 grid."""
    cells = np.minimum((positions * 4).astype(np.int64), 3)
    index = cells[:, 1] * 4 + cells[:, 0]
    brightness = residual.mean(1) * 255.0
    counts = np.bincount(index, minlength=16)
    means = np.bincount(index, weights=brightness, minlength=16) / np.maximum(counts, 1)
    off = (np.abs(means) > _LOCAL_EDIT_LEVELS) & (counts >= max(64, len(residual) // 64))
    if off.sum() * 6 < (counts > 0).sum():  # under a sixth of the overlap
        return None
    return "the reference looks edited locally (a vignette, a graduated filter or something that moved): " \
           "one global look cannot match it everywhere"


def _robust_lut(source, reference, lut_size, smoothness) -> np.ndarray:
    """A LUT fitted first on the median target colour of each bin of source colours, then once on
    every pixel that agrees with the look so far (within five robust deviations)."""
    colours, medians, counts = _binned_medians(source, reference)
    lut = fit_lut(colours, medians, lut_size, smoothness, weights=counts)
    for _ in range(_REFITS):
        weights = _robust_weights(np.linalg.norm(reference - interpolate(lut, source), axis=1))
        lut = fit_lut(source, reference, lut_size, smoothness, weights=weights, start=lut)
    return lut


def fit_shared_looks(source_rgb: np.ndarray, reference_rgb: np.ndarray, shared: SharedPixels, *,
                     label_map: np.ndarray | None = None, groups=(), lut_size: int = DEFAULT_LUT_SIZE,
                     smoothness: float = DEFAULT_SMOOTHNESS, source_alpha: np.ndarray | None = None,
                     reference_alpha: np.ndarray | None = None) -> "list[MatchedLut] | None":
    """The looks of the reference fitted on the pixels it shares with the source: one per group of
    source labels (``groups``, labels of the ``(H, W)`` ``label_map``), then the whole image's.

    Each is a robust 3D LUT fit (:func:`_robust_lut`), so that what disagrees with one look (an
    object that moved, a local edit) does not bend it. By regions, a region's look is fitted
    on the shared pixels inside it: an edit that differs from region to region (sky from
    ground) is followed; a region with too few shared pixels takes the whole image's look.
    Where the pixels correspond is known from the registration: the reference's own labels
    are not needed. Pixels transparent in either image (the alphas, ``(H, W)``) are left out.

    Returns:
        the LUT maps, each holding ``shared`` (the whole image's residuals fill in ``local_edit``
        where they show one); None when too few pixels are usable (a sliver of overlap, all of
        it occluded).
    """
    source, reference, positions = corresponding_pixels(source_rgb, reference_rgb, shared,
                                                        source_alpha=source_alpha, reference_alpha=reference_alpha)
    if len(source) < _FEWEST_SAMPLES:
        return None
    whole = _robust_lut(source, reference, lut_size, smoothness)
    found = replace(shared, local_edit=_local_edit(reference - interpolate(whole, source), positions))
    looks = []
    if groups:
        height, width = label_map.shape
        rows = np.minimum((positions[:, 1] * height).astype(np.int64), height - 1)
        columns = np.minimum((positions[:, 0] * width).astype(np.int64), width - 1)
        labels = label_map[rows, columns]
        for group in groups:
            inside = np.isin(labels, group)
            lut = whole if inside.sum() < _FEWEST_SAMPLES else \
                _robust_lut(source[inside], reference[inside], lut_size, smoothness)
            looks.append(MatchedLut(lut, found))
    return looks + [MatchedLut(whole, found)]


def fit_shared_look(source_rgb: np.ndarray, reference_rgb: np.ndarray, shared: SharedPixels, *,
                    lut_size: int = DEFAULT_LUT_SIZE, smoothness: float = DEFAULT_SMOOTHNESS) -> "MatchedLut | None":
    """The whole image's look fitted on the pixels the reference shares with the source (see
    :func:`fit_shared_looks`); None when too few pixels are usable."""
    looks = fit_shared_looks(source_rgb, reference_rgb, shared, lut_size=lut_size, smoothness=smoothness)
    return None if looks is None else looks[-1]


class MatchedLut(LutMap):
    """The LUT fitted on the pixels a reference shares with the source, and what was found."""

    def __init__(self, lut: np.ndarray, shared: SharedPixels):
        super().__init__(lut)
        self.shared = shared

    def blended(self, strength: float) -> "MatchedLut":
        return self if strength == 1.0 else MatchedLut(super().blended(strength).lut, self.shared)

    def tabulated(self, size: int = DEFAULT_LUT_SIZE) -> "MatchedLut":
        return MatchedLut(self.to_lut(size), self.shared)
