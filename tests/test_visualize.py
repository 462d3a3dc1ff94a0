from __future__ import annotations

import numpy as np

from spoco_monai.visualize import label_rgb

# the first two colours of the palette of seed 0
COLOUR_1 = [0.26239574, 0.85995269, 0.93456668]
COLOUR_2 = [0.70497686, 0.79712242, 0.65771872]


def test_label_colours_are_fixed_by_the_rank_of_each_id():
    rgb = label_rgb(np.array([[0, 5], [3, 5]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb.reshape(4, 3), [[0, 0, 0], COLOUR_2, COLOUR_1, COLOUR_2], rtol=1e-6)


def test_background_and_negative_ids_are_black_and_do_not_shift_the_colours():
    with_background = label_rgb(np.array([[0, 5], [3, -1]], dtype=np.int32))
    np.testing.assert_array_equal(with_background[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(label_rgb(np.array([[3, 5]], dtype=np.uint16)), with_background[[1, 0], [0, 1]][None])


def test_seed_changes_the_colours_and_empty_labels_give_no_colours():
    assert not np.array_equal(label_rgb(np.array([1, 2]), seed=0), label_rgb(np.array([1, 2]), seed=1))
    assert label_rgb(np.zeros((0, 4), dtype=np.int64)).shape == (0, 4, 3)
