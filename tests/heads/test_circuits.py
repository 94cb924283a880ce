"""Weight-only scores against the full vocabulary-by-vocabulary circuits, computed in numpy."""

from __future__ import annotations

import numpy as np
import torch
from helpers import tiny_gpt2

from neuronatlas.heads import HeadWeights, embedding_matrices, find_heads, score_heads
from neuronatlas.heads._circuits import ov_copying, ov_topk_copying, qk_same_token


def _ratio(m: np.ndarray) -> float:
    ev = np.linalg.eigvals(m)
    return float(ev.real.sum() / np.abs(ev).sum())


def test_copying_scores_match_full_circuits():
    model = tiny_gpt2()
    w_e, w_u = embedding_matrices(model)
    E, U = w_e.double().numpy(), w_u.double().numpy()
    for b in find_heads(model):
        w = b.weights(model)
        got_ov, got_qk = ov_copying(w, w_e, w_u), qk_same_token(w, w_e)
        tokens = torch.arange(0, 128, 3)
        got_top = ov_topk_copying(w, w_e, w_u, tokens, k=10)
        for h in range(b.n_heads):
            ov = E @ w.W_V[h].double().numpy() @ w.W_O[h].double().numpy() @ U  # (vocab, vocab)
            qk = E @ w.W_Q[h].double().numpy() @ w.W_K[h].double().numpy().T @ E.T
            # the full matrices have rank d_head: their non-zero eigenvalues are the ones
            np.testing.assert_allclose(got_ov[h].item(), _ratio(ov), rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(got_qk[h].item(), _ratio(qk), rtol=1e-6, atol=1e-8)
            rows = ov[tokens.numpy()]
            own = rows[np.arange(len(tokens)), tokens.numpy()]
            in_top = [(r >= o).sum() - 1 < 10 for r, o in zip(rows, own, strict=True)]
            np.testing.assert_allclose(got_top[h].item(), np.mean(in_top), atol=1e-12)


def test_identity_circuit_copies_and_negated_one_suppresses():
    """A head whose OV circuit is +identity scores 1, -identity scores -1."""
    eye = torch.eye(8)[None]
    for sign in (1.0, -1.0):
        w = HeadWeights(eye, eye, eye, sign * eye)
        assert ov_copying(w, torch.eye(8), torch.eye(8)).item() == sign
        assert ov_topk_copying(w, torch.eye(8), torch.eye(8), torch.arange(8), k=1).item() == (
            1.0 if sign > 0 else 0.0
        )


def test_score_table_has_every_head_and_finite_scores(hf_model):
    table = score_heads(hf_model, n_seq=4, seg_len=12, needle_len=4, haystack_len=20)
    assert len(table) == 8  # 2 layers x 4 heads
    assert list(table.columns[:3]) == ["site", "layer", "head"]
    scores = table.drop(columns=["site", "layer", "head", "dormant"])
    assert np.isfinite(scores.to_numpy(dtype=float)).all()
    for col in ("previous_token", "duplicate_token", "induction", "sink", "retrieval"):
        assert ((table[col] >= 0) & (table[col] <= 1 + 1e-6)).all()
    for col in ("copying", "qk_same_token"):
        assert ((table[col] >= -1 - 1e-9) & (table[col] <= 1 + 1e-9)).all()
