"""A recording: brain responses to stimuli, trial by trial, as units grouped in sites.

Every loader (NWB, NIfTI, plain arrays) returns a :class:`Recording`; the brain atlas and the
encoding models read it. Repeated trials of a stimulus are kept (noise ceilings need them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from neuronatlas.errors import DataError

__all__ = ["Recording", "read_stimulus_table"]


@dataclass
class Recording:
    """Brain responses to stimuli.

    Attributes:
        responses: ``(trial, unit)`` float32 responses (NaN = not recorded in that trial).
        trial_stimulus: ``(trial,)`` int64, the stimulus (row of ``stimuli``) of each trial.
        stimuli: one row per stimulus, row ``i`` = stimulus ``i``: ``name`` (str), ``text``
            (str or None: what the stimulus is, e.g. the sentence shown), ``doc`` (the doc id of
            the model atlas showing the same stimulus, nullable Int64).
        units: one row per unit (column of ``responses``): ``site`` (region / area / probe),
            ``unit`` (index within its site), ``name`` (str).
        description: what was recorded: ``name``, ``source``, ``format`` and anything else.
    """

    responses: np.ndarray
    trial_stimulus: np.ndarray
    stimuli: pd.DataFrame
    units: pd.DataFrame
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = np.asarray(self.responses, dtype=np.float32)
        if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] == 0:
            raise DataError(f"responses must be a non-empty (trial, unit) array; got {r.shape}.")
        ts = np.asarray(self.trial_stimulus)
        if ts.shape != (r.shape[0],) or not np.issubdtype(ts.dtype, np.integer):
            raise DataError(
                f"trial_stimulus must hold one integer stimulus per trial ({r.shape[0]}); got "
                f"shape {ts.shape}, dtype {ts.dtype}."
            )
        n_s = len(self.stimuli)
        if len(ts) and (ts.min() < 0 or ts.max() >= n_s):
            raise DataError(
                f"trial_stimulus refers to stimuli outside 0…{n_s - 1} (the stimulus table has "
                f"{n_s} rows)."
            )
        if len(self.units) != r.shape[1]:
            raise DataError(
                f"units has {len(self.units)} rows but responses have {r.shape[1]} columns."
            )
        stim = self.stimuli.reset_index(drop=True).copy()
        if "name" not in stim:
            stim["name"] = [str(i) for i in range(n_s)]
        stim["name"] = stim["name"].astype(str)
        if "text" not in stim:
            stim["text"] = None
        if "doc" not in stim:
            stim["doc"] = pd.array([pd.NA] * n_s, dtype="Int64")
        stim["doc"] = pd.array(stim["doc"], dtype="Int64")
        units = self.units.reset_index(drop=True).copy()
        if "site" not in units:
            units["site"] = "brain"
        units["site"] = units["site"].astype(str)
        units["unit"] = units.groupby("site", sort=False).cumcount().astype(np.int32)
        if "name" not in units:
            units["name"] = [f"{s}/{u}" for s, u in zip(units["site"], units["unit"], strict=True)]
        self.responses = r
        self.trial_stimulus = ts.astype(np.int64)
        self.stimuli = stim
        self.units = units

    @property
    def n_trials(self) -> int:
        return self.responses.shape[0]

    @property
    def n_stimuli(self) -> int:
        return len(self.stimuli)

    @property
    def n_units(self) -> int:
        return self.responses.shape[1]

    @property
    def sites(self) -> list[str]:
        """Site names in order of first appearance."""
        return list(dict.fromkeys(self.units["site"]))

    def site_columns(self, site: str) -> np.ndarray:
        """Column indices of ``responses`` that belong to ``site``."""
        cols = np.flatnonzero(self.units["site"].to_numpy() == site)
        if len(cols) == 0:
            raise DataError(f"The recording has no site {site!r}; its sites are {self.sites}.")
        return cols

    def repeats_per_stimulus(self) -> np.ndarray:
        """``(stimulus,)`` number of trials of each stimulus."""
        return np.bincount(self.trial_stimulus, minlength=self.n_stimuli)

    def mean_responses(self) -> np.ndarray:
        """``(stimulus, unit)`` trial-averaged responses (NaN-aware; NaN for unseen stimuli)."""
        out = np.zeros((self.n_stimuli, self.n_units), dtype=np.float64)
        cnt = np.zeros((self.n_stimuli, self.n_units), dtype=np.float64)
        ok = np.isfinite(self.responses)
        np.add.at(out, self.trial_stimulus, np.where(ok, self.responses, 0.0))
        np.add.at(cnt, self.trial_stimulus, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, out / np.maximum(cnt, 1), np.nan)

    def repeats(self, n_repeats: int | None = None) -> np.ndarray:
        """``(repeat, stimulus, unit)``: the first ``n_repeats`` trials of each stimulus.

        ``n_repeats`` defaults to the most trials any stimulus has; missing ones are NaN.
        """
        counts = self.repeats_per_stimulus()
        k = int(counts.max()) if n_repeats is None else int(n_repeats)
        out = np.full((k, self.n_stimuli, self.n_units), np.nan, dtype=np.float32)
        order = np.argsort(self.trial_stimulus, kind="stable")
        ts = self.trial_stimulus[order]
        rank = np.arange(len(ts)) - np.searchsorted(ts, ts, side="left")
        keep = rank < k
        out[rank[keep], ts[keep]] = self.responses[order[keep]]
        return out


def read_stimulus_table(table: Any) -> pd.DataFrame:
    """A stimulus table from a DataFrame or a CSV / Parquet / JSON-lines file.

    Columns: ``name`` (or ``stimulus``; the label trials refer to), and ``text`` and/or
    ``doc`` (the model atlas's doc id) to align the stimuli with a model's inputs.
    """
    if isinstance(table, pd.DataFrame):
        df = table.copy()
    else:
        from pathlib import Path

        path = Path(table)
        if not path.exists():
            raise DataError(f"No stimulus table at {str(path)!r}.")
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        elif path.suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=path.suffix == ".jsonl")
        else:
            raise DataError(
                f"Cannot read a stimulus table from {path.name!r}: expected .parquet, .csv, "
                ".tsv or .jsonl."
            )
    if "name" not in df and "stimulus" in df:
        df = df.rename(columns={"stimulus": "name"})
    if "name" not in df:
        df["name"] = [str(i) for i in range(len(df))]
    if df["name"].astype(str).duplicated().any():
        dup = df["name"][df["name"].astype(str).duplicated()].iloc[0]
        raise DataError(f"The stimulus table names stimulus {dup!r} twice; names must be unique.")
    if not ({"text", "doc"} & set(df.columns)):
        df["text"] = None
    return df.reset_index(drop=True)
