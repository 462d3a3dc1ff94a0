"""ObjectIndex and per-pixel lookups: the id-table and sorted-id paths agree, lookups equal gather."""

from __future__ import annotations

import pytest
import torch

from spoco_monai.losses.objects import ObjectIndex, per_pixel


@pytest.mark.parametrize("largest_id", [1, 5, 300])
def test_id_table_and_sorted_ids_give_the_same_index(largest_id):
    generator = torch.Generator().manual_seed(largest_id)
    target = torch.randint(-1, largest_id + 1, (3, 200), generator=generator)
    target[1] = torch.where(target[1] > 0, 0, target[1])  # a sample without objects
    table = ObjectIndex.from_target(target)
    sorted_ids = ObjectIndex._from_sparse_ids(target, target > 0)
    assert torch.equal(table.slots, sorted_ids.slots)
    assert torch.equal(table.counts, sorted_ids.counts)


def test_slots_follow_id_order_for_ids_too_large_for_a_table():
    target = torch.tensor([[7 * 10**9, 0, 3, -1, 3, 10**12]])
    objects = ObjectIndex.from_target(target)
    assert objects.slots.tolist() == [[1, 3, 0, 3, 0, 2]]
    assert objects.counts.tolist() == [[2, 1, 1]]


@pytest.mark.parametrize("ids", [[-1, -1, -1], [0, 0, -1]])
def test_no_objects(ids):
    objects = ObjectIndex.from_target(torch.tensor([ids, ids]))
    assert objects.num_slots == 0
    assert (objects.slots == 0).all()


def test_per_pixel_equals_gather_and_is_differentiable():
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (2, 7), generator=generator)
    expected = table.gather(2, index.unsqueeze(1).expand(-1, 3, -1))
    assert torch.equal(per_pixel(table, index), expected)
    with torch.no_grad():
        assert torch.equal(per_pixel(table, index), expected)
    assert torch.autograd.gradcheck(lambda t: per_pixel(t, index), (table,))
