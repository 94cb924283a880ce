"""Vocabulary projection against a hand computation, for Conv1D (GPT-2) and Linear (Llama)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_bert, tiny_gpt2, tiny_llama

from neuronatlas.errors import SiteError
from neuronatlas.units import TaxonomyError, output_weights, vocab_projection


def reference(w_out: torch.Tensor, wu: torch.Tensor, k: int):
    logits = (w_out.double() @ wu.double().T).numpy()
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    bottom = np.argsort(logits, axis=1, kind="stable")[:, :k]
    return logits, top, bottom


def check(table, logits, top, bottom, k):
    assert table.shape[0] == logits.shape[0]
    got_top = np.array(table.vocab_top_id.tolist())
    got_bottom = np.array(table.vocab_bottom_id.tolist())
    rows = np.arange(logits.shape[0])[:, None]
    # the same logits in the same order (ids may differ only among exactly tied logits)
    np.testing.assert_allclose(
        np.array(table.vocab_top_logit.tolist()), logits[rows, top], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        np.array(table.vocab_bottom_logit.tolist()), logits[rows, bottom], rtol=1e-5, atol=1e-6
    )
    assert (got_top == top).mean() > 0.99 and (got_bottom == bottom).mean() > 0.99
    assert all(len(v) == k for v in table.vocab_top)


def test_gpt2_conv1d_rows_with_the_final_layernorm_folded():
    model = tiny_gpt2()
    site = "transformer.h.1.mlp.c_proj:input"
    w = model.transformer.h[1].mlp.c_proj.weight.detach()  # Conv1D: (d_ff, d_model)
    gamma = torch.rand(w.shape[1]) + 0.5
    with torch.no_grad():
        model.transformer.ln_f.weight.copy_(gamma)
    folded = (w - w.mean(1, keepdim=True)) * gamma
    wu = model.lm_head.weight.detach()
    k = 5
    check(vocab_projection(model, site, k=k), *reference(folded, wu, k), k)
    check(vocab_projection(model, site, k=k, final_norm="ignore"), *reference(w, wu, k), k)
    explicit = vocab_projection(model, site, k=k, final_norm="transformer.ln_f")
    assert (
        explicit.vocab_top_id.tolist() == vocab_projection(model, site, k=k).vocab_top_id.tolist()
    )


def test_llama_linear_columns_with_rmsnorm_gain():
    model = tiny_llama()
    gamma = torch.rand(32) + 0.5
    with torch.no_grad():
        model.model.norm.weight.copy_(gamma)
    w = model.model.layers[0].mlp.down_proj.weight.detach().T  # Linear: (d_model, d_ff) -> rows
    k = 4
    table = vocab_projection(model, "model.layers.0.mlp.down_proj:input", k=k)
    check(table, *reference(w * gamma, model.lm_head.weight.detach(), k), k)  # no centering
    assert table.site.unique().tolist() == ["model.layers.0.mlp.down_proj:input"]


def test_token_strings_come_from_the_tokenizer():
    class Tok:
        def convert_ids_to_tokens(self, ids):
            return [f"<{i}>" for i in ids]

    table = vocab_projection(tiny_gpt2(), "transformer.h.0.mlp.c_proj:input", Tok(), k=2)
    assert table.vocab_top[0] == [f"<{i}>" for i in table.vocab_top_id[0]]
    plain = vocab_projection(tiny_gpt2(), "transformer.h.0.mlp.c_proj:input", k=2)
    assert plain.vocab_top[0] == [str(i) for i in plain.vocab_top_id[0]]


def test_output_weights_layouts():
    site, w = output_weights(tiny_gpt2(), "transformer.h.0.mlp.c_proj:input")
    assert tuple(w.shape) == (128, 32) and site.kind == "mlp"
    _, w = output_weights(tiny_llama(), "model.layers.1.mlp.down_proj:input")
    assert tuple(w.shape) == (64, 32)


def test_vocab_projection_errors():
    with pytest.raises(TaxonomyError, match="get_output_embeddings"):
        vocab_projection(tiny_bert(), "encoder.layer.0.output.dense:input")
    gpt2 = tiny_gpt2()
    with pytest.raises(TaxonomyError, match="not the input of a linear output projection"):
        vocab_projection(gpt2, "transformer.h.0.mlp")
    with pytest.raises(TaxonomyError, match="one site"):
        vocab_projection(gpt2, "mlp")
    with pytest.raises(TaxonomyError, match="k must be"):
        vocab_projection(gpt2, "transformer.h.0.mlp.c_proj:input", k=0)
    with pytest.raises(TaxonomyError, match="final_norm"):
        vocab_projection(gpt2, "transformer.h.0.mlp.c_proj:input", final_norm="ln_g")
    with pytest.raises(TaxonomyError, match="d_model"):
        vocab_projection(gpt2, "transformer.h.0.mlp.c_proj:input", unembedding=torch.randn(10, 7))
    with pytest.raises(SiteError):
        vocab_projection(gpt2, "transformer.h.0.mlp.c_prj:input")
