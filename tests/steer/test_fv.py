"""Function vectors: head means, indirect effects and the vector, against hand computations."""

from __future__ import annotations

import torch
from steer._steer_util import token_lists

from neuronatlas.intervene import intervene
from neuronatlas.record import Recorder
from neuronatlas.steer import function_vector, head_outputs, indirect_effects

SITES = "transformer.h.*.attn.c_proj:input"


@torch.no_grad()
def test_function_vector_matches_a_hand_computation(gpt2):
    prompts = token_lists(0, 4, 6) + token_lists(1, 2, 5)
    corrupted = token_lists(2, 3, 6)
    answers = [5, 9, 11]
    means = head_outputs(gpt2, prompts, SITES)
    with Recorder(gpt2, SITES) as rec:
        lasts = []
        for p in prompts:
            gpt2(input_ids=p[None])
            lasts.append({k: a[0, -1] for k, a in rec.pop().items()})
    for k, m in means.items():
        torch.testing.assert_close(
            m, torch.stack([x[k] for x in lasts]).mean(0), rtol=1e-5, atol=1e-6
        )

    table = indirect_effects(gpt2, corrupted, answers, means, 4)
    assert len(table) == 8 and table["aie"].is_monotonic_decreasing
    # one CIE by hand: overwrite head 2 of layer 1 at the last token with its mean
    site, j = "transformer.h.1.attn.c_proj:input", 2

    def by_hand(mod, args):
        x = args[0].clone()
        x[:, -1, j * 8 : (j + 1) * 8] = means[site][j * 8 : (j + 1) * 8]
        return (x,)

    def probs():
        return torch.stack(
            [
                torch.softmax(gpt2(input_ids=c[None]).logits[0, -1], -1)[a]
                for c, a in zip(corrupted, answers, strict=True)
            ]
        )

    p0 = probs()
    h = gpt2.transformer.h[1].attn.c_proj.register_forward_pre_hook(by_hand)
    try:
        p1 = probs()
    finally:
        h.remove()
    row = table[(table["site"] == site) & (table["head"] == j)].iloc[0]
    assert (
        row["aie"] == torch.mean(p1 - p0).item()
        or abs(row["aie"] - torch.mean(p1 - p0).item()) < 1e-6
    )

    fv, _ = function_vector(gpt2, prompts, corrupted, answers, SITES, 4, "transformer.h.0", n_top=3)
    ref = torch.zeros(32)
    for r in table.head(3).itertuples():
        layer = int(r.site.split(".")[2])
        w = gpt2.transformer.h[layer].attn.c_proj.weight  # Conv1D: (in, out)
        ref += means[r.site][r.head * 8 : (r.head + 1) * 8] @ w[r.head * 8 : (r.head + 1) * 8]
    torch.testing.assert_close(fv.vector, ref, rtol=1e-5, atol=1e-6)
    assert fv.site == "transformer.h.0" and fv.method == "fv" and len(fv.meta["heads"]) == 3

    # applied at the last prompt position only
    zero_shot = token_lists(3, 1, 4)[0][None]
    with (
        intervene(gpt2, {fv.site: fv.edit(1.0, positions="last_prompt")}),
        Recorder(gpt2, fv.site) as rec,
    ):
        gpt2(input_ids=zero_shot)
        steered = rec.pop()[fv.site]
    with Recorder(gpt2, fv.site) as rec:
        gpt2(input_ids=zero_shot)
        plain = rec.pop()[fv.site]
    torch.testing.assert_close(steered[:, :-1], plain[:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(steered[:, -1], plain[:, -1] + fv.vector, rtol=0, atol=1e-6)
