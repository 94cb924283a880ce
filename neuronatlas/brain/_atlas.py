"""Brain atlases: a recording written as an ordinary atlas, so brain units are browsed like
model units.

A brain atlas is an atlas directory (docs/atlas-format.md) whose "model" is the recording and
whose sites are its regions (``kind = "brain"``):

- ``units.parquet``: one row per recorded unit (neuron, ROI, voxel, channel) with the same
  statistics as model units, computed by the same accumulators
  (:class:`~neuronatlas.stats.UnitStats`) over its trial-averaged response to each stimulus;
- ``exemplars.parquet``: the stimuli that drive each unit most (``doc`` = stimulus index,
  ``pos`` = 0, ``activation`` = the trial-averaged response);
- ``tokens.parquet`` / ``docs.parquet``: one row per stimulus (its name as ``token``, its text as
  ``text``), so the viewer shows each exemplar's stimulus;
- ``analyses/brain/recording/``: the trials themselves (``responses.npy`` ``(trial, unit)``,
  ``trials.parquet``, ``stimuli.parquet`` with the model doc each stimulus is, ``units.parquet``)
  — what encoding models and noise ceilings read back (:func:`open_recording`).
"""

from __future__ import annotations

import platform
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neuronatlas.atlas import _format as fmt
from neuronatlas.brain._recording import Recording
from neuronatlas.errors import AtlasError, AtlasExistsError, DataError

__all__ = ["align_stimuli", "doc_texts", "open_recording", "write_brain_atlas"]

KIND = "brain"
RECORDING = "recording"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def doc_texts(atlas: Any) -> pd.DataFrame:
    """Each doc's text as the model saw it: ``doc``, ``text`` (token texts joined), and the
    texts without the first and/or last token (special tokens the tokenizer adds)."""
    from neuronatlas.atlas import Atlas, open_atlas

    a = atlas if isinstance(atlas, Atlas) else open_atlas(atlas)
    return a.query(
        "select doc, string_agg(text, '' order by pos) as text, "
        "string_agg(case when pos > 0 then text end, '' order by pos) as no_first, "
        "string_agg(case when pos < n - 1 then text end, '' order by pos) as no_last, "
        "string_agg(case when pos > 0 and pos < n - 1 then text end, '' order by pos) as inner_text "
        "from (select *, count(*) over (partition by doc) as n from tokens) group by doc order by doc"
    )


def align_stimuli(recording: Recording, atlas: Any) -> Recording:
    """Fill the recording's ``stimuli.doc`` from their ``text``, matched to a model atlas's docs.

    A stimulus matches a doc when its text equals the doc's text (whitespace runs collapsed,
    ends stripped), with or without the doc's first and last tokens (``[CLS]``, ``[SEP]``).
    Stimuli that already have a ``doc`` keep it.

    Raises:
        DataError: a stimulus without ``doc`` whose text is absent or matches no doc, or matches
            several.
    """
    stim = recording.stimuli.copy()
    need = stim["doc"].isna()
    if not need.any():
        return recording
    table = doc_texts(atlas)
    index: dict[str, set[int]] = {}
    for row in table.itertuples():
        for t in (row.text, row.no_first, row.no_last, row.inner_text):
            if t is not None and isinstance(t, str):
                index.setdefault(_norm(t), set()).add(int(row.doc))
    docs = stim["doc"].astype("object").tolist()
    unmatched, ambiguous = [], []
    for i in np.flatnonzero(need.to_numpy()):
        text = stim["text"].iloc[i]
        hits = index.get(_norm(text), set()) if isinstance(text, str) else set()
        if len(hits) == 1:
            docs[i] = next(iter(hits))
        elif hits:
            ambiguous.append(stim["name"].iloc[i])
        else:
            unmatched.append(stim["name"].iloc[i])
    if unmatched or ambiguous:
        raise DataError(
            f"{len(unmatched)} stimuli match no doc of the model atlas by text (first: "
            f"{unmatched[:3]}) and {len(ambiguous)} match several ({ambiguous[:3]}). Give a "
            "`doc` column in the stimulus table (the model atlas's doc ids), or texts exactly as "
            "in its docs (see neuronatlas.brain.doc_texts)."
        )
    stim["doc"] = pd.array(docs, dtype="Int64")
    return Recording(recording.responses, recording.trial_stimulus, stim, recording.units,
                     dict(recording.description))  # fmt: skip


def _site_entry(name: str, n_units: int) -> dict[str, Any]:
    return {"name": name, "module": name, "hook": "output", "kind": KIND, "layer": None,
            "n_units": n_units}  # fmt: skip


