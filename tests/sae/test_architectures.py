"""The four architectures: registry, codes, hand-written sparse gradients, ground truth."""

from __future__ import annotations

import pytest
import torch

from neuronatlas.sae import (
    SAEError,
    SparseAutoencoder,
    SyntheticFeatures,
    architectures,
    create_sae,
    evaluate_sae,
    mmcs,
    register_architecture,
    train_sae,
)
from neuronatlas.sae._sparse import sparse_step


def test_registry_lists_refuses_and_suggests():
    assert architectures() == ["batchtopk", "jumprelu", "relu", "topk"]
    with pytest.raises(SAEError, match="Did you mean 'topk'"):
        create_sae("topkk", 4, 8)

    class Other(SparseAutoencoder):
        architecture = "topk"

    with pytest.raises(SAEError, match="already registered"):
        register_architecture(Other)
    with pytest.raises(SAEError, match=r"'k' parameter of TopKSAE must be an int in \[1, 8\]"):
        create_sae("topk", 4, 8, k=0)
    with pytest.raises(SAEError, match="Bad settings"):
        create_sae("relu", 4, 8, k=3)


@torch.no_grad()
def test_codes_follow_the_definitions():
    torch.manual_seed(0)
    x = torch.randn(16, 6)
    topk = create_sae("topk", 6, 20, k=3)
    pre = topk.hidden_pre(x)
    z = topk.encode(x)
    assert int((z > 0).sum(1).max()) <= 3
    ref = torch.zeros_like(pre)
    vals, idx = pre.topk(3, dim=1)
    ref.scatter_(1, idx, vals.relu())
    assert torch.equal(z, ref)

    btk = create_sae("batchtopk", 6, 20, k=2.5)
    _, _, vals = btk.sparse_codes(pre.clone())
    assert len(vals) == 40  # k · batch codes in the whole batch
    assert float(vals.min()) >= float(torch.relu(pre).flatten().sort().values[-40])
    btk.threshold.fill_(0.3)
    assert torch.equal(btk.encode(x), pre * (pre > 0.3))

    jr = create_sae("jumprelu", 6, 20)
    with torch.no_grad():
        jr.threshold.copy_(torch.linspace(0, 1, 20))
    assert torch.equal(jr.encode(x), pre * (pre > jr.threshold))
    relu = create_sae("relu", 6, 20)
    assert torch.equal(relu.encode(x), torch.relu(pre))


@pytest.mark.parametrize("arch,k", [("topk", 4), ("batchtopk", 4.0)])
def test_sparse_gradients_equal_autograd(arch, k):
    """The hand-written sparse step gives autograd's gradients of the dense MSE + AuxK loss."""
    torch.manual_seed(1)
    sae = create_sae(arch, 12, 48, k=k).double()
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
    x = torch.randn(32, 12, dtype=torch.float64)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[::3] = True
    losses, _, _ = sparse_step(sae, x, dead, aux_k=6, aux_coefficient=0.5)
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)

    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    z = sae.activate(pre) if arch == "topk" else sae.batch_codes(pre)
    x_hat = z @ sae.W_dec + sae.b_dec
    mse = (x_hat - x).pow(2).sum(-1).mean()
    dead_idx = torch.nonzero(dead).squeeze(1)
    a_vals, a_pos = pre[:, dead_idx].topk(6, dim=-1)
    z_aux = torch.zeros_like(pre).scatter(-1, dead_idx[a_pos], a_vals.relu())
    aux = 0.5 * (z_aux @ sae.W_dec - (x - x_hat).detach()).pow(2).sum(-1).mean()
    (mse + aux).backward()
    assert float(losses["mse"]) == pytest.approx(float(mse.detach()), rel=1e-12)
    assert float(losses["aux"]) == pytest.approx(float(aux.detach()), rel=1e-12)
    for name, p in sae.named_parameters():
        torch.testing.assert_close(sparse_grads[name], p.grad, rtol=1e-10, atol=1e-12)


# ground truth: 128 true features in 32 dimensions, each active with p = 0.03, U(0, 1)
SETTINGS = {
    "topk": {"k": 4},
    "batchtopk": {"k": 4.0},
    "relu": {"l1_coefficient": 3.0},
    "jumprelu": {"l0_coefficient": 3.0, "init_threshold": 0.5, "bandwidth": 0.5},
}
MIN_MMCS = {"topk": 0.95, "batchtopk": 0.9, "relu": 0.93, "jumprelu": 0.85}
MAX_L0 = {"topk": 4.0, "batchtopk": 8.0, "relu": 24.0, "jumprelu": 8.0}


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_ground_truth_recovery_and_sparsity(arch):
    """Each architecture recovers the true directions (MMCS) with sparse codes (L0)."""
    data = SyntheticFeatures(n_features=128, d=32, p=0.03, seed=0)
    sae = create_sae(arch, 32, 256, **SETTINGS[arch])
    res = train_sae(sae, data.batches(256, 400), batch_size=256, lr=3e-3)
    assert res.steps == 400
    score = mmcs(sae.W_dec, data.features)
    m = evaluate_sae(sae, data.batch(8192))  # fresh inputs of the same features
    assert MIN_MMCS[arch] <= score <= 1.0, (arch, score)
    assert 1.0 <= m["l0"] <= MAX_L0[arch], (arch, m["l0"])
    assert 0.5 <= m["variance_explained"] <= 1.0, (arch, m)
