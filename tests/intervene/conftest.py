"""Fixtures for intervention tests: site names of the tiny models per family."""

from __future__ import annotations

import pytest
from helpers import tiny_bert, tiny_gpt2, tiny_llama

#: family -> (builder, block output site, MLP hidden site, attention output projection)
FAMILIES = {
    "gpt2": (
        tiny_gpt2,
        "transformer.h.0",
        "transformer.h.1.mlp.c_proj:input",
        "transformer.h.1.attn.c_proj",
    ),
    "llama": (
        tiny_llama,
        "model.layers.0",
        "model.layers.1.mlp.down_proj:input",
        "model.layers.1.self_attn.o_proj",
    ),
    "bert": (
        tiny_bert,
        "encoder.layer.0",
        "encoder.layer.1.output.dense:input",
        "encoder.layer.1.attention.output.dense",
    ),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    build, resid, mlp, oproj = FAMILIES[request.param]
    return request.param, build(), resid, mlp, oproj
