"""Encoding maps: how well each model site predicts each brain unit, saved in the brain atlas.

For each model site, the features of the stimuli (one vector per stimulus = per doc of the
model atlas, :func:`neuronatlas.compare.stimulus_features`) predict the trial-averaged responses
of every brain unit by ridge regression with a cross-validated alpha per unit
(:func:`ridge_cv`); scores are normalized by each unit's noise ceiling when the recording has
repeated trials (:func:`noise_ceiling`). Results go to ``BRAIN/analyses/encoding/<name>/``:

- ``scores.parquet``: one row per (model site, brain unit): ``model_site``, ``model_layer``,
  ``site`` (brain region), ``unit``, ``alpha``, ``r2``, ``r`` (cross-validated, mean over
  folds), ``cc_max``, ``r_norm``, ``r2_norm`` (NaN without repeats or measurable signal);
- ``summary.parquet``: one row per (model site, brain region): the median and mean of ``r``,
  ``r2`` and ``r_norm`` over units (NaN-free units only, their count in ``n_units``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuronatlas.brain._ceiling import noise_ceiling, normalize_scores
from neuronatlas.brain._delays import delay_features
from neuronatlas.brain._ridge import DEFAULT_ALPHAS, ridge_cv
from neuronatlas.errors import DataError

__all__ = ["EncodingResult", "encode"]

KIND = "encoding"


class EncodingResult:
    """What :func:`encode` returns: the two tables and where they were saved."""

    def __init__(self, scores: pd.DataFrame, summary: pd.DataFrame, path: Path | None,
                 entry: dict[str, Any] | None):  # fmt: skip
        self.scores = scores
        self.summary = summary
        self.path = path
        self.entry = entry

    def best_site(self, region: str | None = None, column: str = "r") -> str:
        """The model site with the highest median ``column`` (over the units of ``region``)."""
        s = self.summary if region is None else self.summary[self.summary["site"] == region]
        if region is None:
            s = self.scores.groupby("model_site", sort=False)[column].median()
            return str(s.idxmax())
        return str(s.set_index("model_site")[f"median_{column}"].idxmax())

    def __repr__(self) -> str:
        return f"EncodingResult({len(self.scores)} scores, saved at {self.path})"


def _summary(scores: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (ms, site), g in scores.groupby(["model_site", "site"], sort=False):
        row = {"model_site": ms, "model_layer": g["model_layer"].iloc[0], "site": site,
               "n_units": len(g)}  # fmt: skip
        for col in ("r", "r2", "r_norm", "r2_norm"):
            v = g[col].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            row[f"median_{col}"] = float(np.median(v)) if len(v) else float("nan")
            row[f"mean_{col}"] = float(np.mean(v)) if len(v) else float("nan")
            row[f"n_{col}"] = len(v)
        rows.append(row)
    return pd.DataFrame(rows)


def encode(
    model_atlas: Any,
    brain_atlas: str | Path,
    sites: str | list[str],
    *,
    pool: str = "mean",
    alphas: Any = DEFAULT_ALPHAS,
    folds: int = 5,
    delays: Any = None,
    name: str = "default",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    save: bool = True,
) -> EncodingResult:
    """Encoding models from model sites to every unit of a brain atlas.

    Args:
        model_atlas: an atlas built with ``keep_activations`` (its path or :class:`Atlas`).
        brain_atlas: a brain atlas (:func:`write_brain_atlas`) whose stimuli are aligned to the
            model atlas's docs (a ``doc`` per stimulus, or texts matching them).
        sites: model site(s): names of the activation store, or globs over them (``fnmatch``:
            ``*`` matches any characters, dots included), comma-separated or a list.
        pool: how a doc's tokens become one feature vector (``mean``, ``first``, ``last``,
            ``max``).
        alphas: ridge strengths searched per unit.
        folds: contiguous cross-validation folds over the stimuli (in stimulus order).
        delays: lags in stimuli for an FIR model (:func:`delay_features`), for stimuli that form
            a time series; ``None``: no delays.
        name: the analysis's name (``analyses/encoding/<name>/``).
        dtype, device: where and how the ridge runs.
        save: write the tables into the brain atlas and record the analysis.

    Returns:
        An :class:`EncodingResult`.
    """
    import fnmatch

    from neuronatlas.atlas import Atlas, add_analysis, analysis_dir, open_atlas
    from neuronatlas.brain._atlas import align_stimuli, open_recording
    from neuronatlas.compare import stimulus_features

    model = model_atlas if isinstance(model_atlas, Atlas) else open_atlas(model_atlas)
    rec = align_stimuli(open_recording(brain_atlas), model)
    store_sites = list(open_atlas(model).store().sites)
    specs = [sites] if isinstance(sites, str) else list(sites)
    chosen: list[str] = []
    for spec in specs:
        for s in spec.split(","):
            s = s.strip()
            hits = [x for x in store_sites if fnmatch.fnmatchcase(x, s)] if any(
                c in s for c in "*?[") else [s]  # fmt: skip
            if not hits:
                raise DataError(f"No stored site matches {s!r}; stored sites: {store_sites}.")
            chosen += [h for h in hits if h not in chosen]
    counts = rec.repeats_per_stimulus()
    keep = np.flatnonzero(counts > 0)
    if len(keep) < 2 * folds:
        raise DataError(
            f"Only {len(keep)} stimuli have responses; {folds}-fold cross-validation needs at "
            f"least {2 * folds}."
        )
    docs = rec.stimuli["doc"].to_numpy()[keep].astype(np.int64)
    y = rec.mean_responses()[keep]
    ok_units = np.isfinite(y).all(0)
    if not ok_units.all():
        raise DataError(
            f"{int((~ok_units).sum())} brain units have no response to some shown stimulus "
            "(NaN in every trial of it); drop those units or stimuli first."
        )
    ceiling = None
    if int(counts[keep].max()) >= 2:
        # the median number of repeats; stimuli with fewer are left out of the ceiling
        k = max(2, int(np.median(counts[keep])))
        ceiling = noise_ceiling(rec.repeats(k)[:, keep])["cc_max"].numpy()
    layers = {s["name"]: s.get("layer") for s in model.manifest.get("sites") or []}
    frames = []
    for site in chosen:
        x = stimulus_features(model, site, pool=pool, stimuli=docs)
        if delays is not None:
            x = delay_features(x, delays)
        res = ridge_cv(x, y, alphas=alphas, cv=folds, dtype=dtype, device=device, refit=False)
        r = res.r.double().numpy()
        r2 = res.r2.double().numpy()
        norm = normalize_scores(r, r2, ceiling if ceiling is not None else np.full(len(r), np.nan))
        frames.append(
            pd.DataFrame(
                {
                    "model_site": site,
                    "model_layer": pd.array([layers.get(site)] * len(r), dtype="Int32"),
                    "site": rec.units["site"].to_numpy(),
                    "unit": rec.units["unit"].to_numpy(np.int32),
                    "alpha": res.best_alpha.double().numpy(),
                    "r2": r2,
                    "r": r,
                    "cc_max": ceiling if ceiling is not None else np.full(len(r), np.nan),
                    "r_norm": norm["r_norm"].numpy(),
                    "r2_norm": norm["r2_norm"].numpy(),
                }
            )
        )
    scores = pd.concat(frames, ignore_index=True)
    summary = _summary(scores)
    path = entry = None
    if save:
        path = analysis_dir(brain_atlas, KIND, name)
        scores.to_parquet(path / "scores.parquet", index=False)
        summary.to_parquet(path / "summary.parquet", index=False)
        best = summary.loc[summary.groupby("site", sort=False)["median_r"].idxmax()]
        entry = add_analysis(
            brain_atlas, KIND, name, files=["scores.parquet", "summary.parquet"],
            model_atlas=str(model.path), model_sites=chosen, pool=pool,
            alphas=[float(a) for a in np.asarray(alphas, dtype=np.float64).reshape(-1)],
            folds=folds, delays=None if delays is None else [int(d) for d in delays],
            n_stimuli=len(keep), noise_ceiling="Schoppe et al. 2016 CC_max" if ceiling is not None
            else None, best_site={str(r.site): str(r.model_site) for r in best.itertuples()},
        )  # fmt: skip
    return EncodingResult(scores, summary, path, entry)
