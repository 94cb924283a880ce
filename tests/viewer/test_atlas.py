"""Reading an atlas directory: manifest checks, sites, units, exemplars in context."""

from __future__ import annotations

import json
import math
import shutil

import duckdb
import numpy as np
import pytest
from viewer._viewer_util import N_UNITS, SITE0, ref_df

from neuronatlas.errors import AtlasError, FormatVersionError
from neuronatlas.viewer import NotFoundError, ViewerAtlas
from neuronatlas.viewer._synthetic import HOSTILE_TOKENS


@pytest.fixture(scope="module")
def atlas(atlas_path) -> ViewerAtlas:
    return ViewerAtlas(atlas_path)


def test_synthetic_tables_are_consistent(atlas_path):
    """The synthetic writer's tables agree with each other (the viewer tests rely on it)."""
    con = duckdb.connect()
    units = con.sql(f"select * from '{atlas_path}/units.parquet'").df()
    ex = con.sql(f"select * from '{atlas_path}/exemplars.parquet'").df()
    tokens = con.sql(f"select * from '{atlas_path}/tokens.parquet'").df()
    n_tokens = json.loads((atlas_path / "atlas.json").read_text())["corpus"]["n_tokens"]
    assert len(tokens) == n_tokens
    assert (units["count"] + units["n_nan"] == n_tokens).all()
    assert all(
        int(np.sum(c)) == n for c, n in zip(units["hist_counts"], units["count"], strict=True)
    )
    top = ex[ex["rank"] == 0].merge(units, on=["site", "unit"])
    np.testing.assert_allclose(top["activation"], top["max"], rtol=1e-6)
    assert (top["token"] == top["top_token"]).all()
    for _, g in ex.groupby(["site", "unit"]):
        assert list(g["rank"]) == list(range(len(g)))
        assert (np.diff(g["activation"].to_numpy()) <= 0).all()
    row = ex.iloc[7]
    assert row["ctx_acts"][row["pos"] - row["ctx_start"]] == pytest.approx(row["activation"])
    std = units["std"].to_numpy()
    np.testing.assert_allclose(std**2, units["var"], rtol=1e-9)


def test_sites_in_manifest_order(atlas):
    names = [s.name for s in atlas.sites]
    assert names[:2] == [SITE0, "encoder.layer.0"]
    assert len(names) == 6 and [s.index for s in atlas.sites] == list(range(6))
    assert all(s.n_units == N_UNITS for s in atlas.sites)
    assert atlas.site(SITE0).kind == "mlp" and atlas.site("encoder.layer.2").layer == 2


def test_unknown_site_and_unit_are_not_found(atlas):
    with pytest.raises(NotFoundError, match=r"Closest: encoder\.layer\.0\.output\.dense:input"):
        atlas.site("encoder.layer.0.output.dense:inpt")
    with pytest.raises(NotFoundError, match=f"units 0 to {N_UNITS - 1}"):
        atlas.check_unit(SITE0, N_UNITS)
    with pytest.raises(NotFoundError):
        atlas.check_unit(SITE0, -1)


def test_neighbors_cross_sites(atlas):
    assert atlas.neighbors(SITE0, 0) == (None, (SITE0, 1))
    last = atlas.sites[0]
    assert atlas.neighbors(SITE0, N_UNITS - 1)[1] == (atlas.sites[1].name, 0)
    assert atlas.neighbors(atlas.sites[1].name, 0)[0] == (last.name, N_UNITS - 1)
    end = atlas.sites[-1].name
    assert atlas.neighbors(end, N_UNITS - 1)[1] is None


def test_label_columns(atlas):
    assert [c.name for c in atlas.label_columns] == [
        "label_dead",
        "label_token",
        "label_positional",
        "label_massive",
    ]
    assert atlas.columns["label_dead"].title == "dead"


def test_unit_row_has_every_column(atlas, atlas_path):
    row = atlas.unit_row(SITE0, 3)
    ref = ref_df(f"select * from '{atlas_path}/units.parquet' where site = ? and unit = 3", [SITE0])
    assert row["max"] == pytest.approx(float(ref["max"][0]))
    assert list(row["hist_counts"]) == list(ref["hist_counts"][0])
    assert len(row["hist_edges"]) == len(row["hist_counts"]) + 1


