"""Reading an atlas: :func:`open_atlas` and the :class:`Atlas` container.

The container only reads tables; analyses are functions that take an atlas (STYLE: containers
don't grow analysis methods).
"""

from __future__ import annotations

import html
import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuronatlas.atlas import _format as fmt
from neuronatlas.errors import AtlasError, SiteError, closest

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from neuronatlas.store import ActivationStore

__all__ = ["Atlas", "UnitCard", "open_atlas"]


def open_atlas(path: str | Path | Atlas) -> Atlas:
    """Open the atlas directory at ``path`` (an :class:`Atlas` is returned as it is).

    Examples:
        >>> atlas = open_atlas("atlases/minilm-pydocs")  # doctest: +SKIP
        >>> atlas.units.sort_values("kurtosis").tail(3)  # doctest: +SKIP
        >>> atlas.exemplars("encoder.layer.3.output.dense:input", 42)  # doctest: +SKIP

    Raises:
        AtlasError: ``path`` is not an atlas, or its build has not finished.
        FormatVersionError: the atlas was written by another format version.
    """
    return path if isinstance(path, Atlas) else Atlas(path)


class Atlas:
    """An atlas on disk: its manifest, and its tables as DataFrames or DuckDB views.

    Attributes:
        path: the atlas directory.
        manifest: the parsed ``atlas.json``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = fmt.read_manifest(self.path)
        if not self.manifest.get("complete", False):
            raise AtlasError(
                f"The atlas at {str(self.path)!r} is incomplete: its build was interrupted or is "
                "still running. Run the same `neuronatlas map` command again to resume it."
            )

    def __repr__(self) -> str:
        m = self.manifest
        n_units = sum(s["n_units"] for s in m["sites"])
        return (
            f"Atlas({str(self.path)!r}, model={m['model'].get('name')!r}, sites={len(m['sites'])}, "
            f"units={n_units}, tokens={m['corpus'].get('n_tokens')})"
        )

    # -- sites -----------------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        """Site names, in model order."""
        return [s["name"] for s in self.manifest["sites"]]

    def site_info(self, site: str) -> dict[str, Any]:
        """The manifest entry of ``site`` (name, module, hook, kind, layer, n_units)."""
        for s in self.manifest["sites"]:
            if s["name"] == site:
                return s
        raise SiteError(
            f"The atlas has no site {site!r}. Its sites are {self.sites}; "
            f"closest: {closest(site, self.sites)}."
        )

    def store(self, site: str | None = None) -> ActivationStore:
        """The raw activations kept with the atlas (``map --keep-activations``), for reading.

        Args:
            site: check that this site's activations are in the store.

        Raises:
            AtlasError: the atlas was built without ``keep_activations``, or ``site`` is a site
                of the atlas that the store does not hold.
            SiteError: ``site`` is not a site of the atlas.
        """
        from neuronatlas.store import ActivationStore

        info = self.manifest.get("store")
        if not info:
            raise AtlasError(
                f"The atlas at {str(self.path)!r} holds no raw activations, which this analysis "
                "reads. Build it again with `neuronatlas map ... --keep-activations` (Python: "
                "build_atlas(..., keep_activations=True))."
            )
        store = ActivationStore.open(self.path / info["path"])
        if site is not None:
            self.site_info(site)
            if site not in store.sites:
                raise AtlasError(
                    f"Site {site!r} is in the atlas but not in its activation store, which holds "
                    f"{list(store.sites)}. Map again with that site and --keep-activations."
                )
        return store

    def _check_unit(self, site: str, unit: int) -> None:
        n = self.site_info(site)["n_units"]
        if not (isinstance(unit, (int, np.integer)) and 0 <= unit < n):
            raise SiteError(f"Site {site!r} has units 0…{n - 1}; got unit {unit!r}.")

    # -- tables ----------------------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        """Path of the table ``name`` (``units``, ``exemplars``, ``tokens``, ``docs``)."""
        if name not in fmt.TABLES:
            raise AtlasError(f"Unknown atlas table {name!r}; the tables are {sorted(fmt.TABLES)}.")
        return self.path / fmt.TABLES[name]

    @cached_property
    def units(self) -> pd.DataFrame:
        """One row per unit with every statistic and label (``units.parquet``)."""
        import pandas as pd

        return pd.read_parquet(self.table_path("units"))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the atlas tables as views ``units``, ``exemplars``, …"""
        import duckdb

        con = duckdb.connect()
        for name, file in fmt.TABLES.items():
            p = self.path / file
            if p.exists():
                quoted = str(p).replace("'", "''")
                con.execute(f"create view {name} as select * from read_parquet('{quoted}')")
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run DuckDB SQL over the atlas tables (``units``, ``exemplars``, ``tokens``, ``docs``).

        Examples:
            >>> atlas.query("select layer, avg(frac_active) from units group by layer")  # doctest: +SKIP
        """
        con = self.connect()
        try:
            return con.execute(sql, params or []).df()
        finally:
            con.close()

    def tokens(self, doc: int, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """The tokens of sequence ``doc`` at positions ``start`` ≤ pos < ``stop``."""
        stop = 2**31 - 1 if stop is None else stop
        return self.query(
            "select pos, token_id, token, text from tokens where doc = ? and pos >= ? and pos < ? "
            "order by pos",
            [int(doc), int(start), int(stop)],
        )

    def exemplars(self, site: str, unit: int) -> pd.DataFrame:
        """The top-k exemplars of one unit, strongest first, with their context decoded.

        Columns: ``rank, activation, doc, pos, token, context`` (the context as readable text, the
        exemplar token in ⟦brackets⟧), ``context_tokens`` (list of display strings) and
        ``context_acts`` (the unit's activation at each context token; NaN where not recorded).
        """
        self._check_unit(site, unit)
        ex = self.query(
            "select rank, activation, doc, pos, token, ctx_start, ctx_acts from exemplars "
            "where site = ? and unit = ? order by rank",
            [site, int(unit)],
        )
        if ex.empty:
            return ex
        ctx = self.query(
            "select t.doc, t.pos, t.text from tokens t join (select distinct doc, ctx_start, "
            "len(ctx_acts) as n from exemplars where site = ? and unit = ?) e "
            "on t.doc = e.doc and t.pos >= e.ctx_start and t.pos < e.ctx_start + e.n "
            "order by t.doc, t.pos",
            [site, int(unit)],
        )
        by_doc: dict[int, dict[int, str]] = {}
        for d, p, t in zip(ctx["doc"], ctx["pos"], ctx["text"], strict=True):
            by_doc.setdefault(int(d), {})[int(p)] = t
        tokens_col, acts_col, text_col = [], [], []
        for row in ex.itertuples():
            doc_tokens = by_doc.get(int(row.doc), {})
            positions = range(int(row.ctx_start), int(row.ctx_start) + len(row.ctx_acts))
            toks, acts = [], []
            for p, a in zip(positions, row.ctx_acts, strict=True):
                if p in doc_tokens:
                    toks.append(doc_tokens[p])
                    acts.append(float(a))
            tokens_col.append(toks)
            acts_col.append(np.asarray(acts, dtype=np.float32))
            text_col.append(
                "".join(
                    f"⟦{t}⟧" if p == row.pos else t
                    for p, t in zip(
                        positions, [doc_tokens.get(p, "") for p in positions], strict=True
                    )
                )
            )
        ex = ex.drop(columns=["ctx_start", "ctx_acts"])
        ex["context"] = text_col
        ex["context_tokens"] = tokens_col
        ex["context_acts"] = acts_col
        return ex

    def unit(self, site: str, unit: int) -> UnitCard:
        """A card with one unit's statistics and exemplars (renders as HTML in notebooks)."""
        self._check_unit(site, unit)
        stats = self.query("select * from units where site = ? and unit = ?", [site, int(unit)])
        return UnitCard(site, int(unit), stats.iloc[0].to_dict(), self.exemplars(site, unit))


class UnitCard:
    """One unit's statistics and exemplars; ``_repr_html_`` draws it in a notebook."""

    def __init__(self, site: str, unit: int, stats: dict[str, Any], exemplars: pd.DataFrame):
        self.site, self.unit, self.stats, self.exemplars = site, unit, stats, exemplars

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"UnitCard({self.site!r}, unit={self.unit}, mean={s.get('mean'):.4g}, "
            f"max={s.get('max'):.4g}, frac_active={s.get('frac_active'):.3f}, "
            f"top={s.get('top_token')!r})"
        )

    def _repr_html_(self) -> str:
        esc = html.escape
        keys = ["count", "mean", "std", "min", "max", "frac_active", "kurtosis", "p50", "p99"]
        stat_cells = "".join(
            f"<td style='padding:2px 8px'><b>{esc(k)}</b><br>{_fmt(self.stats.get(k))}</td>"
            for k in keys
            if k in self.stats
        )
        labels = [k[6:] for k, v in self.stats.items() if k.startswith("label_") and v is True]
        rows = []
        for ex in self.exemplars.itertuples():
            amax = float(np.nanmax(np.abs(ex.context_acts))) if len(ex.context_acts) else 0.0
            spans = "".join(
                _shade(t, a, amax) for t, a in zip(ex.context_tokens, ex.context_acts, strict=True)
            )
            rows.append(
                f"<tr><td style='padding:2px 8px;text-align:right'>{ex.activation:.3g}</td>"
                f"<td style='font-family:monospace;white-space:pre-wrap'>{spans}</td></tr>"
            )
        return (
            f"<div><h4 style='margin:4px 0'>{esc(self.site)} · unit {self.unit}"
            f"{' · ' + esc(', '.join(labels)) if labels else ''}</h4>"
            f"<table><tr>{stat_cells}</tr></table>"
            f"<table>{''.join(rows)}</table></div>"
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def _shade(token: str, act: float, amax: float) -> str:
    alpha = 0.0 if not (amax > 0 and math.isfinite(act)) else max(0.0, act) / amax
    return (
        f"<span title='{act:.4g}' style='background:rgba(255,120,0,{alpha:.2f})'>"
        f"{html.escape(token)}</span>"
    )
