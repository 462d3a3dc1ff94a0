"""SimulateScribbles(d): strokes along the skeleton, pieces around seeded starts, background strokes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.morphology import skeletonize

from spoco_monai.transforms import AnnotationManifest, SimulateScribbles, SimulateScribblesd
from spoco_monai.transforms.scribble_annotation import stroke_along


def bar() -> np.ndarray:
    """(1, 7, 12): object 4 a 5 x 10 bar."""
    label = np.zeros((1, 7, 12), dtype=np.int64)
    label[0, 1:6, 1:11] = 4
    return label


def test_whole_stroke_is_the_skeleton_of_the_shrunk_object() -> None:
    # pixels deeper than 1 form rows 2..4, columns 2..9; the stroke is skimage's skeleton of that block, a line
    # through its middle row
    shrunk = np.zeros((7, 12), dtype=bool)
    shrunk[2:5, 2:10] = True
    scribbles = SimulateScribbles(margin=1.0)(bar())
    np.testing.assert_array_equal(scribbles[0], 4 * skeletonize(shrunk))
    assert int((scribbles[0, 3] == 4).sum()) >= 5 and not bool(scribbles[0, [0, 1, 5, 6]].any())


def test_a_thin_object_gets_its_deepest_pixel() -> None:
    label = np.zeros((1, 3, 5), dtype=np.int64)
    label[0, 1, 1:4] = 2
    expected = np.zeros((1, 3, 5), dtype=np.int64)
    expected[0, 1, 1] = 2
    np.testing.assert_array_equal(SimulateScribbles(margin=1.0)(label), expected)


def test_stroke_along_grows_breadth_first_around_the_start() -> None:
    path = np.zeros((1, 9), dtype=bool)
    path[0, 1:8] = True
    np.testing.assert_array_equal(stroke_along(path, (0, 4), 3)[0], [0, 0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(stroke_along(path, (0, 1), 2)[0], [0, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(stroke_along(path, (0, 4), None), path)


def test_pieces_are_seeded_contiguous_and_recorded(tmp_path) -> None:
    manifest = tmp_path / "scribbles.json"
    scribbles = SimulateScribbles(length=3, margin=1.0, manifest_path=manifest)(bar(), "b.tif")
    stroke = np.argwhere(scribbles[0] == 4)
    assert len(stroke) == 3
    # three touching pixels: each within one step of another, the ends at most two steps apart
    assert np.abs(stroke[:, None] - stroke[None]).max() <= 2
    np.testing.assert_array_equal(scribbles, SimulateScribbles(length=3, margin=1.0)(bar(), "b.tif"))
    assert AnnotationManifest(manifest).read() == {"b.tif": {"objects": {"4": 3}, "background": 0}}


def test_background_strokes_stay_on_the_background() -> None:
    label = np.zeros((1, 16, 16), dtype=np.int64)
    label[0, 5:10, 5:10] = 1
    scribbles = SimulateScribbles(background_scribbles=2, background_length=5, margin=1.0)(label, "x")
    background = scribbles[0] == -1
    assert 5 <= int(background.sum()) <= 10
    assert bool((label[0][background] == 0).all())
    assert int((scribbles == 1).sum()) >= 1


def test_dictionary_version_writes_the_output_key() -> None:
    out = SimulateScribblesd(output_key="scribbles", margin=1.0)({"label": bar()})
    np.testing.assert_array_equal(out["scribbles"], SimulateScribbles(margin=1.0)(bar()))
    np.testing.assert_array_equal(out["label"], bar())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"length": 0}, "length must be None or an int >= 1"),
        ({"margin": -1.0}, "margin must be >= 0"),
        ({"background_scribbles": -2}, "background_scribbles"),
        ({"background_length": 0}, "background_length"),
    ],
)
def test_invalid_settings_raise(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        SimulateScribbles(**kwargs)
