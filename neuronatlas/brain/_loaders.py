"""Loaders: NWB (spike-sorted units, ROI responses), NIfTI (voxels in a mask), plain arrays.

Each returns a :class:`~neuronatlas.brain.Recording`: one row of responses per trial, the
stimulus of each trial, and the units grouped in sites (brain regions / areas).

- **NWB units** (pynwb): the spikes of each sorted unit are counted in each trial's window
  ``[start_time + offset, stop_time + offset)`` of the trials (or another intervals) table and
  divided by its length: the response is a firing rate in spikes/s. The site of a unit is the
  ``location`` of its first electrode (or a ``location`` column of the units table), else
  ``"units"``.
- **NWB ROI responses** (optical physiology): each ROI's trace (``RoiResponseSeries``, e.g. in
  ``processing["ophys"]``'s ``Fluorescence`` or ``DfOverF``) is averaged over the samples whose
  times fall in the trial's window. The site is the imaging plane's location, else the series's
  name.
- **NIfTI** (nibabel): the voxels inside a mask (non-zero; an integer label image makes one site
  per label). Either every volume is a trial (``events=None``; stimulus ``i`` = volume ``i``), or
  an events table (``onset``, ``duration`` in seconds, ``stimulus``) makes one trial per event:
  the mean over the volumes acquired (at ``t = i · TR``) in
  ``[onset + hrf_delay, onset + duration + hrf_delay)``.
- **Arrays** (npz / Parquet / CSV): a ``(trial, unit)`` matrix and a stimulus label per trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronatlas.brain._recording import Recording, read_stimulus_table
from neuronatlas.errors import DataError, MissingExtraError

__all__ = ["load_arrays", "load_nifti", "load_nwb", "load_recording"]


def _stimulus_index(
    labels: Any, stimuli: pd.DataFrame | None, what: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Map each trial's stimulus label to a row of the stimulus table (built if absent)."""
    lab = pd.Series(np.asarray(labels)).astype(str)
    if stimuli is None:
        names = list(dict.fromkeys(lab))
        stimuli = pd.DataFrame({"name": names, "text": [None] * len(names)})
    table = read_stimulus_table(stimuli)
    index = {n: i for i, n in enumerate(table["name"].astype(str))}
    missing = sorted(set(lab) - set(index))
    if missing:
        raise DataError(
            f"{len(missing)} stimulus labels of the {what} are not in the stimulus table "
            f"(first: {missing[:5]}); the table names {len(index)} stimuli, e.g. "
            f"{list(index)[:5]}."
        )
    return lab.map(index).to_numpy(np.int64), table


# ------------------------------------------------------------------------------------- arrays


def load_arrays(
    data: Any,
    *,
    stimuli: Any = None,
    stimulus_column: str = "stimulus",
    units: Any = None,
    name: str | None = None,
) -> Recording:
    """A recording from plain arrays.

    Args:
        data: an ``.npz`` file with ``responses`` ``(trial, unit)`` and ``stimulus`` ``(trial,)``
            (optional ``site`` ``(unit,)``); or a Parquet / CSV file / DataFrame with one row
            per trial, a ``stimulus_column`` and one column per unit; or a dict of arrays like
            the npz.
        stimuli: stimulus table (DataFrame or file; see :func:`read_stimulus_table`). Absent:
            built from the labels in order of appearance.
        stimulus_column: the column of trial stimulus labels.
        units: optional table (or list) of the units' sites, one row per unit column.
        name: a name for the recording.

    Returns:
        A :class:`Recording`.
    """
    source = str(data) if isinstance(data, (str, Path)) else type(data).__name__
    site = None
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise DataError(f"No recording at {str(path)!r}.")
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            except ValueError as exc:
                raise DataError(
                    f"Cannot read {path.name}: {exc}. Save labels as fixed-width strings "
                    "(np.asarray(labels, dtype=str)), not Python objects (never unpickled)."
                ) from exc
        elif path.suffix == ".parquet":
            data = pd.read_parquet(path)
        elif path.suffix in (".csv", ".tsv"):
            data = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        else:
            raise DataError(
                f"Cannot read {path.name!r} as arrays: expected .npz, .parquet, .csv or .tsv."
            )
    if isinstance(data, pd.DataFrame):
        if stimulus_column not in data:
            raise DataError(
                f"The table has no {stimulus_column!r} column (the stimulus of each trial); its "
                f"columns are {list(data.columns)[:10]}. Pass stimulus_column=."
            )
        unit_cols = [c for c in data.columns if c != stimulus_column]
        labels = data[stimulus_column].to_numpy()
        resp = data[unit_cols].to_numpy(np.float32)
        unit_names = [str(c) for c in unit_cols]
    elif isinstance(data, dict):
        for key in ("responses", "stimulus"):
            if key not in data:
                raise DataError(
                    f"The arrays need {key!r} ((trial, unit) responses and (trial,) stimulus "
                    f"labels); got keys {sorted(data)}."
                )
        resp = np.asarray(data["responses"], dtype=np.float32)
        labels = np.asarray(data["stimulus"])
        unit_names = None
        site = data.get("site")
    else:
        raise DataError(f"Cannot read a recording from a {type(data).__name__}.")
    if resp.ndim != 2 or len(labels) != resp.shape[0]:
        raise DataError(
            f"responses must be (trial, unit) with one stimulus label per trial; got {resp.shape} "
            f"and {len(labels)} labels."
        )
    trial_stim, table = _stimulus_index(labels, stimuli, "trials")
    if units is not None:
        utab = units if isinstance(units, pd.DataFrame) else pd.DataFrame({"site": list(units)})
    else:
        utab = pd.DataFrame(
            {"site": [str(s) for s in site] if site is not None else ["brain"] * resp.shape[1]}
        )
    if unit_names is not None and "name" not in utab:
        utab["name"] = unit_names
    return Recording(
        resp, trial_stim, table, utab,
        {"name": name or Path(source).stem, "source": source, "format": "arrays"},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------- NWB


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"Reading this format needs {module}: pip install 'neuronatlas[{extra}]'."
        ) from exc


