"""Face crop, polygon eye mask, and the recombination of regions into one square image.

A layout is a list of tiles: each tile takes the bounding box of some landmark groups
(in aligned coordinates) and fills a rectangle of the output. The paper's layout puts
the two eye+brow regions side by side on top and the mouth below; `face` is the
aligned face crop alone (an ablation). Every tile is one `warpAffine` straight from
the original frame: rotation, crop and resize composed into a single matrix, so no
intermediate image is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mer.common.errors import MerError
from mer.preprocess.align import transform_points
from mer.preprocess.faces import LEFT_BROW, LEFT_EYE, LEFT_EYE_OUTER, MOUTH, RIGHT_BROW, RIGHT_EYE, RIGHT_EYE_OUTER


@dataclass(frozen=True)
class Tile:
    name: str
    groups: tuple[slice, ...]  # landmark groups whose bounds define the source box
    rect: tuple[float, float, float, float]  # x, y, w, h as fractions of the output side


ALL_POINTS = slice(0, 68)
LAYOUTS: dict[str, tuple[Tile, ...]] = {
    "regions": (
        Tile("right_eye_brow", (RIGHT_BROW, RIGHT_EYE), (0.0, 0.0, 0.5, 0.5)),
        Tile("left_eye_brow", (LEFT_BROW, LEFT_EYE), (0.5, 0.0, 0.5, 0.5)),
        Tile("mouth", (MOUTH,), (0.0, 0.5, 1.0, 0.5)),
    ),
    "face": (Tile("face", (ALL_POINTS,), (0.0, 0.0, 1.0, 1.0)),),
}
EYES = (RIGHT_EYE, LEFT_EYE)


def layout(name: str) -> tuple[Tile, ...]:
    if name not in LAYOUTS:
        raise MerError(f"preprocess.layout={name!r} is unknown; choose one of {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def source_box(points: np.ndarray, margin: float, aspect: float) -> tuple[float, float, float, float]:
    """Bounds of `points` grown by `margin` (fraction of each side), then widened in one
    direction to the tile's aspect (w/h) so regions are never stretched."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    w, h = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    w, h = max(w, h * aspect, 1.0), max(h, w / aspect, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - w / 2, cy - h / 2, w, h


def head_shift(before: np.ndarray, after: np.ndarray) -> float:
    """How far the head moved between two frames' outer eye corners: their mean displacement
    in inter-ocular distances. A turn, a nod or a lean moves them; an expression hardly does."""
    distance = float(np.linalg.norm(before[1] - before[0]))
    return float(np.linalg.norm(after - before, axis=1).mean()) / max(distance, 1.0)


@dataclass(frozen=True)
class ClipGeometry:
    """Everything needed to turn any frame of a clip into the network's input image."""

    size: int
    tiles: tuple[tuple[np.ndarray, tuple[int, int, int, int]], ...]  # (2x3 matrix, x, y, w, h)
    mask: np.ndarray | None  # (size, size) uint8 of 0/1, zero over the eyes
    eyes: np.ndarray | None = None  # (2, 2) the outer eye corners in the frame: where the head is

    def apply(self, gray: np.ndarray) -> np.ndarray:
        out = np.empty((self.size, self.size), dtype=np.uint8)
        for matrix, (x, y, w, h) in self.tiles:
            out[y : y + h, x : x + w] = cv2.warpAffine(
                gray, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        if self.mask is not None:
            out *= self.mask
        return out


def clip_geometry(
    landmarks: np.ndarray,
    align: np.ndarray,
    layout_name: str,
    size: int,
    margin: float,
    eye_mask: bool,
    mask_scale: float,
) -> ClipGeometry:
    """Geometry from one frame's landmarks and its alignment rotation `align` (2x3)."""
    aligned = transform_points(align, landmarks)
    rotation = np.vstack([align, [0.0, 0.0, 1.0]])
    tiles = []
    mask = np.ones((size, size), dtype=np.uint8) if eye_mask else None
    for tile in layout(layout_name):
        fx, fy, fw, fh = tile.rect
        x, y = int(round(fx * size)), int(round(fy * size))
        w, h = int(round(fw * size)), int(round(fh * size))
        points = np.concatenate([aligned[g] for g in tile.groups])
        bx, by, bw, bh = source_box(points, margin, w / h)
        crop = np.array([[w / bw, 0.0, -bx * w / bw], [0.0, h / bh, -by * h / bh], [0.0, 0.0, 1.0]])
        matrix = (crop @ rotation)[:2]
        tiles.append((matrix, (x, y, w, h)))
        if mask is not None:
            _mask_eyes(mask, matrix, landmarks, tile, (x, y), mask_scale)
    return ClipGeometry(size, tuple(tiles), mask, landmarks[[RIGHT_EYE_OUTER, LEFT_EYE_OUTER]].astype(np.float64))


def _mask_eyes(mask, matrix, landmarks, tile: Tile, offset, mask_scale: float) -> None:
    for eye in EYES:
        if not any(g == eye or (g.start <= eye.start and eye.stop <= g.stop) for g in tile.groups):
            continue
        blank_eye(mask, transform_points(matrix, landmarks[eye]) + offset, mask_scale)


def blank_eye(image: np.ndarray, polygon: np.ndarray, scale: float) -> None:
    """Zero the eye polygon, grown about its centre by `scale` to cover the lashes."""
    centre = polygon.mean(axis=0)
    cv2.fillPoly(image, [np.round(centre + (polygon - centre) * scale).astype(np.int32)], 0)
