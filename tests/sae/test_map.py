"""SAE features as atlas units: statistics and exemplars against brute force on the store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sae._sae_util import SITE

from neuronatlas import open_atlas
from neuronatlas.atlas import get_analysis
from neuronatlas.atlas._derived import append_site_units, remove_site_units
from neuronatlas.errors import AtlasError
from neuronatlas.sae import create_sae, load_sae, map_sae, train_sae
from neuronatlas.sae._map import _sequences
from neuronatlas.store import ActivationStore


def _trained(store, k=4, seed=0):
    sae = create_sae("topk", store.sites[SITE], 40, k=k, seed=seed)
    return train_sae(sae, store, site=SITE, batch_size=32, steps=15, lr=3e-3, device="cpu").sae


def test_features_become_units_like_neurons(atlas_copy):
    store = ActivationStore.open(atlas_copy / "store")
    sae = _trained(store)
    entry = map_sae(atlas_copy, sae, name="t4", site=SITE, device="cpu", metrics={"l0": 4.0})
    name = f"{SITE}@sae:t4"
    assert entry["name"] == name and entry["kind"] == "sae" and entry["source"] == SITE
    assert entry["n_units"] == 40 and entry["layer"] == 1

    # brute force: every stored row through the SAE, in numpy
    x = store.read(SITE)
    index = store.index().to_pandas()
    with torch.no_grad():
        z = sae.encode(torch.from_numpy(x)).numpy().astype(np.float64)
    atlas = open_atlas(atlas_copy)
    assert name in atlas.sites
    units = atlas.units[atlas.units.site == name].sort_values("unit")
    assert units["unit"].tolist() == list(range(40)) and (units["layer"] == 1).all()
    np.testing.assert_array_equal(units["count"], len(z))
    np.testing.assert_allclose(units["mean"], z.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(units["std"], z.std(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(units["max"], z.max(0), rtol=1e-6)
    np.testing.assert_allclose(units["frac_active"], (z > 0).mean(0))
    assert units["label_dead"].tolist() == (z.max(0) <= 0).tolist()

    ex = atlas.query("select * from exemplars where site = ? order by unit, rank", [name])
    assert len(ex) == 40 * 3
    doc, pos = index["doc"].to_numpy(), index["pos"].to_numpy()
    for u in range(40):
        order = np.lexsort((pos, doc, -z[:, u]))[:3]  # larger first, then smaller doc, pos
        got = ex[ex.unit == u]
        np.testing.assert_allclose(got["activation"], z[order, u], rtol=1e-6)
        assert got["doc"].tolist() == doc[order].tolist()
        assert got["pos"].tolist() == pos[order].tolist()
        top = got.iloc[0]
        if top["activation"] <= 0:  # a feature that never fires: no context to check
            continue
        same = doc == top["doc"]  # the window of 2·context+1 positions from ctx_start
        ctx = {int(p): v for p, v in zip(pos[same], z[same, u], strict=True)}
        expect = [ctx.get(p, np.nan) for p in range(top["ctx_start"], top["ctx_start"] + 5)]
        np.testing.assert_allclose(top["ctx_acts"], expect, rtol=1e-6)
        assert top["token"] == atlas.tokens(top["doc"], top["pos"], top["pos"] + 1)["token"][0]
    assert len(atlas.exemplars(name, 0)) == 3  # the reader shows them in context

    analysis = get_analysis(atlas_copy, "sae", "t4")
    assert analysis["derived_site"] == name and analysis["metrics"]["l0"] == 4.0
    saved = load_sae(atlas_copy / analysis["path"])
    x_t = torch.from_numpy(x[:50])
    with torch.no_grad():
        torch.testing.assert_close(saved(x_t), sae(x_t), rtol=1e-5, atol=1e-5)

    # mapping again (another SAE of the same name) replaces the site, it does not duplicate it
    map_sae(atlas_copy, _trained(store, k=2, seed=1), name="t4", device="cpu")
    again = open_atlas(atlas_copy)
    assert (again.units.site == name).sum() == 40
    assert [s["name"] for s in again.manifest["sites"]].count(name) == 1
    assert again.query("select count(*) n from exemplars where site = ?", [name])["n"][0] == 120
    assert get_analysis(atlas_copy, "sae", "t4")["metrics"]["l0"] == 4.0  # earlier figures kept
    remove_site_units(atlas_copy, name)
    gone = open_atlas(atlas_copy)
    assert name not in gone.sites and (gone.units.site == name).sum() == 0


def test_derived_sites_cannot_replace_recorded_ones(atlas_copy):
    units = pd.DataFrame({"site": [SITE], "unit": [0], "mean": [0.0]})
    ex = pd.DataFrame(
        {"site": [SITE], "unit": [0], "rank": [0], "activation": [1.0], "doc": [0], "pos": [0]}
    )
    entry = {"name": SITE, "kind": "sae", "layer": 1, "n_units": 1, "source": SITE}
    before = (atlas_copy / "units.parquet").read_bytes()
    with pytest.raises(AtlasError, match="cannot replace a recorded one"):
        append_site_units(atlas_copy, entry, units, ex)
    with pytest.raises(AtlasError, match="units 0…1"):
        append_site_units(
            atlas_copy,
            {**entry, "name": "x", "n_units": 2},
            units.assign(site="x"),
            ex.assign(site="x"),
        )
    assert (atlas_copy / "units.parquet").read_bytes() == before


def test_map_needs_a_store(tmp_path, tiny_store_atlas):
    import shutil

    shutil.copytree(tiny_store_atlas, tmp_path / "a", ignore=shutil.ignore_patterns("store"))
    manifest = json.loads((tmp_path / "a" / "atlas.json").read_text())
    manifest.pop("store")
    (tmp_path / "a" / "atlas.json").write_text(json.dumps(manifest))
    with pytest.raises(AtlasError, match="--keep-activations"):
        map_sae(tmp_path / "a", create_sae("topk", 48, 8, k=2), name="x", site=SITE)


def test_blocks_hold_whole_sequences(tmp_path):
    """Sequences that straddle store chunks arrive whole, in store order."""
    lengths = [3, 7, 2, 9, 1, 4, 6]
    doc = np.repeat(np.arange(len(lengths)) + 10, lengths)
    pos = np.concatenate([np.arange(n) for n in lengths])
    values = np.arange(len(doc) * 2, dtype=np.float32).reshape(-1, 2)
    store = ActivationStore.create(tmp_path / "s", sites={"a": 2}, chunk_rows=5)
    store.append({"a": torch.from_numpy(values)}, doc=doc, pos=pos, token_id=pos)
    store.close()
    store = ActivationStore.open(tmp_path / "s")
    blocks = list(_sequences(store, "a", max_rows=8))
    np.testing.assert_array_equal(np.concatenate([v for v, _ in blocks]), values)
    for _, idx in blocks:
        d = idx["doc"].to_numpy()
        first, last = d[0], d[-1]
        assert (doc == first).sum() == (d == first).sum() and (doc == last).sum() == (
            d == last
        ).sum()