def load_nwb(
    path: str | Path,
    *,
    responses: str = "units",
    intervals: str = "trials",
    stimulus_column: str = "stimulus",
    stimuli: Any = None,
    offset: float = 0.0,
    series: str | None = None,
) -> Recording:
    """A recording from an NWB file: sorted units' spike rates or ROI responses per trial.

    Args:
        path: the ``.nwb`` file.
        responses: ``"units"`` (spike-sorted units; rates in spikes/s) or ``"roi"`` (an
            ``RoiResponseSeries``; mean of its samples in each window).
        intervals: the intervals table giving the trials (``"trials"``, ``"epochs"`` or a name
            in ``nwbfile.intervals``); needs ``start_time``, ``stop_time`` and ``stimulus_column``.
        stimulus_column: the column naming each trial's stimulus.
        stimuli: stimulus table (labels, texts, docs); absent: built from the labels.
        offset: seconds added to both ends of each window (response latency).
        series: name of the ``RoiResponseSeries`` (default: the only / first one found).

    Returns:
        A :class:`Recording` (``description["format"] = "nwb"``).
    """
    pynwb = _need("pynwb", "brain")
    path = Path(path)
    if not path.exists():
        raise DataError(f"No NWB file at {str(path)!r}.")
    if responses not in ("units", "roi"):
        raise DataError(f"responses must be 'units' or 'roi'; got {responses!r}.")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        table = _intervals(nwb, intervals)
        df = table.to_dataframe()
        if stimulus_column not in df:
            raise DataError(
                f"The {intervals!r} table of {path.name} has no {stimulus_column!r} column; its "
                f"columns: {list(df.columns)}. Pass stimulus_column=."
            )
        start = df["start_time"].to_numpy(np.float64) + offset
        stop = df["stop_time"].to_numpy(np.float64) + offset
        if np.any(stop <= start):
            raise DataError(f"Trials of {path.name} with stop_time <= start_time cannot be binned.")
        if responses == "units":
            resp, utab = _nwb_units(nwb, start, stop, path)
        else:
            resp, utab = _nwb_roi(nwb, start, stop, path, series)
        labels = df[stimulus_column].to_numpy()
        desc = {
            "name": nwb.session_description or path.stem,
            "source": str(path),
            "format": "nwb",
            "responses": responses,
            "identifier": nwb.identifier,
            "intervals": intervals,
            "offset_s": offset,
        }
    trial_stim, stim = _stimulus_index(labels, stimuli, f"{intervals} table")
    return Recording(resp, trial_stim, stim, utab, desc)


def _intervals(nwb: Any, name: str) -> Any:
    if name == "trials" and nwb.trials is not None:
        return nwb.trials
    if name == "epochs" and nwb.epochs is not None:
        return nwb.epochs
    if nwb.intervals and name in nwb.intervals:
        return nwb.intervals[name]
    known = [n for n in ("trials", "epochs") if getattr(nwb, n) is not None]
    known += list(nwb.intervals or [])
    raise DataError(f"The NWB file has no intervals table {name!r}; it has {known or 'none'}.")


