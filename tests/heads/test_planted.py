"""Planted heads: the scores single out exactly the heads built to do each job."""

from __future__ import annotations

import pytest
import torch
from heads.conftest import N_CTX, VOCAB

from neuronatlas.heads import score_heads


@pytest.fixture
def table(planted):
    return score_heads(planted, n_seq=32, seg_len=12, needle_len=4, haystack_len=20, seed=3)


def _by_head(table, column):
    return {(r.layer, r.head): getattr(r, column) for r in table.itertuples()}


def test_previous_token_head_is_singled_out(table):
    s = _by_head(table, "previous_token")
    assert s[(0, 0)] == pytest.approx(1.0, abs=1e-3)
    assert max(v for k, v in s.items() if k != (0, 0)) < 0.25


def test_induction_head_is_singled_out(table):
    s = _by_head(table, "induction")
    # position 0 has no previous token but its slot holds its own token, so a query whose
    # token equals the first one splits its attention: a little under 1.
    assert 0.9 < s[(1, 0)] <= 1.0
    assert max(v for k, v in s.items() if k != (1, 0)) < 0.25


def test_retrieval_head_is_the_induction_head(table):
    s = _by_head(table, "retrieval")
    assert s[(1, 0)] > 0.85
    assert max(v for k, v in s.items() if k != (1, 0)) < 0.25


def test_self_attending_head_has_no_duplicate_or_previous_score(table):
    row = table[(table["layer"] == 0) & (table["head"] == 1)].iloc[0]
    assert row.previous_token == pytest.approx(0.0, abs=1e-3)
    assert row.duplicate_token == pytest.approx(0.0, abs=1e-3)


def test_planted_circuit_predicts_the_second_copy(planted):
    """The planted weights implement induction: the second copy is predicted exactly."""
    gen = torch.Generator().manual_seed(0)
    seg = torch.randperm(VOCAB, generator=gen)[: N_CTX // 2]
    ids = torch.cat([seg, seg])[None]
    pred = planted(ids).argmax(-1)[0]
    half = N_CTX // 2
    # position `half` (token seg[0]) also matches position 0, whose previous-token slot holds
    # its own token; from there on the prediction is exact
    assert torch.equal(pred[half + 1 : 2 * half - 1], seg[2:])
