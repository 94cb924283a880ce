"""Training: resume equals an uninterrupted run, streaming from a store, bad input."""

from __future__ import annotations

import pytest
import torch

from neuronatlas.sae import SAEError, SyntheticFeatures, create_sae, train_sae
from neuronatlas.store import ActivationStore


class _Stop(Exception):
    pass


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_resume_equals_uninterrupted(arch, tmp_path):
    """Killed after step 12 (checkpoint at 10), resumed: bitwise the uninterrupted weights."""
    x = SyntheticFeatures(n_features=64, d=16, p=0.05, seed=2).batch(2048)
    settings = {"k": 4} if arch == "topk" else {"l1_coefficient": 1.0}
    kw = dict(batch_size=128, steps=24, log_every=2, checkpoint_every=5, resample_at=(0.5,))
    ref = train_sae(create_sae(arch, 16, 64, **settings), x, checkpoint_dir=tmp_path / "ref", **kw)

    def crash(record):
        if record["step"] == 12:
            raise _Stop

    with pytest.raises(_Stop):
        train_sae(create_sae(arch, 16, 64, **settings), x, checkpoint_dir=tmp_path / "c",
                  progress=crash, **kw)  # fmt: skip
    with pytest.raises(SAEError, match="resume=True"):
        train_sae(create_sae(arch, 16, 64, **settings), x, checkpoint_dir=tmp_path / "c", **kw)
    res = train_sae(create_sae(arch, 16, 64, **settings), x, checkpoint_dir=tmp_path / "c",
                    resume=True, **kw)  # fmt: skip
    assert res.steps == ref.steps == 24 and res.samples == ref.samples
    for (name, a), b in zip(
        ref.sae.state_dict().items(), res.sae.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in res.log] == [r["loss"] for r in ref.log]

    with pytest.raises(SAEError, match="other training options"):
        train_sae(create_sae(arch, 16, 64, **settings), x, checkpoint_dir=tmp_path / "c",
                  resume=True, **{**kw, "lr": 1e-3})  # fmt: skip
    with pytest.raises(SAEError, match="Resume with the same architecture"):
        train_sae(create_sae(arch, 16, 32, **settings), x, checkpoint_dir=tmp_path / "c",
                  resume=True, **kw)  # fmt: skip


def test_streams_from_an_activation_store(tmp_path):
    """Training reads shuffled minibatches chunk by chunk; each epoch visits every row once."""
    data = SyntheticFeatures(n_features=64, d=16, p=0.05, seed=3)
    store = ActivationStore.create(tmp_path / "s", sites={"a": 16, "b": 3}, chunk_rows=256)
    rows = data.batch(1280)
    store.append({"a": rows, "b": torch.zeros(1280, 3)}, doc=range(1280), pos=[0] * 1280)
    store.close()
    store = ActivationStore.open(tmp_path / "s")
    with pytest.raises(SAEError, match="say which one"):
        train_sae(create_sae("topk", 16, 64, k=4), store, batch_size=128)
    seen = []
    res = train_sae(create_sae("topk", 16, 64, k=4), store, site="a", batch_size=128,
                    progress=lambda r: seen.append(r["samples"]), log_every=1)  # fmt: skip
    assert res.steps == 10 and res.samples == 1280  # default: one pass
    assert seen == list(range(128, 1281, 128))
    with pytest.raises(SAEError, match="d_in=8"):
        train_sae(create_sae("topk", 8, 64, k=4), store, site="a")


def test_nonfinite_rows_are_skipped_and_counted():
    x = SyntheticFeatures(n_features=64, d=16, p=0.05, seed=4).batch(512)
    x[3, 2] = float("nan")
    x[100, 0] = float("inf")
    res = train_sae(create_sae("topk", 16, 64, k=4), x, batch_size=64, steps=8)
    assert res.nonfinite_rows == 2 and res.samples == 510
    assert all(torch.isfinite(p).all() for p in res.sae.parameters())


def test_bad_options_are_clear_errors():
    x = torch.randn(64, 4)
    with pytest.raises(SAEError, match="fewer than one batch"):
        train_sae(create_sae("topk", 4, 8, k=2), x, batch_size=128)
    with pytest.raises(SAEError, match="AuxK"):
        train_sae(create_sae("relu", 4, 8), x, batch_size=16, dead_strategy="aux")
    with pytest.raises(SAEError, match="'batch_size' parameter"):
        train_sae(create_sae("topk", 4, 8, k=2), x, batch_size=0)
    with pytest.raises(SAEError, match="floating point"):
        train_sae(
            create_sae("topk", 4, 8, k=2), torch.ones(64, 4, dtype=torch.int64), batch_size=16
        )