def _nwb_units(
    nwb: Any, start: np.ndarray, stop: np.ndarray, path: Path
) -> tuple[np.ndarray, pd.DataFrame]:
    units = nwb.units
    if units is None or len(units) == 0:
        raise DataError(f"{path.name} has no sorted units (nwbfile.units is empty).")
    n = len(units)
    resp = np.zeros((len(start), n), dtype=np.float32)
    dur = stop - start
    for u in range(n):
        t = np.sort(np.asarray(units["spike_times"][u], dtype=np.float64))
        counts = np.searchsorted(t, stop, side="left") - np.searchsorted(t, start, side="left")
        resp[:, u] = counts / dur
    cols = units.colnames
    sites = ["units"] * n
    if "location" in cols:
        sites = [str(x) for x in units["location"][:]]
    elif "electrodes" in cols:
        sites = []
        for u in range(n):
            el = units["electrodes"][u]
            loc = el["location"].iloc[0] if hasattr(el, "iloc") and "location" in el else "units"
            sites.append(str(loc))
    ids = list(units.id[:])
    return resp, pd.DataFrame({"site": sites, "name": [f"unit {i}" for i in ids]})


def _nwb_roi(nwb: Any, start: np.ndarray, stop: np.ndarray, path: Path,
             series: str | None) -> tuple[np.ndarray, pd.DataFrame]:  # fmt: skip
    from pynwb.ophys import RoiResponseSeries

    found = {}
    for obj in nwb.objects.values():
        if isinstance(obj, RoiResponseSeries):
            found[obj.name] = obj
    if not found:
        raise DataError(f"{path.name} has no RoiResponseSeries (optical physiology responses).")
    if series is None:
        rs = next(iter(found.values()))
    elif series in found:
        rs = found[series]
    else:
        raise DataError(f"{path.name} has no RoiResponseSeries {series!r}; it has {sorted(found)}.")
    data = np.asarray(rs.data[:], dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if rs.timestamps is not None:
        times = np.asarray(rs.timestamps[:], dtype=np.float64)
    else:
        times = rs.starting_time + np.arange(data.shape[0]) / rs.rate
    lo = np.searchsorted(times, start, side="left")
    hi = np.searchsorted(times, stop, side="left")
    csum = np.concatenate([np.zeros((1, data.shape[1])), np.cumsum(data, axis=0)])
    cnt = (hi - lo)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        resp = np.where(cnt > 0, (csum[hi] - csum[lo]) / np.maximum(cnt, 1), np.nan)
    try:
        location = rs.rois.table.imaging_plane.location or rs.name
    except AttributeError:
        location = rs.name
    n = data.shape[1]
    return resp.astype(np.float32), pd.DataFrame(
        {"site": [str(location)] * n, "name": [f"roi {i}" for i in range(n)]}
    )


# -------------------------------------------------------------------------------------- NIfTI


def load_nifti(
    image: str | Path,
    mask: str | Path,
    *,
    events: Any = None,
    stimuli: Any = None,
    tr: float | None = None,
    hrf_delay: float = 4.0,
    labels: dict[int, str] | None = None,
) -> Recording:
    """A recording from a 4-D NIfTI image: the voxels inside a mask.

    Args:
        image: ``(x, y, z, volume)`` NIfTI file.
        mask: ``(x, y, z)`` NIfTI file; non-zero voxels are kept. Integer labels make one site
            per label (named by ``labels`` or ``"region <label>"``); a 0/1 mask one site
            ``"mask"``.
        events: ``None`` (every volume is a trial of its own stimulus ``"volume <i>"``) or a
            table (DataFrame / CSV / TSV / Parquet) with ``onset``, ``duration`` (seconds) and
            ``stimulus``.
        stimuli: stimulus table for the events' labels.
        tr: repetition time in seconds (default: the image header's 4th zoom).
        hrf_delay: seconds added to each event window (the hemodynamic lag).
        labels: names of the mask's labels.

    Returns:
        A :class:`Recording` (``description["format"] = "nifti"``).
    """
    nib = _need("nibabel", "brain")
    img = nib.load(str(image))
    msk = nib.load(str(mask))
    if len(img.shape) != 4:
        raise DataError(f"{Path(image).name} must be 4-D (x, y, z, volume); got {img.shape}.")
    if tuple(msk.shape[:3]) != tuple(img.shape[:3]):
        raise DataError(
            f"The mask {Path(mask).name} has shape {msk.shape[:3]}; the image's volumes are "
            f"{img.shape[:3]}. Resample the mask to the image grid."
        )
    m = np.asarray(msk.dataobj)
    if m.ndim == 4:
        m = m[..., 0]
    inside = m != 0
    if not inside.any():
        raise DataError(f"The mask {Path(mask).name} selects no voxel (all zeros).")
    vox = np.argwhere(inside)  # (voxel, 3), C order
    data = np.asarray(img.dataobj, dtype=np.float32)[inside]  # (voxel, volume)
    vols = data.T  # (volume, voxel)
    lab = m[inside]
    uniq = np.unique(lab)
    if len(uniq) == 1 and uniq[0] == 1:
        sites = ["mask"] * len(lab)
    else:
        names = labels or {}
        sites = [names.get(int(v), f"region {int(v)}") for v in lab]
    utab = pd.DataFrame({"site": sites, "name": [f"voxel {x},{y},{z}" for x, y, z in vox.tolist()]})
    order = np.argsort(pd.Categorical(utab["site"], categories=list(dict.fromkeys(sites))).codes,
                       kind="stable")  # fmt: skip
    utab = utab.iloc[order].reset_index(drop=True)
    vols = vols[:, order]
    rep = float(tr if tr is not None else img.header.get_zooms()[3])
    desc = {"name": Path(image).name, "source": str(image), "format": "nifti",
            "mask": str(mask), "tr_s": rep, "hrf_delay_s": hrf_delay}  # fmt: skip
    if events is None:
        n = vols.shape[0]
        stim = pd.DataFrame({"name": [f"volume {i}" for i in range(n)], "text": [None] * n})
        if stimuli is not None:
            stim = read_stimulus_table(stimuli)
            if len(stim) != n:
                raise DataError(
                    f"Without events each volume is a stimulus: the stimulus table needs {n} rows; "
                    f"it has {len(stim)}."
                )
        return Recording(vols, np.arange(n, dtype=np.int64), stim, utab, desc)
    ev = events if isinstance(events, pd.DataFrame) else _read_events(events)
    for col in ("onset", "duration", "stimulus"):
        if col not in ev:
            raise DataError(f"The events table needs an {col!r} column; it has {list(ev.columns)}.")
    if rep <= 0:
        raise DataError(f"The repetition time must be positive; got {rep}. Pass tr=.")
    t = np.arange(vols.shape[0]) * rep
    on = ev["onset"].to_numpy(np.float64) + hrf_delay
    off = on + ev["duration"].to_numpy(np.float64)
    lo = np.searchsorted(t, on, side="left")
    hi = np.searchsorted(t, off, side="left")
    empty = np.flatnonzero(hi <= lo)
    if len(empty):
        raise DataError(
            f"{len(empty)} events cover no volume (first at onset {ev['onset'].iloc[empty[0]]} s "
            f"with TR {rep} s); lengthen their duration or check the onsets."
        )
    csum = np.concatenate([np.zeros((1, vols.shape[1])), np.cumsum(vols, axis=0, dtype=np.float64)])
    resp = ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)
    trial_stim, stim = _stimulus_index(ev["stimulus"].to_numpy(), stimuli, "events")
    return Recording(resp, trial_stim, stim, utab, desc)


