"""Head ablation, activation patching and direct logit attribution against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_gpt2

from neuronatlas.heads import AttnOnlyTransformer, HeadsError, find_heads
from neuronatlas.heads._ablate import (
    ablate_heads,
    direct_logit_attribution,
    head_means,
    patch_heads,
    record_z,
)
from neuronatlas.record import Recorder


def _ids(seed=0, shape=(2, 12), vocab=100):
    return torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_zero_ablation_equals_zeroed_output_weights():
    model, ids = tiny_gpt2(), _ids()
    b = find_heads(model)[1]
    with torch.no_grad(), ablate_heads(model, {1: [2]}):
        got = model(ids).logits
    assert _hooks(model) == 0
    ref = tiny_gpt2()
    with torch.no_grad():
        ref.transformer.h[1].attn.c_proj.weight[2 * b.d_head : 3 * b.d_head] = 0
        want = ref(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # restored
        torch.testing.assert_close(model(ids).logits, tiny_gpt2()(ids).logits)


def test_mean_ablation_equals_folding_the_mean_into_the_bias():
    model, ids = tiny_gpt2(), _ids()
    b = find_heads(model)[0]
    means = head_means(model, lambda: model(_ids(5, (4, 12))))
    with torch.no_grad(), ablate_heads(model, {0: [1]}, method="mean", reference=means):
        got = model(ids).logits
    ref = tiny_gpt2()
    sl = slice(b.d_head, 2 * b.d_head)
    with torch.no_grad():
        proj = ref.transformer.h[0].attn.c_proj
        proj.bias += means[b.z_site][sl] @ proj.weight[sl]
        proj.weight[sl] = 0
        want = ref(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_resample_ablation_draws_rows_of_the_pool():
    model, ids = tiny_gpt2(), _ids()
    b = find_heads(model)[0]
    pool = record_z(model, lambda: model(_ids(7, (3, 12))))
    gen = torch.Generator().manual_seed(0)
    with Recorder(model, b.z_site) as rec, torch.no_grad():
        with ablate_heads(model, {0: [3]}, method="resample", reference=pool, generator=gen):
            model(ids)
        z = rec.pop()[b.z_site]
    d = b.d_head
    rows = pool[b.z_site].reshape(-1, 4 * d)[:, 3 * d :]
    got = z[..., 3 * d :].reshape(-1, d)
    dist = (got[:, None] - rows[None]).abs().amax(-1).amin(1)  # every edited row is a pool row
    assert float(dist.max()) == 0.0


def test_unit_ablation_equals_zeroed_down_projection_rows():
    from neuronatlas.heads import ablate_units

    model, ids = tiny_gpt2(), _ids()
    site = "transformer.h.0.mlp.c_proj:input"
    with torch.no_grad(), ablate_units(model, {site: [3, 17, 40]}):
        got = model(ids).logits
    ref = tiny_gpt2()
    with torch.no_grad():
        ref.transformer.h[0].mlp.c_proj.weight[[3, 17, 40]] = 0
        want = ref(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    means = {site: torch.randn(128)}
    with torch.no_grad(), ablate_units(model, {site: [5]}, method="mean", reference=means):
        got = model(ids).logits
    ref = tiny_gpt2()
    with torch.no_grad():
        proj = ref.transformer.h[0].mlp.c_proj
        proj.bias += means[site][5] * proj.weight[5]
        proj.weight[5] = 0
        want = ref(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_bad_heads_are_clear_errors():
    model = tiny_gpt2()
    with (
        pytest.raises(HeadsError, match=r"Layer 0 has heads 0\.\.3"),
        ablate_heads(model, {0: [7]}),
    ):
        pass
    with (
        pytest.raises(HeadsError, match="needs a reference"),
        ablate_heads(model, {0: [1]}, method="mean"),
    ):
        pass


def _toy(seed=0):
    torch.manual_seed(seed)
    return AttnOnlyTransformer(
        vocab=20, d_model=16, n_layers=2, n_heads=2, d_head=8, n_ctx=10
    ).eval()


def test_dla_adds_up_to_the_logits_without_a_final_norm():
    model, ids = _toy(), _ids(1, (3, 10), 20)
    dla = direct_logit_attribution(model, ids, ids)
    per = dla.attrs["per_position"]  # (layer, head, batch, pos)
    with torch.no_grad():
        logits = model(ids)
        direct = (model.embed(ids) + model.pos_embed.weight[:10]) @ model.unembed.weight.T
    target = logits.gather(-1, ids[..., None])[..., 0]
    emb = direct.gather(-1, ids[..., None])[..., 0]
    torch.testing.assert_close(per.sum((0, 1)) + emb, target, rtol=1e-4, atol=1e-4)


def test_dla_through_a_frozen_layer_norm_adds_up_for_gpt2():
    model, ids = tiny_gpt2(), _ids(2)
    tgt = _ids(3)
    per = direct_logit_attribution(model, ids, tgt).attrs["per_position"]
    blocks = find_heads(model)
    sites = ["transformer.h.0:input", "transformer.ln_f:input"]
    sites += [f"transformer.h.{i}.mlp" for i in range(2)]
    with Recorder(model, sites) as rec, torch.no_grad():
        logits = model(ids).logits
        acts = rec.pop()
    ln = model.transformer.ln_f
    resid = acts["transformer.ln_f:input"]
    sd = (resid.var(-1, unbiased=False) + ln.eps).sqrt()
    u = model.lm_head.weight[tgt]

    def through(c):  # a residual component's direct effect on the target logit
        c = c - c.mean(-1, keepdim=True)
        return ((c / sd[..., None] * ln.weight) * u).sum(-1)

    other = through(acts["transformer.h.0:input"])
    for i in range(len(blocks)):
        other = other + through(acts[f"transformer.h.{i}.mlp"])
        other = other + through(model.transformer.h[i].attn.c_proj.bias.expand_as(resid))
    total = per.sum((0, 1)) + other + (ln.bias * u).sum(-1)
    torch.testing.assert_close(
        total, logits.gather(-1, tgt[..., None])[..., 0], rtol=1e-4, atol=1e-4
    )


def test_patching_a_last_layer_head_moves_the_logit_by_its_dla_difference():
    model = _toy(3)
    clean, corrupt = _ids(4, (1, 10), 20), _ids(5, (1, 10), 20)
    target = int(clean[0, -1])
    metric = lambda logits: float(logits[0, -1, target])  # noqa: E731
    grid = patch_heads(model, lambda: model(clean), lambda: model(corrupt), metric, positions=[9])
    assert len(grid) == 2 * 2  # layers x heads at one position
    assert _hooks(model) == 0
    tgt = torch.full((1, 10), target)
    d_clean = direct_logit_attribution(model, clean, tgt).attrs["per_position"][1, :, 0, 9]
    d_corr = direct_logit_attribution(model, corrupt, tgt).attrs["per_position"][1, :, 0, 9]
    last = grid[grid["layer"] == 1].sort_values("head")
    want = grid.attrs["corrupted_metric"] + (d_clean - d_corr).numpy()
    np.testing.assert_allclose(last["metric"].to_numpy(), want, rtol=1e-4, atol=1e-4)


def test_patching_every_position_of_all_heads_restores_the_clean_run():
    model = _toy(4)
    clean, corrupt = _ids(6, (1, 10), 20), _ids(7, (1, 10), 20)
    metric = lambda logits: float(logits[0, -1, 3])  # noqa: E731
    grid = patch_heads(model, lambda: model(clean), lambda: model(corrupt), metric)
    assert set(grid.columns) >= {"layer", "pos", "head", "metric", "effect"}
    assert len(grid) == 2 * 10 * 2
    # the effect is normalized: 0 = corrupted, 1 = clean
    assert grid["effect"].between(-50, 50).all()
