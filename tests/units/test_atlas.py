"""SiteStats (UnitStats + TaxonomyStats behind one interface) and annotate_units."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_bert, tiny_gpt2

from neuronatlas.errors import AccumulatorError
from neuronatlas.sites import resolve_sites
from neuronatlas.stats import SiteBatch, UnitStats
from neuronatlas.units import SiteStats, TaxonomyStats, annotate_units


def batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(3, 10, 5, generator=g)
        tok = torch.randint(0, 20, (3, 10), generator=g)
        doc = (torch.arange(3) + 3 * i)[:, None].expand(3, 10)
        pos = torch.arange(10)[None].expand(3, 10)
        out.append(SiteBatch(x, torch.ones(3, 10, dtype=torch.bool), doc, pos, tok))
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k], float), np.asarray(b[k], float), rtol=1e-6,
                                   equal_nan=True, err_msg=k)  # fmt: skip


def test_site_stats_is_unit_stats_plus_taxonomy_and_merges_and_round_trips():
    kw = {"top_k": 3, "context": 1, "threshold": 0.5}
    bs = batches()
    site = SiteStats(5, taxonomy_options={"max_pos": 16}, **kw)
    ref_stats, ref_tax = UnitStats(5, **kw), TaxonomyStats(5, max_pos=16, threshold=0.5)
    for b in bs:
        site.update(b)
        ref_stats.update(b)
        ref_tax.update(b)
    assert_same(site.result(), {**ref_stats.result(), **ref_tax.result()})
    assert site.exemplars()["doc"].tolist() == ref_stats.exemplars()["doc"].tolist()
    left, right = (
        SiteStats(5, taxonomy_options={"max_pos": 16}, **kw),
        SiteStats(5, taxonomy_options={"max_pos": 16}, **kw),
    )
    for b in bs[:1]:
        left.update(b)
    for b in bs[1:]:
        right.update(b)
    buf = io.BytesIO()
    torch.save(right.state_dict(), buf)
    buf.seek(0)
    right = SiteStats.from_state_dict(torch.load(buf, weights_only=True))
    assert_same(left.merge(right).result(), site.result())
    plain = SiteStats(5, taxonomy=False, **kw)
    assert "pos_eta2" not in plain.result()
    with pytest.raises(AccumulatorError, match="with and without the taxonomy"):
        plain.merge(site)


def test_annotate_units_names_tokens_labels_and_projects_the_vocabulary():
    model = tiny_gpt2()
    sites = resolve_sites(model, "mlp")
    units = pd.DataFrame(
        {
            "site": [sites[0].name] * 2,
            "unit": np.array([0, 1], dtype=np.int32),
            "count": [10, 10],
            "max": [0.0, 1.0],
            "tok_id": [5, -1],
            "bigram_prev_id": [-1, -1],
            "bigram_id": [5, -1],
        }
    )

    class Tok:
        def convert_ids_to_tokens(self, ids):
            return [f"<{i}>" for i in ids]

    table, info = annotate_units(units, model=model, sites=sites, tokenizer=Tok(), k=3)
    assert table.tok.tolist()[0] == "<5>" and pd.isna(table.tok[1])
    assert table.bigram.tolist()[0] == " <5>" and pd.isna(table.bigram[1])
    assert table.label_dead.tolist() == [True, False]
    assert info["vocab_projection"] == [s.name for s in sites]
    assert len(table.vocab_top[0]) == 3 and table.vocab_top[0][0].startswith("<")
    # a model without an unembedding: the projection is skipped, with the reason
    bert = tiny_bert()
    _, info = annotate_units(units.assign(site="encoder.layer.0.output.dense:input"),
                             model=bert, sites=resolve_sites(bert, "mlp"))  # fmt: skip
    assert info["vocab_projection"].startswith("skipped: vocab_projection needs the unembedding")
