"""Compare every site of one atlas with every site (or region) of another, on shared stimuli.

:func:`compare_atlases` aligns the two atlases' stimuli, pools each site's stored activations
into ``(stimulus, unit)`` features, scores every pair of sites with a measure, adds permutation
p-values and bootstrap confidence intervals over stimuli, and saves the tidy table in the first
atlas as analysis ``compare/<name>`` (``matrix.parquet``), which the viewer shows as a heat-map.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuronatlas.atlas import open_atlas
from neuronatlas.compare._features import stimulus_docs, stimulus_features
from neuronatlas.compare._measures import check_options, get_measure
from neuronatlas.compare._stats import bootstrap_ci, permutation_test
from neuronatlas.compare._validate import CompareError, as_matrix
from neuronatlas.errors import NeuronAtlasError, SiteError, closest

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = ["COLUMNS", "align_stimuli", "compare_atlases", "compare_features", "load_comparison"]

KIND = "compare"
FILE = "matrix.parquet"
COLUMNS = ["site_a", "site_b", "layer_a", "layer_b", "value", "ci_low", "ci_high", "p", "n_stimuli"]
# cache the prepared states of the second side (Grams / RDMs) up to this many bytes
_CACHE_BYTES = 2 << 30


def align_stimuli(
    a: Atlas | str | Path, b: Atlas | str | Path, *, align: str = "auto"
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The docs of ``a`` and ``b`` that are the same stimuli, in the same order.

    Args:
        a, b: atlases.
        align: ``"source"`` — the same ``(source, source_offset)`` holding the same text (the
            same text cut at the same place: atlases of models with one tokenizer and window);
            ``"doc"`` — the same doc id (the same inputs fed in one order, e.g. tensors);
            ``"auto"`` — by source when any doc matches that way, else by doc id.

    Returns:
        ``(docs_a, docs_b, info)``: matched doc ids (sorted by ``docs_a``) and
        ``info = {"align", "n_a", "n_b", "n_shared"}``.

    Raises:
        CompareError: fewer than 3 shared stimuli, with the counts and what to do.
    """
    if align not in ("auto", "source", "doc"):
        raise CompareError(f"align must be 'auto', 'source' or 'doc'; got {align!r}.")
    da, db = stimulus_docs(a), stimulus_docs(b)
    how = align
    if align in ("auto", "source"):
        m = da.merge(db, on=["source", "source_offset"], suffixes=("_a", "_b"))
        if len(m):  # the same place of the same source must hold the same text
            ta, tb = _doc_texts(a), _doc_texts(b)
            same = [ta.get(x) == tb.get(y) for x, y in zip(m["doc_a"], m["doc_b"], strict=True)]
            m = m[np.asarray(same, dtype=bool)]
        if len(m) or align == "source":
            how = "source"
            m = m.sort_values("doc_a")
            ia, ib = m["doc_a"].to_numpy(np.int64), m["doc_b"].to_numpy(np.int64)
    if how in ("auto", "doc"):
        how = "doc"
        ia = ib = np.intersect1d(da["doc"].to_numpy(np.int64), db["doc"].to_numpy(np.int64))
    info = {"align": how, "n_a": len(da), "n_b": len(db), "n_shared": len(ia)}
    if len(ia) < 3:
        raise CompareError(
            f"The atlases share {len(ia)} stimuli (matched by {how}: {len(da)} docs in the first, "
            f"{len(db)} in the second); comparing needs at least 3. Build both atlases over the "
            "same corpus (same documents, same window), or pass align='doc' when the docs are "
            "the same inputs in the same order."
        )
    return ia, ib, info


def _doc_texts(atlas: Atlas | str | Path) -> dict[int, str]:
    """``{doc: md5 of its text}`` (the text the model read, from the atlas's tokens table)."""
    a = open_atlas(atlas)
    rows = a.query(
        "select doc, md5(string_agg(coalesce(text, token, cast(token_id as varchar)), '\x1f' "
        "order by pos)) from tokens group by doc"
    )
    return dict(zip(rows.iloc[:, 0].astype(int), rows.iloc[:, 1], strict=True))


def _site_list(atlas: Atlas, sites: Sequence[str] | str | None) -> list[str]:

    stored = list(open_atlas(atlas).store().sites)
    if sites is None:
        return stored
    wanted = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
    out: list[str] = []
    for spec in wanted:
        if any(c in spec for c in "*?["):
            import fnmatch

            hits = [s for s in stored if fnmatch.fnmatchcase(s, spec)]
        else:
            hits = [spec] if spec in stored else []
        if not hits:
            raise SiteError(
                f"No stored site of {str(atlas.path)!r} matches {spec!r}. Stored sites: {stored}; "
                f"closest: {closest(spec, stored)}."
            )
        out += [h for h in hits if h not in out]
    return out


