"""Dynamic Activation Composition: the KL rule and the generation loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy
from steer._steer_util import token_lists

from neuronatlas.steer import SteeringVector, dac_generate, top_p_kl


def test_top_p_kl_matches_scipy_on_the_union_of_top_p_sets():
    p = torch.tensor([3.0, 2.0, 0.0, -1.0, -5.0])
    q = torch.tensor([-1.0, 2.5, 2.0, 0.0, -5.0])
    pp, qp = torch.softmax(p.double(), 0).numpy(), torch.softmax(q.double(), 0).numpy()

    def keep(x):
        order = np.argsort(-x)
        cum = np.cumsum(x[order])
        n = int(np.searchsorted(cum, 0.9) + 1)
        return set(order[:n].tolist())

    sel = sorted(keep(pp) | keep(qp))
    ref = entropy(pp[sel] / pp[sel].sum(), qp[sel] / qp[sel].sum())
    assert top_p_kl(p, q, 0.9) == pytest.approx(ref, rel=1e-9)
    assert top_p_kl(p, p) == pytest.approx(0.0, abs=1e-12)


@torch.no_grad()
def test_zero_vector_gives_plain_greedy_and_alphas_are_bounded(gpt2):
    prompt = token_lists(0, 1, 5)[0]
    zero = SteeringVector("transformer.h.0", "caa", {"vector": torch.zeros(32)})
    out = dac_generate(gpt2, prompt, {"none": zero}, max_new_tokens=5)
    plain = gpt2.generate(
        prompt[None], max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0
    )
    assert torch.equal(out["tokens"], plain[0, 5:])
    assert out["alpha"]["none"] == [0.0] * 5

    g = torch.Generator().manual_seed(0)
    strong = SteeringVector("transformer.h.1", "caa", {"vector": 5 * torch.randn(32, generator=g)})
    other = SteeringVector("transformer.h.0", "caa", {"vector": 5 * torch.randn(32, generator=g)})
    out = dac_generate(gpt2, prompt, {"a": strong, "b": other}, max_new_tokens=4, alpha_max=1.5)
    for k in ("a", "b"):
        assert len(out["alpha"][k]) == 4
        for a, kl in zip(out["alpha"][k], out["kl"][k], strict=True):
            assert a == pytest.approx(min(max(kl, 0.0), 1.5))
    assert max(out["alpha"]["a"]) > 0