def _read_events(path: Any) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise DataError(f"No events table at {str(p)!r}.")
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    return pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",")


def load_recording(source: str | Path, *, format: str = "auto", **kwargs: Any) -> Recording:
    """Load a recording, choosing the loader by ``format`` or the file's suffix.

    ``.nwb`` → :func:`load_nwb`; ``.nii`` / ``.nii.gz`` → :func:`load_nifti` (needs ``mask=``);
    ``.npz`` / ``.parquet`` / ``.csv`` / ``.tsv`` → :func:`load_arrays`.
    """
    name = Path(source).name
    fmt = format
    if fmt == "auto":
        if name.endswith(".nwb"):
            fmt = "nwb"
        elif name.endswith((".nii", ".nii.gz")):
            fmt = "nifti"
        elif name.endswith((".npz", ".parquet", ".csv", ".tsv")):
            fmt = "arrays"
        else:
            raise DataError(
                f"Cannot tell the format of {name!r}: expected .nwb, .nii(.gz), .npz, .parquet, "
                ".csv or .tsv; or pass format='nwb' | 'nifti' | 'arrays'."
            )
    if fmt == "nwb":
        return load_nwb(source, **kwargs)
    if fmt == "nifti":
        if "mask" not in kwargs:
            raise DataError("Loading NIfTI needs a mask (mask=PATH, CLI --mask).")
        return load_nifti(source, kwargs.pop("mask"), **kwargs)
    if fmt == "arrays":
        return load_arrays(source, **kwargs)
    raise DataError(f"format must be 'auto', 'nwb', 'nifti' or 'arrays'; got {format!r}.")