def test_exemplar_contexts_align_with_tokens(atlas, atlas_path):
    """Each context slot shows the token at ctx_start + i and the activation ctx_acts[i]."""
    ex_ref = ref_df(
        f"select * from '{atlas_path}/exemplars.parquet' where site = ? and unit = 4 order by rank",
        [SITE0],
    )
    tok = ref_df(f"select doc, pos, token from '{atlas_path}/tokens.parquet'")
    tokens = {
        (int(d), int(p)): t for d, p, t in zip(tok["doc"], tok["pos"], tok["token"], strict=True)
    }
    got = atlas.exemplars(SITE0, 4)
    assert [e.rank for e in got] == list(ex_ref["rank"])
    for e, (_, ref) in zip(got, ex_ref.iterrows(), strict=True):
        assert e.activation == pytest.approx(ref["activation"])
        assert [t.pos for t in e.context] == [
            ref["ctx_start"] + i for i in range(len(ref["ctx_acts"]))
        ]
        assert [t.raw for t in e.context] == [tokens[(e.doc, t.pos)] for t in e.context]
        for t, a in zip(e.context, ref["ctx_acts"], strict=True):
            assert (t.act is None) if math.isnan(a) else t.act == pytest.approx(a)
        assert sum(t.focus for t in e.context) == 1
        focus = next(t for t in e.context if t.focus)
        assert focus.pos == e.pos and focus.act == pytest.approx(e.activation)
    assert len(atlas.exemplars(SITE0, 4, limit=3)) == 3


def test_nan_context_slots_become_none(atlas):
    ex = atlas.exemplars(SITE0, N_UNITS - 1)
    assert any(t.act is None for e in ex for t in e.context)


def test_hostile_tokens_come_back_verbatim(atlas):
    raw = {t.raw for e in atlas.exemplars(SITE0, 1) for t in e.context}
    assert raw & set(HOSTILE_TOKENS)
    assert atlas.unit_row(SITE0, 1)["top_token"] in HOSTILE_TOKENS


def test_preload_serves_the_same_data(atlas):
    plain = (atlas.unit_row(SITE0, 2), atlas.exemplars(SITE0, 2))
    with atlas.preload(SITE0):
        cached = (atlas.unit_row(SITE0, 2), atlas.exemplars(SITE0, 2))
    assert plain[1] == cached[1]
    assert {k: v for k, v in plain[0].items() if k not in ("hist_edges", "hist_counts")} == {
        k: v for k, v in cached[0].items() if k not in ("hist_edges", "hist_counts")
    }
    assert list(plain[0]["hist_counts"]) == list(cached[0]["hist_counts"])


def test_bytelevel_atlas_without_labels(gpt2_atlas):
    atlas = ViewerAtlas(gpt2_atlas)
    assert atlas.token_style == "bytelevel" and atlas.label_columns == []
    text = "".join(t.text for t in atlas.exemplars(atlas.sites[0].name, 0)[0].context)
    assert "Ġ" not in text and " " in text


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_manifest_problems(atlas_path, tmp_path):
    with pytest.raises(AtlasError, match="No atlas"):
        ViewerAtlas(tmp_path / "missing")
    bad = _copy(atlas_path, tmp_path / "v2")
    manifest = json.loads((bad / "atlas.json").read_text())
    (bad / "atlas.json").write_text(json.dumps({**manifest, "version": 2}))
    with pytest.raises(FormatVersionError, match="version 2"):
        ViewerAtlas(bad)
    (bad / "atlas.json").write_text(json.dumps({**manifest, "format": "other"}))
    with pytest.raises(AtlasError, match="format"):
        ViewerAtlas(bad)
    (bad / "atlas.json").write_text("{not json")
    with pytest.raises(AtlasError, match="not readable JSON"):
        ViewerAtlas(bad)
    no_units = _copy(atlas_path, tmp_path / "nounits")
    (no_units / "units.parquet").unlink()
    with pytest.raises(AtlasError, match=r"no units\.parquet"):
        ViewerAtlas(no_units)


def test_optional_tables_and_listed_labels(atlas_path, tmp_path):
    """Without exemplars/tokens/docs the atlas still opens; labels may be listed in atlas.json."""
    import pyarrow.parquet as pq

    dst = _copy(atlas_path, tmp_path / "lean")
    for name in ("exemplars", "tokens", "docs"):
        (dst / f"{name}.parquet").unlink()
    table = pq.read_table(dst / "units.parquet")
    table = table.rename_columns(
        ["is_dead" if c == "label_dead" else c for c in table.column_names]
    )
    pq.write_table(table, dst / "units.parquet")
    manifest = json.loads((dst / "atlas.json").read_text())
    (dst / "atlas.json").write_text(json.dumps({**manifest, "labels": ["is_dead"]}))
    atlas = ViewerAtlas(dst)
    assert atlas.exemplars(SITE0, 0) == []
    assert "is_dead" in [c.name for c in atlas.label_columns]


def test_display_column_is_preferred(atlas_path, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    dst = _copy(atlas_path, tmp_path / "display")
    tokens = pq.read_table(dst / "tokens.parquet")
    shown = pa.array([f"<{t}>" for t in tokens["token"].to_pylist()])
    pq.write_table(tokens.append_column("display", shown), dst / "tokens.parquet")
    atlas = ViewerAtlas(dst)
    assert all(t.text == f"<{t.raw}>" for t in atlas.exemplars(SITE0, 0)[0].context)
