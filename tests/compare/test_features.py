"""stimulus_features against an independent reference: each doc run alone with plain hooks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from compare.conftest import DOCS, bert_with_real_vocab

from neuronatlas.compare import stimulus_docs, stimulus_features
from neuronatlas.errors import DataError, SiteError

POOLS = {
    "mean": lambda a: a.mean(0),
    "max": lambda a: a.max(0),
    "first": lambda a: a[0],
    "last": lambda a: a[-1],
}


def reference(tokenizer, site_layer: int):
    """Per doc, the block output of layer ``site_layer``, with a plain forward hook."""
    model = bert_with_real_vocab(0)
    out = []
    h = model.encoder.layer[site_layer].register_forward_hook(
        lambda m, i, o: out.append((o[0] if isinstance(o, tuple) else o)[0].detach().numpy().copy())
    )
    try:
        with torch.no_grad():
            for text in DOCS:
                model(**tokenizer(text, return_tensors="pt"))
    finally:
        h.remove()
    return out


@pytest.mark.parametrize("pool", list(POOLS))
def test_features_match_plain_hooks(tiny_atlas, tokenizer, pool):
    ref = np.stack([POOLS[pool](a) for a in reference(tokenizer, 1)])
    got = stimulus_features(tiny_atlas, "encoder.layer.1", pool=pool)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_stimuli_order_and_subset(tiny_atlas):
    full = stimulus_features(tiny_atlas, "encoder.layer.0", pool="last")
    got = stimulus_features(tiny_atlas, "encoder.layer.0", pool="last", stimuli=[7, 2, 5])
    torch.testing.assert_close(got, full[[7, 2, 5]])
    assert stimulus_docs(tiny_atlas)["doc"].tolist() == list(range(len(DOCS)))


def test_rows_in_any_order_across_many_chunks(tiny_atlas, tmp_path):
    """Rewrite the store with tiny chunks and shuffled rows: same features."""
    from neuronatlas.store import ActivationStore

    copy = tmp_path / "a"
    shutil.copytree(tiny_atlas.path, copy)
    src = tiny_atlas.store()
    idx = src.index().to_pandas()
    perm = np.random.default_rng(0).permutation(len(idx))
    sites = src.sites
    dst = ActivationStore.create(copy / "store", sites, chunk_rows=5, overwrite=True)
    vals = {s: src.read(s)[perm] for s in sites}
    dst.append(vals, doc=idx["doc"].to_numpy()[perm], pos=idx["pos"].to_numpy()[perm])
    dst.close()
    for pool in POOLS:
        a = stimulus_features(tiny_atlas, "encoder.layer.1", pool=pool)
        b = stimulus_features(copy, "encoder.layer.1", pool=pool)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_errors(tiny_atlas):
    with pytest.raises(SiteError, match="closest"):
        stimulus_features(tiny_atlas, "encoder.layer.9")
    with pytest.raises(DataError, match="pool must be one of"):
        stimulus_features(tiny_atlas, "encoder.layer.0", pool="median")
    with pytest.raises(DataError, match="does not have"):
        stimulus_features(tiny_atlas, "encoder.layer.0", stimuli=[0, 99])
    with pytest.raises(DataError, match="repeat"):
        stimulus_features(tiny_atlas, "encoder.layer.0", stimuli=[1, 1])
