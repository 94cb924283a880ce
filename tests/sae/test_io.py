"""SAELens interop: our folders load in the real sae_lens package and theirs load in ours."""

from __future__ import annotations

import json

import pytest
import torch

from neuronatlas.sae import SAEError, create_sae, load_sae, save_sae

sae_lens = pytest.importorskip("sae_lens")

CASES = {
    "relu": ({"l1_coefficient": 1.0}, "standard"),
    "topk": ({"k": 5}, "topk"),
    "batchtopk": ({"k": 5.0}, "jumprelu"),
    "jumprelu": ({}, "jumprelu"),
}


def _randomize(sae, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if sae.architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(sae.d_sae, generator=g) * 0.2)
        if sae.architecture == "batchtopk":
            sae.threshold.fill_(0.15)
        sae.norm_scale.fill_(2.5)  # the input normalization is folded into the saved weights


@pytest.mark.parametrize("arch", list(CASES))
def test_our_folder_loads_in_sae_lens_with_equal_outputs(arch, tmp_path):
    settings, saelens_arch = CASES[arch]
    ours = create_sae(arch, 16, 40, **settings)
    _randomize(ours, 3)
    save_sae(ours, tmp_path / "s", site="blocks.0.hook_resid_post", model_name="tiny")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert (
        cfg["architecture"] == saelens_arch
        and cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    )

    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "s"))
    assert theirs.cfg.architecture() == saelens_arch
    x = torch.randn(64, 16) * 3
    with torch.no_grad():
        z_ours, z_theirs = ours.encode(x), theirs.encode(x)
        torch.testing.assert_close(z_theirs, z_ours, rtol=1e-5, atol=1e-5)
        assert torch.equal(z_theirs > 0, z_ours > 0)
        torch.testing.assert_close(
            theirs.decode(z_theirs), ours.decode(z_ours), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-5)
    back = load_sae(tmp_path / "s")  # and our own folder round-trips in ours
    with torch.no_grad():
        torch.testing.assert_close(back(x), ours(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cls,cfg_cls,extra",
    [("StandardSAE", "StandardSAEConfig", {}), ("TopKSAE", "TopKSAEConfig", {"k": 4}),
     ("JumpReLUSAE", "JumpReLUSAEConfig", {})],
)  # fmt: skip
def test_sae_lens_folder_loads_in_ours(cls, cfg_cls, extra, tmp_path):
    theirs = getattr(sae_lens, cls)(getattr(sae_lens, cfg_cls)(d_in=12, d_sae=30, **extra))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(
                torch.rand(p.shape, generator=g) * 0.2
                if name == "threshold"
                else torch.randn(p.shape, generator=g) * 0.3
            )
    theirs.save_model(str(tmp_path / "t"))
    ours = load_sae(tmp_path / "t")
    x = torch.randn(50, 12) * 2
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_unsupported_folders_are_refused(tmp_path):
    with pytest.raises(SAEError, match=r"no cfg\.json"):
        load_sae(tmp_path)
    save_sae(create_sae("topk", 4, 8, k=2), tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "cfg.json").read_text())
    (tmp_path / "a" / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(SAEError, match="architecture 'gated'"):
        load_sae(tmp_path / "a")
    (tmp_path / "a" / "cfg.json").write_text(
        json.dumps({**cfg, "normalize_activations": "layer_norm"})
    )
    with pytest.raises(SAEError, match="normalize_activations='layer_norm'"):
        load_sae(tmp_path / "a")