def _is_brain_atlas(b: Any) -> bool:
    """Whether ``b`` is an atlas of recorded responses (it keeps a ``brain/recording``)."""
    from neuronatlas.atlas import list_analyses

    path = getattr(b, "path", b)
    try:
        return any(e.get("key") == "brain/recording" for e in list_analyses(path))
    except NeuronAtlasError:
        return False


def _recording_features(
    b: Any, regions: Sequence[str] | str | None, stimuli: Sequence[int] | None
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Trial-averaged ``(stimulus, unit)`` responses per region of a brain atlas, for the
    stimuli aligned to docs of the model atlas (and finite in every chosen region)."""
    from neuronatlas.brain import open_recording

    rec = open_recording(getattr(b, "path", b))
    names = rec.sites
    if regions is not None:
        wanted = [r.strip() for r in regions.split(",")] if isinstance(regions, str) else regions
        unknown = [r for r in wanted if r not in names]
        if unknown:
            raise SiteError(
                f"The recording has no regions {unknown}; its regions are {names}; closest: "
                f"{closest(unknown[0], names)}."
            )
        names = list(wanted)
    mean = rec.mean_responses()
    cols = {r: rec.site_columns(r) for r in names}
    used = np.concatenate(list(cols.values()))
    doc = rec.stimuli["doc"]
    keep = doc.notna().to_numpy() & np.isfinite(mean[:, used]).all(1)
    if stimuli is not None:
        keep &= np.isin(doc.fillna(-1).to_numpy(np.int64), np.asarray(stimuli, dtype=np.int64))
    docs = doc[keep].to_numpy(np.int64)
    order = np.argsort(docs, kind="stable")
    rows = np.flatnonzero(keep)[order]
    info = {"align": "recording stimuli", "n_a": None, "n_b": int(rec.n_stimuli),
            "n_shared": len(rows)}  # fmt: skip
    if len(rows) < 3:
        raise CompareError(
            f"The recording has {len(rows)} stimuli aligned to docs of the model atlas with "
            f"responses in every chosen region (of {rec.n_stimuli}); comparing needs at least 3. "
            "Align its stimuli to the atlas when importing it (a stimulus table with the text "
            "or doc of each stimulus)."
        )
    return {r: mean[rows][:, c] for r, c in cols.items()}, docs[order], info


def _layer(atlas: Atlas | None, site: str) -> int | None:
    if atlas is None:
        return None
    for s in atlas.manifest["sites"]:
        if s["name"] == site:
            return s.get("layer")
    return None


def compare_features(
    feats_a: Mapping[str, Any],
    feats_b: Mapping[str, Any],
    *,
    measure: str = "cka",
    n_perm: int = 0,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
    device: str | torch.device | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Score every pair of named representations of the same stimuli.

    Args:
        feats_a, feats_b: ``{name: (stimulus, unit)}`` (rows = the same stimuli in the same order).
        measure: a key of :data:`neuronatlas.compare.MEASURES` (``cka``, ``cka-debiased``,
            ``cka-rbf``, ``rsa``, ``trsa``, ``shape``, ``svcca``, ``cca``, …).
        n_perm: permutations for the p-value (0 = none; ``p`` is NaN).
        n_boot: bootstrap draws for the confidence interval (0 = none; NaN).
        level: confidence level. seed: seed of permutations and draws (the same for every pair).
        device: where to compute (``None`` = CPU).
        options: the measure's options (e.g. ``comparison="corr"`` for ``rsa``,
            ``alpha=0.5`` for ``shape``).

    Returns:
        DataFrame with ``site_a, site_b, value, ci_low, ci_high, p, n_stimuli`` (one row per pair).
    """
    import pandas as pd

    m = get_measure(measure)
    opts = check_options(m, options)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    same = feats_a.keys() == feats_b.keys() and all(feats_a[k] is feats_b[k] for k in feats_a)
    xa = {k: as_matrix(v, f"feats_a[{k!r}]").to(dev) for k, v in feats_a.items()}
    xb = xa if same else {k: as_matrix(v, f"feats_b[{k!r}]").to(dev) for k, v in feats_b.items()}
    if not xa or not xb:
        raise CompareError("Both sides need at least one representation to compare.")
    sizes = {x.shape[0] for x in [*xa.values(), *xb.values()]}
    if len(sizes) != 1:
        raise CompareError(
            f"Every representation needs one row per shared stimulus; got row counts {sorted(sizes)}."
        )
    n = sizes.pop()
    names_b = list(xb)
    cache: dict[str, Any] = {}
    budget = _CACHE_BYTES

    def state_b(name: str) -> Any:
        nonlocal budget
        if name in cache:
            return cache[name]
        s = m.prepare(xb[name], **opts)
        size = _nbytes(s)
        if size <= budget:
            cache[name] = s
            budget -= size
        return s

    rows: list[dict[str, Any]] = []
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for name_a, x in xa.items():
        sa = m.prepare(x, **opts)
        if same:
            cache.setdefault(name_a, sa)
        for name_b in names_b:
            if same and m.symmetric and (name_b, name_a) in done:
                rows.append({**done[(name_b, name_a)], "site_a": name_a, "site_b": name_b})
                continue
            sb = state_b(name_b)
            value = m.score(sa, sb, **opts)
            row = {"site_a": name_a, "site_b": name_b, "value": value, "ci_low": np.nan,
                   "ci_high": np.nan, "p": np.nan, "n_stimuli": n}  # fmt: skip
            if n_perm:
                row["p"] = permutation_test(
                    lambda p, sa=sa, sb=sb: m.score(sa, m.take(sb, p), **opts),
                    n, n_perm, observed=value, seed=seed,
                    alternative="greater" if m.similarity else "less",
                ).p  # fmt: skip
            if n_boot:
                ci = bootstrap_ci(
                    lambda i, sa=sa, sb=sb: m.score(m.take(sa, i), m.take(sb, i), **opts),
                    n, n_boot, level=level, seed=seed, method=m.interval, observed=value,
                )  # fmt: skip
                row["ci_low"], row["ci_high"] = ci.low, ci.high
            done[(name_a, name_b)] = row
            rows.append(row)
    return pd.DataFrame(rows)


def _nbytes(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if state is None:
        return 0
    return sum(_nbytes(v) for v in vars(state).values() if isinstance(v, torch.Tensor))


def _default_name(measure: str, a: Atlas, b: Atlas | None, label: str | None) -> str:
    if b is not None and b.path.resolve() == a.path.resolve():
        other = "self"
    else:
        other = label or (b.path.name if b is not None else "recording")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{measure}-{other}").strip("-.")
    return name[:128] or measure


def compare_atlases(
    a: Atlas | str | Path,
    b: Atlas | str | Path | Mapping[str, Any],
    *,
    sites_a: Sequence[str] | str | None = None,
    sites_b: Sequence[str] | str | None = None,
    measure: str = "cka",
    pool: str = "mean",
    n_perm: int = 0,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
    align: str = "auto",
    stimuli: Sequence[int] | None = None,
    name: str | None = None,
    label: str | None = None,
    save: bool = True,
    device: str | torch.device | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Layer × layer (or layer × region) similarity of two atlases on their shared stimuli.

    Args:
        a: an atlas with stored activations (``keep_activations``); results are saved in it.
        b: another atlas (or ``a`` itself, for layer × layer within one model); a brain atlas
            (``neuronatlas.brain.write_brain_atlas``: its trial-averaged responses per region,
            for its stimuli aligned to docs of ``a``); or ``{region: (stimulus, unit) array}``
            recorded responses whose rows are the docs ``stimuli`` of ``a`` (in that order).
        sites_a, sites_b: stored sites to compare (names or globs; ``None`` = all stored sites);
            for a brain atlas, ``sites_b`` are region names (``None`` = all).
        measure: see :func:`compare_features` (default linear CKA).
        pool: how a doc's tokens become one vector (:func:`stimulus_features`).
        n_perm, n_boot, level, seed: permutation test and bootstrap CI over stimuli.
        align: how stimuli are matched across atlases (:func:`align_stimuli`).
        stimuli: for atlas ``b``: restrict to these docs of ``a``; for arrays: the docs of
            ``a`` their rows are (required).
        name: analysis name (default ``<measure>-<other atlas folder | self>``).
        label: name of the other side in the saved metadata and the page.
        save: write ``ATLAS_A/analyses/compare/<name>/matrix.parquet`` and record it.
        device: where to compute. options: the measure's options.

    Returns:
        Tidy DataFrame: ``site_a, site_b, layer_a, layer_b, value, ci_low, ci_high, p,
        n_stimuli`` (one row per pair; ``value`` is a similarity, or a distance for ``shape``).

    Raises:
        CompareError: stimuli that do not match, bad measure or options.
        SiteError: unknown sites. AtlasError: an atlas without stored activations.
    """
    t0 = time.perf_counter()
    m = get_measure(measure)
    check_options(m, options)
    atlas_a = open_atlas(a)
    names_a = _site_list(atlas_a, sites_a)
    atlas_b: Atlas | None = None
    cached: dict[str, torch.Tensor] = {}  # features of sites both sides share (same atlas)
    if isinstance(b, Mapping):
        if stimuli is None:
            raise CompareError(
                "Comparing with recorded arrays needs `stimuli`: the doc ids of the first atlas "
                "that the arrays' rows are, in order."
            )
        docs_a = np.asarray(stimuli, dtype=np.int64)
        feats_b = dict(b)
        for k, v in feats_b.items():
            rows = as_matrix(v, f"b[{k!r}]").shape[0]
            if rows != len(docs_a):
                raise CompareError(
                    f"Recording {k!r} has {rows} rows but {len(docs_a)} stimuli were given; one "
                    "row per stimulus, in the order of `stimuli`."
                )
        info = {"align": "given", "n_a": None, "n_b": len(docs_a), "n_shared": len(docs_a)}
    elif _is_brain_atlas(b):
        feats_b, docs_a, info = _recording_features(b, sites_b, stimuli)
        label = label or Path(getattr(b, "path", b)).name
    else:
        atlas_b = open_atlas(b)
        same = atlas_b.path.resolve() == atlas_a.path.resolve()
        if same:
            all_docs = stimulus_docs(atlas_a)["doc"].to_numpy(np.int64)
            docs_a = docs_b = all_docs
            info = {"align": "same atlas", "n_a": len(all_docs), "n_b": len(all_docs),
                    "n_shared": len(all_docs)}  # fmt: skip
        else:
            docs_a, docs_b, info = align_stimuli(atlas_a, atlas_b, align=align)
        if stimuli is not None:
            keep = np.isin(docs_a, np.asarray(stimuli, dtype=np.int64))
            docs_a, docs_b = docs_a[keep], docs_b[keep]
            info["n_shared"] = int(keep.sum())
        names_b = _site_list(atlas_b, sites_b)
        feats_b = {}
        for s in names_b:
            if same and s in names_a:
                cached[s] = stimulus_features(atlas_a, s, pool=pool, stimuli=docs_a)  # type: ignore[arg-type]
                feats_b[s] = cached[s]
            else:
                feats_b[s] = stimulus_features(atlas_b, s, pool=pool, stimuli=docs_b)  # type: ignore[arg-type]
    feats_a = {
        s: cached[s] if s in cached else stimulus_features(atlas_a, s, pool=pool, stimuli=docs_a)  # type: ignore[arg-type]
        for s in names_a
    }
    table = compare_features(feats_a, feats_b, measure=measure, n_perm=n_perm, n_boot=n_boot,
                             level=level, seed=seed, device=device, **options)  # fmt: skip
    table.insert(2, "layer_a", [_layer(atlas_a, s) for s in table["site_a"]])
    table.insert(3, "layer_b", [_layer(atlas_b, s) for s in table["site_b"]])
    table["layer_a"] = table["layer_a"].astype("Int32")
    table["layer_b"] = table["layer_b"].astype("Int32")
    table = table[COLUMNS]
    if save:
        from neuronatlas.atlas import add_analysis, analysis_dir

        key = name or _default_name(measure, atlas_a, atlas_b, label)
        folder = analysis_dir(atlas_a.path, KIND, key)
        table.to_parquet(folder / FILE, index=False)
        m_opts = check_options(m, options)
        add_analysis(
            atlas_a.path, KIND, key, files=[FILE], measure=measure,
            description=m.description, similarity=m.similarity, options=m_opts, pool=pool,
            other=label or (str(atlas_b.path) if atlas_b is not None else "recording"),
            other_title=label or (atlas_b.manifest["model"].get("name") if atlas_b else None)
            or "recording",
            sites_a=list(dict.fromkeys(table["site_a"])),
            sites_b=list(dict.fromkeys(table["site_b"])),
            n_perm=n_perm, n_boot=n_boot, level=level, interval=m.interval, seed=seed,
            alignment=info,
            seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
    table.attrs["alignment"] = info
    return table


def load_comparison(atlas: Atlas | str | Path, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A saved comparison: its table and its manifest entry."""
    import pandas as pd

    from neuronatlas.atlas import get_analysis

    a = open_atlas(atlas)
    entry = get_analysis(a.path, KIND, name)
    return pd.read_parquet(a.path / entry["path"] / FILE), entry
