"""Helpers of the brain tests: the stimulus sentences and a planted recording."""

from __future__ import annotations

WORDS = ["river", "engine", "violin", "planet", "garden", "soldier", "recipe", "glacier",
         "market", "poem", "tiger", "circuit"]  # fmt: skip


def sentences(n: int = 60) -> list[str]:
    """``n`` distinct short sentences: the stimuli shown to the model and the "brain"."""
    out = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i * 5 + 3) % len(WORDS)]
        out.append(f"Story {i}: the {a} met a {b} near the {WORDS[(i * 7 + 1) % len(WORDS)]}.")
    return out


def planted_recording(model_atlas, site: str, *, n_rep: int = 3, noise: float = 0.5, seed: int = 0):
    """Trials of 2 regions whose responses are a random linear read-out of ``site`` + noise.

    Stimulus names are ``s<i>`` and carry the sentence texts (no doc ids: aligned by text).
    """
    import numpy as np
    import pandas as pd

    from neuronatlas.brain import load_arrays
    from neuronatlas.compare import stimulus_features

    x = stimulus_features(model_atlas, site).double().numpy()
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    rng = np.random.default_rng(seed)
    signal = x @ rng.standard_normal((x.shape[1], 10))
    signal = (signal - signal.mean(0)) / signal.std(0)
    n = len(x)
    resp = np.concatenate(
        [signal + noise * rng.standard_normal(signal.shape) for _ in range(n_rep)]
    )
    labels = np.array([f"s{i}" for i in np.tile(np.arange(n), n_rep)])
    stimuli = pd.DataFrame({"name": [f"s{i}" for i in range(n)], "text": sentences(n)})
    sites = np.array(["V1"] * 4 + ["IT"] * 6)
    return load_arrays({"responses": resp, "stimulus": labels, "site": sites}, stimuli=stimuli,
                       name="planted")  # fmt: skip
