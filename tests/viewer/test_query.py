"""The unit-table query: URL parameters, validation, and results against a pandas reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from viewer._viewer_util import SITE0

from neuronatlas.viewer import BadRequestError, NotFoundError, UnitQuery, ViewerAtlas
from neuronatlas.viewer._query import RangeFilter


@pytest.fixture(scope="module")
def atlas(atlas_path) -> ViewerAtlas:
    return ViewerAtlas(atlas_path)


@pytest.fixture(scope="module")
def frame(atlas, atlas_path) -> pd.DataFrame:
    df = pd.read_parquet(atlas_path / "units.parquet")
    df["__site_idx"] = df["site"].map({s.name: s.index for s in atlas.sites})
    return df


def parse(atlas: ViewerAtlas, **params) -> UnitQuery:
    items = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    return UnitQuery.from_params(items, columns=atlas.columns, sites=[s.name for s in atlas.sites])


def reference(df: pd.DataFrame, q: UnitQuery) -> list[tuple[str, int]]:
    """(site, unit) of the query's page, computed with pandas."""
    keep = np.ones(len(df), dtype=bool)
    if q.q:
        needle = q.q.lower()
        hit = df["site"].str.lower().str.contains(needle, regex=False)
        hit |= df["top_token"].fillna("").str.lower().str.contains(needle, regex=False)
        if needle.isdigit():
            hit |= df["unit"] == int(needle)
        keep &= hit.to_numpy()
    if q.sites:
        keep &= df["site"].isin(q.sites).to_numpy()
    for name in q.labels:
        keep &= df[name].fillna(False).to_numpy(dtype=bool)
    for name in q.not_labels:
        keep &= ~df[name].fillna(False).to_numpy(dtype=bool)
    if q.top_token is not None:
        keep &= (df["top_token"] == q.top_token).to_numpy()
    for r in q.ranges:
        col = df[r.column].to_numpy(dtype=float)
        ok = ~np.isnan(col)
        if r.lo is not None:
            ok &= col >= r.lo
        if r.hi is not None:
            ok &= col <= r.hi
        keep &= ok
    sub = df[keep]
    keys, asc = ["__site_idx", "unit"], [True, True]
    if q.sort:
        keys, asc = [q.sort, *keys], [q.order == "asc", True, True]
    sub = sub.sort_values(keys, ascending=asc, na_position="last", kind="mergesort")
    page = sub.iloc[q.offset : q.offset + q.per_page]
    return list(zip(page["site"], page["unit"].astype(int), strict=True))


def test_defaults_and_round_trip(atlas):
    q = parse(atlas)
    assert q == UnitQuery()
    q = parse(atlas, q=" func ", site=[SITE0], label=["dead", "!label_token"], range="kurtosis:1.5:", sort="max",
              order="desc", page="2", per_page="10", col=["site", "unit", "max"])  # fmt: skip
    assert (
        q.q == "func"
        and q.sites == (SITE0,)
        and q.labels == ("label_dead",)
        and q.not_labels == ("label_token",)
    )
    assert q.ranges == (RangeFilter("kurtosis", 1.5, None),) and (
        q.sort,
        q.order,
        q.page,
        q.per_page,
    ) == ("max", "desc", 2, 10)
    again = UnitQuery.from_params(
        q.to_params(), columns=atlas.columns, sites=[s.name for s in atlas.sites]
    )
    assert again == q


def test_empty_form_fields_mean_no_filter(atlas):
    assert parse(atlas, q="", site="", label="", top_token="", per_page="") == UnitQuery()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bogus": "1"}, "Unknown parameter 'bogus'"),
        ({"sitee": SITE0}, "did you mean 'site'"),
        (
            {"site": "encoder.layer.0.output.dense:inpt"},
            "Closest: encoder.layer.0.output.dense:input",
        ),
        ({"label": "deadd"}, "did you mean 'label_dead'"),
        ({"sort": "kurtosiss"}, "Did you mean 'kurtosis'"),
        ({"sort": "hist_edges"}, "no such column"),
        ({"order": "up"}, "'asc' or 'desc'"),
        ({"page": "0"}, "must be in [1,"),
        ({"page": "two"}, "must be an integer"),
        ({"per_page": "501"}, "must be in [1, 500]"),
        ({"range": "kurtosis"}, "COLUMN:LOW:HIGH"),
        ({"range": "kurtosis::"}, "neither a low nor a high"),
        ({"range": "kurtosis:2:1"}, "is empty"),
        ({"range": "kurtosis:a:"}, "must be a number"),
        ({"range": "kurtosis:nan:"}, "not NaN"),
        ({"range": "top_token:1:2"}, "numeric columns"),
        ({"range": "nope:1:2"}, "no such column"),
        ({"col": "nope"}, "no such column"),
        ({"q": "x" * 201}, "at most 200"),
        ({"q": ["a", "b"]}, "give it once"),
        ({"site": [SITE0] * 65}, "at most 64"),
    ],
)
def test_invalid_parameters_are_rejected_with_a_message(atlas, params, message):
    with pytest.raises(BadRequestError) as err:
        parse(atlas, **params)
    assert message in str(err.value)


