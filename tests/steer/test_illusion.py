"""The subspace illusion check on a model with planted directions."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from neuronatlas.steer import row_null_split, subspace_illusion


def planted_model() -> nn.Module:
    """x = (variable, noise) -> hidden h = (x0, x0, 1, x1) -> y = W h with W reading e1 and e3.

    e1 carries the variable and is read downstream (the faithful direction); e2 carries a copy
    of the variable but lies in the null space of W (disconnected); e3 is read by W but is
    constant on the data (a dormant pathway).
    """
    enc = nn.Linear(2, 4)
    out = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        enc.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
        enc.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
        out.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))
    return nn.Sequential(OrderedDict(enc=enc, out=out)).eval()


def data():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, generator=g)
    base = torch.stack([torch.full((64,), -1.0), noise], 1)
    source = torch.stack([torch.full((64,), 1.0), noise.roll(1)], 1)
    return base, source


def metric(y):
    return y.sum(-1)


def test_row_null_split_is_an_orthogonal_decomposition():
    w = torch.randn(3, 6)
    v = torch.randn(6)
    row, null = row_null_split(v, w)
    torch.testing.assert_close(row + null, v)
    torch.testing.assert_close(w @ null, torch.zeros(3), rtol=0, atol=1e-5)
    assert abs(float(row @ null)) < 1e-5


def test_faithful_direction_is_carried_by_the_row_space():
    base, source = data()
    r = subspace_illusion(
        planted_model(), "out:input", torch.tensor([1.0, 0, 0, 0]), base, source, metric
    )
    # patching e1 moves x0 from -1 to +1: y0 changes by 2
    assert r["effect_full"] == pytest.approx(2.0, abs=1e-5)
    assert r["effect_row"] == pytest.approx(2.0, abs=1e-5) and r["frac_row"] == pytest.approx(
        1.0, abs=1e-6
    )
    assert r["effect_null"] == 0.0 and r["norm_null"] == pytest.approx(0.0, abs=1e-7)
    assert r["suspect"] is False


def test_illusory_direction_is_flagged():
    base, source = data()
    v = torch.tensor([0.0, 1.0, 1.0, 0.0])  # disconnected copy + dormant pathway
    r = subspace_illusion(planted_model(), "out:input", v, base, source, metric)
    # full patch: coordinate along v/√2 moves by 2/√2, written through W v/√2 = e2_out/√2: +1
    assert r["effect_full"] == pytest.approx(1.0, abs=1e-5)
    assert r["effect_row"] == pytest.approx(0.0, abs=1e-6)  # e3 is constant: nothing to patch
    assert r["effect_null"] == pytest.approx(0.0, abs=1e-6)  # e2 is not read downstream
    assert r["norm_row"] == pytest.approx(2**-0.5, abs=1e-6)
    assert r["norm_null"] == pytest.approx(2**-0.5, abs=1e-6)
    assert r["suspect"] is True
