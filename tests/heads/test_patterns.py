"""Attention-pattern scores against brute-force loops over (batch, head, query, key)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.heads import _patterns


def _random_case(seed: int, b: int = 3, h: int = 2, t: int = 9, vocab: int = 4):
    gen = torch.Generator().manual_seed(seed)
    attn = torch.rand(b, h, t, t, generator=gen, dtype=torch.float64)
    attn = attn / attn.sum(-1, keepdim=True)
    ids = torch.randint(vocab, (b, t), generator=gen)
    content = torch.rand(b, t, generator=gen) > 0.15
    return attn, ids, content


def _reference(attn, ids, content, which):
    a, ids, c = attn.numpy(), ids.numpy(), content.numpy()
    b, h, t, _ = a.shape
    total, count = np.zeros(h), 0
    for bi in range(b):
        for i in range(t):
            if not c[bi, i]:
                continue
            keys = []
            for j in range(t):
                if not c[bi, j]:
                    continue
                if which == "prev" and j == i - 1:
                    keys.append(j)
                if which == "dup" and j < i and ids[bi, j] == ids[bi, i]:
                    keys.append(j)
                if which == "ind" and 1 <= j <= i and c[bi, j - 1] and ids[bi, j - 1] == ids[bi, i]:
                    keys.append(j)
            if keys:
                count += 1
                total += a[bi][:, i][:, keys].sum(-1)
    return total / count if count else np.full(h, np.nan)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 6))
def test_scores_match_brute_force(seed, vocab):
    attn, ids, content = _random_case(seed, vocab=vocab)
    for fn, which in (
        (_patterns.previous_token, "prev"),
        (_patterns.duplicate_token, "dup"),
        (_patterns.induction, "ind"),
    ):
        s, c = fn(attn, ids, content)
        got = (s / c).numpy()
        want = _reference(attn, ids, content, which)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=which)


def test_batches_add_up():
    attn, ids, content = _random_case(1, b=6)
    s, c = _patterns.induction(attn, ids, content)
    s1, c1 = _patterns.induction(attn[:2], ids[:2], content[:2])
    s2, c2 = _patterns.induction(attn[2:], ids[2:], content[2:])
    torch.testing.assert_close(s, s1 + s2)
    torch.testing.assert_close(c, c1 + c2)


def test_sink_mass_and_retrieval():
    attn = torch.zeros(1, 2, 4, 4)
    attn[0, 0, :, 0] = 1.0  # head 0: everything on the first token
    attn[0, 1] = torch.eye(4)  # head 1: on itself
    special = torch.tensor([[False, False, False, True]])
    valid = torch.tensor([[True, True, True, True]])
    sink = _patterns.sink_mass(attn, special, valid)
    # head 1: queries 1, 2, 3 -> only query 3 attends to a sink (itself, special)
    torch.testing.assert_close(sink, torch.tensor([[1.0, 1 / 3]], dtype=torch.float64))
    targets = torch.tensor([[-1, 0, 2, 3]])
    hits, n = _patterns.retrieval(attn, targets)
    assert n.tolist() == [3.0, 3.0]
    assert hits.tolist() == [1.0, 2.0]


def test_padding_is_left_out_of_sink():
    attn = torch.full((1, 1, 3, 3), 1 / 3)
    valid = torch.tensor([[True, True, False]])
    special = torch.zeros(1, 3, dtype=torch.bool)
    assert _patterns.sink_mass(attn, special, valid).item() == pytest.approx(1 / 3)
