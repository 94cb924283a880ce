"""SiteBatch: validation, flattening and the shared per-unit reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronatlas.errors import AccumulatorError, NeuronAtlasError
from neuronatlas.stats import Accumulator, SiteBatch, UnitStats


def test_flat_views_follow_the_mask():
    values = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    doc = torch.tensor([[7, 7, 7], [8, 8, 8]])
    pos = torch.tensor([[0, 1, 2], [0, 1, 2]])
    b = SiteBatch(values, mask, doc, pos)
    assert not b.all_valid
    assert b.n == 3
    np.testing.assert_array_equal(b.flat.numpy(), [[0, 1], [2, 3], [6, 7]])
    np.testing.assert_array_equal(b.flat_index.numpy(), [0, 1, 3])
    np.testing.assert_array_equal(b.flat_doc.numpy(), [7, 7, 8])
    np.testing.assert_array_equal(b.flat_pos.numpy(), [0, 1, 0])


def test_from_values_defaults_and_2d_input():
    b = SiteBatch.from_values(torch.ones(4, 3), first_doc=10)
    assert tuple(b.values.shape) == (4, 1, 3)
    assert b.all_valid
    np.testing.assert_array_equal(b.flat_doc.numpy(), [10, 11, 12, 13])
    np.testing.assert_array_equal(b.flat_pos.numpy(), [0, 0, 0, 0])


def test_integer_mask_is_read_as_nonzero():
    b = SiteBatch.from_values(torch.ones(1, 3, 2), mask=torch.tensor([[1, 0, 1]]))
    assert b.mask.dtype == torch.bool
    assert b.n == 2


def test_shared_reductions_exclude_nonfinite():
    x = torch.tensor([[[1.0, float("nan")], [-2.0, 5.0], [float("inf"), float("-inf")]]])
    b = SiteBatch.from_values(x)
    assert b.has_nonfinite
    np.testing.assert_array_equal(b.n_finite.numpy(), [2, 1])
    lo, hi = b.minmax
    np.testing.assert_array_equal(lo.numpy(), [-2.0, 5.0])
    np.testing.assert_array_equal(hi.numpy(), [1.0, 5.0])
    clean = SiteBatch.from_values(torch.tensor([[[1.0, 2.0], [3.0, -4.0]]]))
    assert not clean.has_nonfinite
    np.testing.assert_array_equal(clean.colsum.numpy(), [4.0, -2.0])
    np.testing.assert_array_equal(clean.n_finite.numpy(), [2, 2])


def test_huge_finite_values_take_the_slow_path_but_count_as_finite():
    x = torch.full((1, 4, 1), 3e38)  # the float32 sum overflows, every value is finite
    b = SiteBatch.from_values(x)
    assert b.has_nonfinite
    np.testing.assert_array_equal(b.n_finite.numpy(), [4])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": torch.ones(2, 3)}, r"\(batch, pos, unit\)"),
        ({"values": torch.ones(2, 3, 4, dtype=torch.int64)}, "floating-point"),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, r"mask must be \(batch, pos\) = \(2, 3\)"),
        ({"doc": torch.zeros(3, 2, dtype=torch.int64)}, r"doc must be \(batch, pos\)"),
        ({"pos": torch.zeros(2, dtype=torch.int64)}, r"pos must be \(batch, pos\)"),
    ],
)
def test_bad_shapes_raise_accumulator_errors(kwargs, match):
    args = {
        "values": torch.ones(2, 3, 4),
        "mask": torch.ones(2, 3, dtype=torch.bool),
        "doc": torch.zeros(2, 3, dtype=torch.int64),
        "pos": torch.zeros(2, 3, dtype=torch.int64),
    }
    args.update(kwargs)
    with pytest.raises(AccumulatorError, match=match) as info:
        SiteBatch(**args)
    assert isinstance(info.value, NeuronAtlasError)


def test_unit_stats_follows_the_accumulator_protocol():
    assert isinstance(UnitStats(2), Accumulator)