def write_brain_atlas(
    recording: Recording,
    out: str | Path,
    *,
    top_k: int = 20,
    force: bool = False,
) -> Path:
    """Write ``recording`` as an atlas directory at ``out``.

    Args:
        recording: the :class:`Recording` (e.g. from :func:`load_nwb`).
        out: the atlas directory to create.
        top_k: exemplar stimuli kept per unit.
        force: replace an existing directory at ``out``.

    Returns:
        ``out`` as a Path (open it with :func:`neuronatlas.open_atlas`).

    Raises:
        AtlasExistsError: ``out`` exists and is not empty (pass ``force``).
    """
    from neuronatlas.atlas._tables import DOC_SCHEMA, TOKEN_SCHEMA, write_tables
    from neuronatlas.sites import Site
    from neuronatlas.stats import SiteBatch, UnitStats

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise AtlasExistsError(
                f"{str(out)!r} exists and is not empty; choose a new directory or pass "
                "force=True (CLI --force) to replace it."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / fmt.PARTIAL
    partial.mkdir()
    try:
        mean = recording.mean_responses()  # (stimulus, unit)
        seen = recording.repeats_per_stimulus() > 0
        stim = recording.stimuli
        n_s = recording.n_stimuli
        texts = [
            t if isinstance(t, str) else n for t, n in zip(stim["text"], stim["name"], strict=True)
        ]
        pq.write_table(
            pa.table(
                {"doc": np.arange(n_s, dtype=np.int64), "pos": np.zeros(n_s, np.int32),
                 "token_id": np.arange(n_s, dtype=np.int64), "token": stim["name"].tolist(),
                 "text": texts},
                schema=TOKEN_SCHEMA,
            ),
            partial / "tokens-0.parquet",
        )  # fmt: skip
        pq.write_table(
            pa.table(
                {"doc": np.arange(n_s, dtype=np.int64), "source": stim["name"].tolist(),
                 "source_offset": np.zeros(n_s, np.int64), "n_tokens": np.ones(n_s, np.int32)},
                schema=DOC_SCHEMA,
            ),
            partial / "docs-0.parquet",
        )  # fmt: skip
        sites, stats = [], {}
        for name in recording.sites:
            cols = recording.site_columns(name)
            site = Site(name=name, module=name, hook="output", kind=KIND, layer=None)  # type: ignore[arg-type]
            acc = UnitStats(len(cols), top_k=top_k, context=0)
            values = torch.from_numpy(np.ascontiguousarray(mean[:, cols], dtype=np.float32))
            # a stimulus never shown is masked out (its mean is NaN, which is not a response)
            mask = torch.from_numpy(seen)[:, None]
            acc.update(SiteBatch.from_values(values[:, None, :], mask=mask))
            sites.append(site)
            stats[name] = acc
        nonfinite = write_tables(out, partial, sites, stats, ["tokens-0.parquet", "docs-0.parquet"])
    finally:
        shutil.rmtree(partial, ignore_errors=True)

    desc = {k: v for k, v in recording.description.items() if v is not None}
    manifest = {
        "format": fmt.FORMAT,
        "version": fmt.VERSION,
        "complete": True,
        "neuronatlas_version": _version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "name": desc.get("name", "recording"),
            "class": "Recording",
            "kind": KIND,
            "source": desc.get("source"),
            "n_params": 0,
            "recording": desc,
        },
        "corpus": {
            "description": f"{n_s} stimuli, {recording.n_trials} trials",
            "n_docs": n_s,
            "n_tokens": n_s,
            "n_trials": recording.n_trials,
        },
        "sites": [_site_entry(s.name, stats[s.name].n_units) for s in sites],
        "settings": {
            "top_k": top_k,
            "context": 0,
            "threshold": 0.0,
            "quantiles": True,
            "moments": True,
            "response": "trial-averaged response per stimulus",
        },
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
        "nonfinite": nonfinite,
    }
    fmt.write_json_atomic(out / fmt.MANIFEST, manifest)
    _save_recording(out, recording)
    return out


def _version() -> str:
    import neuronatlas

    return neuronatlas.__version__


def _save_recording(atlas: Path, rec: Recording) -> None:
    from neuronatlas.atlas import add_analysis, analysis_dir

    folder = analysis_dir(atlas, KIND, RECORDING)
    np.save(folder / "responses.npy", rec.responses)
    pd.DataFrame(
        {"trial": np.arange(rec.n_trials, dtype=np.int64), "stimulus": rec.trial_stimulus}
    ).to_parquet(folder / "trials.parquet", index=False)
    stim = rec.stimuli.copy()
    stim.insert(0, "stimulus", np.arange(rec.n_stimuli, dtype=np.int64))
    stim["text"] = stim["text"].astype("string")
    stim["n_trials"] = rec.repeats_per_stimulus()
    stim.to_parquet(folder / "stimuli.parquet", index=False)
    rec.units.to_parquet(folder / "units.parquet", index=False)
    counts = rec.repeats_per_stimulus()
    add_analysis(
        atlas, KIND, RECORDING,
        files=["responses.npy", "trials.parquet", "stimuli.parquet", "units.parquet"],
        n_trials=rec.n_trials, n_stimuli=rec.n_stimuli, n_units=rec.n_units,
        max_repeats=int(counts.max()), min_repeats=int(counts.min()),
        aligned=bool(rec.stimuli["doc"].notna().all()),
    )  # fmt: skip


def open_recording(atlas: str | Path) -> Recording:
    """The :class:`Recording` kept in a brain atlas (trials, stimuli, units).

    Raises:
        AtlasError: the atlas is not a brain atlas.
    """
    from neuronatlas.atlas import analysis_dir, list_analyses

    path = Path(atlas)
    if not any(a["key"] == f"{KIND}/{RECORDING}" for a in list_analyses(path)):
        raise AtlasError(
            f"{str(path)!r} is not a brain atlas (it holds no recording). Make one with "
            "`neuronatlas brain import RECORDING --out DIR` (Python: write_brain_atlas)."
        )
    folder = analysis_dir(path, KIND, RECORDING, create=False)
    manifest = fmt.read_manifest(path)
    stim = pd.read_parquet(folder / "stimuli.parquet").drop(columns=["stimulus", "n_trials"])
    stim["text"] = stim["text"].astype(object).where(stim["text"].notna(), None)
    return Recording(
        np.load(folder / "responses.npy"),
        pd.read_parquet(folder / "trials.parquet")["stimulus"].to_numpy(np.int64),
        stim,
        pd.read_parquet(folder / "units.parquet"),
        dict((manifest.get("model") or {}).get("recording") or {}),
    )
