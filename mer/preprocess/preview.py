"""A picture of what the network sees: one frame through every stage (like the paper's
Fig. 3) and the `depth`-frame strip the clip becomes."""

from __future__ import annotations

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mer.common.errors import MerError  # noqa: E402
from mer.preprocess.align import alignment_matrix, transform_points  # noqa: E402
from mer.preprocess.faces import largest_face  # noqa: E402
from mer.preprocess.frames import FrameSource  # noqa: E402
from mer.preprocess.pipeline import PreprocessSettings, face_backend, preprocess_clip, reference_index  # noqa: E402
from mer.preprocess.regions import clip_geometry  # noqa: E402
from mer.preprocess.temporal import window_indices  # noqa: E402

PREVIEW_SIDE = 256  # pixels of the face-crop panels


def stage_images(source: FrameSource, settings: PreprocessSettings, apex: int | None = None,
                 onset: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Named images of the reference frame after each stage, and the preprocessed clip."""
    reference = reference_index(len(source), window_indices(len(source), settings.depth, apex), onset)
    frame = source.read([reference], settings.frame_size)[reference]
    face = largest_face(face_backend(settings), frame, settings.detect_scale)
    if face is None:
        raise MerError(f"{source.path}: no face found in the reference frame {source.name(reference)}")
    detected = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(detected, face.box[:2], face.box[2:], (0, 255, 0), 2)
    matrix = alignment_matrix(face.landmarks)
    aligned = cv2.warpAffine(frame, matrix, frame.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
    points = transform_points(matrix, face.landmarks)
    marked = cv2.cvtColor(aligned, cv2.COLOR_GRAY2BGR)
    for x, y in points:
        cv2.circle(marked, (int(round(x)), int(round(y))), 2, (255, 60, 0), -1)
    cv2.line(marked, tuple(np.round(points[36]).astype(int)), tuple(np.round(points[45]).astype(int)), (0, 200, 255), 1)
    # The crop and the mask exactly as preprocessing makes them: the `face` layout's geometry.
    face_crop, masked = (clip_geometry(face.landmarks, matrix, "face", PREVIEW_SIDE, settings.margin, mask,
                                       settings.mask_scale).apply(frame) for mask in (False, True))
    clip = preprocess_clip(source, settings, apex, onset)
    stages = {
        "1 frame": frame,
        "2 face detected": detected,
        "3 aligned + 68 landmarks": marked,
        "4 face crop": face_crop,
        "5 eyes masked": masked if settings.eye_mask else face_crop,
        f"6 {settings.layout} {settings.size}x{settings.size} grey": clip[0],
    }
    return stages, clip


def preview_figure(source: FrameSource, settings: PreprocessSettings, apex: int | None = None,
                   onset: int | None = None, title: str = ""):
    stages, clip = stage_images(source, settings, apex, onset)
    figure = plt.figure(figsize=(3.0 * len(stages), 3.0 + 0.3 * len(stages)))
    grid = figure.add_gridspec(2, len(stages), height_ratios=[3, 1.3])
    for i, (name, image) in enumerate(stages.items()):
        axes = figure.add_subplot(grid[0, i])
        axes.imshow(image[..., ::-1] if image.ndim == 3 else image, cmap="gray", vmin=0, vmax=255)
        axes.set_title(name, fontsize=10)
        axes.axis("off")
    strip = figure.add_subplot(grid[1, :])
    strip.imshow(np.hstack(list(clip)), cmap="gray", vmin=0, vmax=255)
    strip.set_title(f"the {len(clip)} frames the network sees (around the apex)", fontsize=10)
    strip.axis("off")
    figure.suptitle(title or str(source.path), fontsize=11)
    figure.tight_layout()
    return figure
