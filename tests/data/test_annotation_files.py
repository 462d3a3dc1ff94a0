"""Point (napari Points layer) and box CSV files: exact round trips and one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_monai.data import (
    image_to_points,
    points_to_image,
    read_boxes_csv,
    read_points_csv,
    write_boxes_csv,
    write_points_csv,
)


def test_reads_a_file_as_napari_saves_it(tmp_path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("index,axis-0,axis-1\n0,2.4,3.6\n1,0.0,1.0\n")
    coordinates, labels = read_points_csv(path)
    np.testing.assert_array_equal(coordinates, [[2.4, 3.6], [0.0, 1.0]])
    np.testing.assert_array_equal(labels, [1, 2])
    expected = [[0, 2, 0, 0, 0], [0] * 5, [0, 0, 0, 0, 1]]
    np.testing.assert_array_equal(points_to_image(coordinates, labels, (3, 5)), expected)


def test_label_column_and_round_trip_in_3d(tmp_path) -> None:
    annotation = np.zeros((2, 3, 4), dtype=np.int64)
    annotation[0, 1, 2], annotation[1, 2, 3], annotation[1, 0, 0] = 7, -1, 4
    coordinates, labels = image_to_points(annotation)
    np.testing.assert_array_equal(labels, [7, 4, -1])
    write_points_csv(tmp_path / "p.csv", coordinates, labels)
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "index,axis-0,axis-1,axis-2,label"
    read_coordinates, read_labels = read_points_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(points_to_image(read_coordinates, read_labels, annotation.shape), annotation)


def test_empty_layer_gives_no_points(tmp_path) -> None:
    (tmp_path / "e.csv").write_text("index,axis-0,axis-1\n")
    coordinates, labels = read_points_csv(tmp_path / "e.csv")
    assert coordinates.shape == (0, 2) and labels.shape == (0,)
    np.testing.assert_array_equal(points_to_image(coordinates, labels, (2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("index,x,y\n0,1,2\n", "expected a napari Points header"),
        ("index,axis-0,axis-1\n0,1\n", "line 2: expected 3 values"),
        ("index,axis-0,axis-1\n0,1,2\n1,a,2\n", "line 3: column 'axis-0' must be a number, found 'a'"),
        ("index,axis-0,axis-1\n0,1,nan\n", "column 'axis-1' must be a finite number"),
        ("index,axis-0,axis-1,label\n0,1,2,0\n", "'label' must be an object id > 0 or -1"),
        ("index,axis-0,axis-1,label\n0,1,2,1.5\n", "'label' must be an integer"),
    ],
)
def test_malformed_points_files_name_the_file(tmp_path, content, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_points_csv(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_points_file_names_the_file(tmp_path) -> None:
    with pytest.raises(ValueError, match=f"points file {tmp_path / 'none.csv'} cannot be read"):
        read_points_csv(tmp_path / "none.csv")


def test_points_outside_the_image_raise() -> None:
    with pytest.raises(ValueError, match=r"point 1 at \[3.0, 0.0\] lies outside the image of shape \(3, 3\)"):
        points_to_image(np.array([[0.0, 0.0], [3.0, 0.0]]), np.array([1, 2]), (3, 3))
    with pytest.raises(ValueError, match=r"expected \(N, 3\) coordinates"):
        points_to_image(np.zeros((1, 2)), np.array([1]), (3, 3, 3))


def test_boxes_round_trip(tmp_path) -> None:
    boxes = np.array([[3, 1, 1, 6, 12], [5, 6, 2, 9, 5]])
    write_boxes_csv(tmp_path / "b.csv", boxes)
    lines = ["label,start-0,start-1,stop-0,stop-1", "3,1,1,6,12", "5,6,2,9,5"]
    assert (tmp_path / "b.csv").read_text().splitlines() == lines
    np.testing.assert_array_equal(read_boxes_csv(tmp_path / "b.csv"), boxes)
    with pytest.raises(ValueError, match=r"shape \(N, 5\) or \(N, 7\)"):
        write_boxes_csv(tmp_path / "c.csv", np.zeros((2, 4)))


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "expected the header"),
        ("label,start-0,start-1,stop-0\n", "expected the header"),
        ("label,start-0,start-1,stop-0,stop-1\n1,0,0,2\n", "line 2: expected 5 values, found 4"),
        ("label,start-0,start-1,stop-0,stop-1\n1,0,0,2,x\n", "line 2: expected integers"),
        ("label,start-0,start-1,stop-0,stop-1\n0,0,0,2,2\n", "the label must be an object id > 0"),
        ("label,start-0,start-1,stop-0,stop-1\n1,0,3,2,3\n", "expected 0 <= start < stop"),
    ],
)
def test_malformed_boxes_files_name_the_file(tmp_path, content, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_boxes_csv(path)
    assert str(path) in str(error.value)
