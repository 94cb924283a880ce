"""Evaluation figures against numpy, and the reconstruction spliced into a tiny GPT-2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_gpt2

from neuronatlas.sae import SAEError, ce_loss_recovered, create_sae, evaluate_sae


def test_metrics_match_numpy():
    torch.manual_seed(0)
    x = torch.randn(300, 8) * torch.linspace(0.5, 2, 8) + 1.0
    x[7, 1] = float("nan")
    sae = create_sae("topk", 8, 24, k=3)
    m = evaluate_sae(sae, x, batch_size=64, dense_threshold=0.2)
    xs = x[torch.isfinite(x).all(1)]
    with torch.no_grad():
        z = sae.encode(xs).double().numpy()
        x_hat = sae(xs).double().numpy()
    xn = xs.double().numpy()
    sse = ((xn - x_hat) ** 2).sum()
    assert m["n_samples"] == 299 and m["nonfinite_rows"] == 1
    assert m["mse"] == pytest.approx(sse / xn.size, rel=1e-9)
    assert m["fvu"] == pytest.approx(sse / ((xn - xn.mean(0)) ** 2).sum(), rel=1e-9)
    assert m["variance_explained"] == pytest.approx(1 - m["fvu"], abs=1e-12)
    assert m["l0"] == pytest.approx((z > 0).sum(1).mean(), rel=1e-12)
    freq = (z > 0).mean(0)
    assert m["dead"] == int((freq == 0).sum()) and m["dense"] == int((freq > 0.2).sum())
    np.testing.assert_allclose(m["freq"], freq)


def _identity_relu(d: int):
    """A ReLU "SAE" that reconstructs exactly: z = [relu(x), relu(-x)], x̂ = z₁ − z₂."""
    sae = create_sae("relu", d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.mark.parametrize(
    "site,d", [("transformer.h.0", 32), ("transformer.h.1.mlp.c_proj:input", 128)]
)
def test_loss_recovered_is_one_for_identity_and_zero_for_zero(site, d):
    model = tiny_gpt2(0, initializer_range=0.5)  # peaked logits: zeroing a site matters
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.int64)
    mask[2, 9:] = 0
    batches = [{"input_ids": ids, "attention_mask": mask}]
    with torch.no_grad():
        clean_logits = model(input_ids=ids, attention_mask=mask).logits

    ident = ce_loss_recovered(model, _identity_relu(d), site, batches)
    assert ident["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert ident["ce_sae"] == pytest.approx(ident["ce_clean"], abs=1e-5)
    assert ident["n_tokens"] == 2 * 11 + 8
    zero = create_sae("relu", d, 4)
    with torch.no_grad():
        zero.W_dec.zero_()
    res = ce_loss_recovered(model, zero, site, batches)
    assert res["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert abs(res["ce_zero"] - res["ce_clean"]) > 0.05
    # the hooks are gone: the model gives its clean outputs again
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, clean_logits)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_reconstruction_of_the_wrong_width_is_refused():
    model = tiny_gpt2(0)
    ids = torch.zeros(1, 4, dtype=torch.int64)
    with pytest.raises(SAEError, match="d_in=8"):
        ce_loss_recovered(model, create_sae("topk", 8, 16, k=2), "transformer.h.0", [ids])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_atlas_sae_eval_with_loss_recovered(tmp_path):
    """Train on a GPT-2 atlas's store, then evaluate with the atlas's own sequences spliced."""
    from neuronatlas import build_atlas
    from neuronatlas.atlas import get_analysis
    from neuronatlas.sae._atlas import evaluate_atlas_sae, train_atlas_sae

    model = tiny_gpt2(0, initializer_range=0.5)
    g = torch.Generator().manual_seed(1)
    data = [
        {"input_ids": torch.randint(0, model.config.vocab_size, (4, 16), generator=g)}
        for _ in range(4)
    ]
    build_atlas(model, data, out=tmp_path / "a", sites="transformer.h.1", top_k=2,
                keep_activations=True, store_dtype="float32", taxonomy=False)  # fmt: skip
    _, metrics = train_atlas_sae(tmp_path / "a", site="transformer.h.1", name="s", arch="topk",
                                 d_sae=64, sae_settings={"k": 8}, batch_size=32, steps=20,
                                 lr=3e-3, device="cpu")  # fmt: skip
    assert metrics["n_samples"] == 256 and metrics["l0"] == 8.0
    res = evaluate_atlas_sae(tmp_path / "a", "s", ce_docs=6, model=model)
    assert res["n_tokens"] == 6 * 15
    assert res["ce_sae"] != res["ce_clean"]
    expected = (res["ce_zero"] - res["ce_sae"]) / (res["ce_zero"] - res["ce_clean"])
    assert res["loss_recovered"] == pytest.approx(expected, rel=1e-12)
    assert (
        get_analysis(tmp_path / "a", "sae", "s")["metrics"]["loss_recovered"]
        == res["loss_recovered"]
    )