def test_user_text_never_reaches_sql_as_code(atlas):
    nasty = "x' OR 1=1; DROP TABLE units; --"
    page = atlas.query_units(parse(atlas, q=nasty, top_token=nasty))
    assert page.total == 0
    assert atlas.query_units(UnitQuery()).total == atlas.n_units  # table still there


def test_page_past_the_end_is_not_found(atlas):
    with pytest.raises(NotFoundError, match="page"):
        atlas.query_units(UnitQuery(page=10_000))
    empty = atlas.query_units(UnitQuery(q="no such text anywhere"))
    assert empty.total == 0 and empty.rows == [] and empty.n_pages == 1


def test_nan_sorts_last_in_both_orders(atlas_path, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    dst = tmp_path / "nan-atlas"
    shutil.copytree(atlas_path, dst)
    table = pq.read_table(dst / "units.parquet")
    k = table["kurtosis"].to_numpy().copy()
    k[0] = np.nan  # a NaN and a NULL: both sort last
    mask = np.zeros(len(k), dtype=bool)
    mask[5] = True
    table = table.set_column(
        table.schema.get_field_index("kurtosis"), "kurtosis", pa.array(k, mask=mask)
    )
    pq.write_table(table, dst / "units.parquet")
    atlas = ViewerAtlas(dst)
    missing = lambda v: v is None or math.isnan(v)  # noqa: E731
    for order in ("asc", "desc"):
        page = atlas.query_units(UnitQuery(sort="kurtosis", order=order, per_page=500))
        values = [r["kurtosis"] for r in page.rows]
        assert all(missing(v) for v in values[-2:]) and not any(missing(v) for v in values[:-2])
        finite = values[:-2]
        assert finite == sorted(finite, reverse=order == "desc")
    ranged = atlas.query_units(
        UnitQuery(ranges=(RangeFilter("kurtosis", -1e9, None),), per_page=500)
    )
    assert ranged.total == atlas.n_units - 2


def test_shown_columns_and_labels(atlas):
    page = atlas.query_units(parse(atlas, col=["unit", "max"]))
    assert [c.name for c in page.columns] == ["unit", "max"]
    assert set(page.rows[0]) >= {"site", "unit", "max", "label_dead", "label_token"}
    default = atlas.query_units(UnitQuery())
    assert [c.name for c in default.columns][:3] == ["site", "unit", "mean"] and default.columns[
        -1
    ].name == "top_token"


@st.composite
def queries(draw, atlas: ViewerAtlas, df: pd.DataFrame) -> UnitQuery:
    numeric = [c.name for c in atlas.columns.values() if c.numeric]
    sortable = [c.name for c in atlas.columns.values() if c.sortable]
    labels = [c.name for c in atlas.label_columns]
    ranges = []
    for col in draw(st.lists(st.sampled_from(numeric), max_size=2)):
        qs = np.nanquantile(df[col].to_numpy(dtype=float), [0.1, 0.5, 0.9])
        lo = draw(st.sampled_from([None, float(qs[0]), float(qs[1])]))
        hi = draw(st.sampled_from([None, float(qs[2])]))
        if lo is None and hi is None:
            hi = float(qs[1])
        ranges.append(RangeFilter(col, lo, hi))
    return UnitQuery(
        q=draw(st.sampled_from(["", "layer.1", "the", "7", "RESID", "<script"])),
        sites=tuple(
            draw(st.lists(st.sampled_from([s.name for s in atlas.sites]), max_size=2, unique=True))
        ),
        labels=tuple(draw(st.lists(st.sampled_from(labels), max_size=1))),
        not_labels=tuple(draw(st.lists(st.sampled_from(labels), max_size=1))),
        ranges=tuple(ranges),
        sort=draw(st.sampled_from([None, *sortable])),
        order=draw(st.sampled_from(["asc", "desc"])),
        page=draw(st.integers(1, 3)),
        per_page=draw(st.sampled_from([1, 7, 50])),
    )


def test_query_matches_pandas_reference(atlas, frame):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(queries(atlas, frame))
    def check(q: UnitQuery) -> None:
        expected = reference(frame, q)
        try:
            page = atlas.query_units(q)
        except NotFoundError:
            assert expected == [] and q.page > 1
            return
        assert [(r["site"], r["unit"]) for r in page.rows] == expected

    check()


def test_top_token_filter_is_exact(atlas, frame):
    token = frame["top_token"].value_counts().index[0]
    page = atlas.query_units(parse(atlas, top_token=token, per_page="500"))
    assert page.total == int((frame["top_token"] == token).sum())
    assert {r["top_token"] for r in page.rows} == {token}
