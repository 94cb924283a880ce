"""Weight-only head scores: the OV and QK circuits projected onto the vocabulary.

With the token embedding ``W_E (vocab, d_model)`` and unembedding ``W_U (d_model, vocab)``
(row-vector convention), head ``h`` has

- the **OV circuit** ``W_E W_V[h] W_O[h] W_U`` ``(vocab, vocab)``: the logits a token adds to
  the next-token prediction when the head attends to it;
- the **QK circuit** ``W_E W_Q[h] W_K[h]^T W_E^T`` ``(vocab, vocab)``: how much a query token
  attends to a key token (positional information and rotary embeddings left out).

Scores ("A Mathematical Framework for Transformer Circuits", Elhage et al., 2021, and
"Inferring Functionality of Attention Heads from their Parameters", Elhelo & Geva, 2024):

- ``copying``: ``sum_i lambda_i / sum_i |lambda_i|`` over the eigenvalues of the OV circuit
  (real part on top): 1 for a head whose OV circuit only copies (every eigenvalue positive), -1
  for one that only suppresses the tokens it attends to. The non-zero eigenvalues of the
  ``vocab x vocab`` matrix are those of the ``d_head x d_head`` matrix
  ``W_O[h] (W_U W_E) W_V[h]`` (cyclic permutation), which is what is computed;
- ``qk_same_token``: the same statistic for the QK circuit: positive when tokens attend to
  copies of themselves;
- ``copying_top10``: the fraction of sampled tokens ``s`` whose own logit is among the 10
  largest of row ``s`` of the OV circuit (the copying relation of Elhelo & Geva, 2024, with
  ``k = 10``; ties count against the token, so an all-zero circuit scores 0), over
  ``copy_tokens`` tokens sampled uniformly from the vocabulary (special tokens excluded).

Layer norms and biases are left out, as in both papers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuronatlas.heads._arch import HeadWeights

__all__ = ["eigen_ratio", "ov_copying", "ov_topk_copying", "qk_same_token"]


def eigen_ratio(m: Tensor) -> Tensor:
    """``sum(Re lambda) / sum(|lambda|)`` for each square matrix of ``m (..., n, n)``."""
    ev = torch.linalg.eigvals(m.double())
    return ev.real.sum(-1) / ev.abs().sum(-1).clamp_min(1e-300)


def ov_copying(w: HeadWeights, w_e: Tensor, w_u: Tensor) -> Tensor:
    """Per head ``copying`` score (see module docstring); ``(head,)``."""
    g = w_u.double() @ w_e.double()  # (d_model, d_model)
    small = w.W_O.double() @ g @ w.W_V.double()  # (head, d_head, d_head)
    return eigen_ratio(small)


def qk_same_token(w: HeadWeights, w_e: Tensor) -> Tensor:
    """Per head ``qk_same_token`` score; ``(head,)``."""
    g = w_e.double().T @ w_e.double()  # (d_model, d_model)
    small = w.W_K.double().transpose(1, 2) @ g @ w.W_Q.double()  # (head, d_head, d_head)
    return eigen_ratio(small)


def ov_topk_copying(
    w: HeadWeights, w_e: Tensor, w_u: Tensor, tokens: Tensor, k: int = 10, chunk: int = 64
) -> Tensor:
    """Per head fraction of ``tokens`` whose own logit is in the top ``k`` of their OV row."""
    out = torch.zeros(w.W_V.shape[0], dtype=torch.float64)
    o_u = w.W_O.float() @ w_u  # (head, d_head, vocab): cheaper than the d_model x d_model OV
    for start in range(0, len(tokens), chunk):
        tok = tokens[start : start + chunk]
        rows = (w_e[tok] @ w.W_V.float()) @ o_u  # (head, n, vocab)
        own = rows.gather(-1, tok.expand(rows.shape[0], -1)[..., None])  # (head, n, 1)
        rank = (rows >= own).sum(-1) - 1  # other tokens at or above: ties count against
        out += (rank < k).sum(-1).double()
    return out / max(1, len(tokens))
