"""End to end on the packaged MiniLM: a recording simulated from one layer is mapped to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow


def test_the_planted_layer_wins(tmp_path):
    from neuronatlas import build_atlas
    from neuronatlas.brain import encode, load_arrays, write_brain_atlas
    from neuronatlas.compare import stimulus_docs, stimulus_features
    from neuronatlas.data import python_docs_corpus

    atlas = build_atlas(
        "minilm", python_docs_corpus(), out=tmp_path / "minilm", sites="resid", window=32,
        max_tokens=4096, keep_activations=True, taxonomy=False, quantiles=False, top_k=2,
        store_dtype="float32",
    )  # fmt: skip
    docs = stimulus_docs(atlas)["doc"].to_numpy()
    names = np.array([f"doc {d}" for d in docs])
    rng = np.random.default_rng(0)
    responses = []
    for site in ("encoder.layer.1", "encoder.layer.4"):  # regions A and B
        x = stimulus_features(atlas, site).double().numpy()
        x = (x - x.mean(0)) / (x.std(0) + 1e-8)
        s = x @ rng.standard_normal((x.shape[1], 30))
        responses.append((s - s.mean(0)) / s.std(0))
    signal = np.concatenate(responses, axis=1)
    trials = np.concatenate([signal + 0.7 * rng.standard_normal(signal.shape) for _ in range(3)])
    rec = load_arrays(
        {"responses": trials, "stimulus": np.tile(names, 3), "site": np.repeat(["A", "B"], 30)},
        stimuli=pd.DataFrame({"name": names, "doc": docs}),
    )
    brain = write_brain_atlas(rec, tmp_path / "brain")
    res = encode(atlas, brain, "encoder.layer.*", dtype=torch.float64)
    assert res.entry["best_site"] == {"A": "encoder.layer.1", "B": "encoder.layer.4"}
    # 3 repeats at noise 0.7: CC_max = 1/sqrt(1 + 0.49/3) ≈ 0.927 for every unit
    np.testing.assert_allclose(res.scores["cc_max"], 1 / np.sqrt(1 + 0.49 / 3), atol=0.06)
