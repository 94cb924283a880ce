"""Attention heads: scores for every head, interventions on heads, the induction experiment.

- :func:`score_heads`: previous-token, duplicate-token, induction, retrieval, sink / dormant and
  weight-only OV / QK scores for every head of a transformer (one table);
- :func:`score_atlas`: the same, written into an atlas (``analyses/heads/<name>/``);
- :func:`find_heads`: where each block's attention and head outputs live, per architecture;
- :func:`ablate_heads`, :func:`patch_heads`, :func:`direct_logit_attribution`: interventions;
- :func:`run_induction`: the induction experiment;
- :class:`AttnOnlyTransformer`: the small attention-only model of the planted heads and the
  induction experiment.

Names are loaded on first use (the viewer imports this package's pages without torch).
See ``docs/heads.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronatlas._lazy import lazy_exports

_EXPORTS = {
    "HeadBlock": "_arch",
    "HeadWeights": "_arch",
    "HeadsError": "_arch",
    "embedding_matrices": "_arch",
    "find_heads": "_arch",
    "PATTERN_SCORES": "_score",
    "WEIGHT_SCORES": "_score",
    "ScoreSettings": "_score",
    "score_heads": "_score",
    "AttnOnlyTransformer": "_toy",
    "ablate_heads": "_ablate",
    "ablate_units": "_ablate",
    "direct_logit_attribution": "_ablate",
    "head_means": "_ablate",
    "patch_heads": "_ablate",
    "record_z": "_ablate",
    "score_atlas": "_atlas",
    "add_patching": "_atlas",
    "InductionConfig": "_induction",
    "run_induction": "_induction",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from neuronatlas.heads._ablate import ablate_heads as ablate_heads
    from neuronatlas.heads._ablate import ablate_units as ablate_units
    from neuronatlas.heads._ablate import direct_logit_attribution as direct_logit_attribution
    from neuronatlas.heads._ablate import head_means as head_means
    from neuronatlas.heads._ablate import patch_heads as patch_heads
    from neuronatlas.heads._ablate import record_z as record_z
    from neuronatlas.heads._arch import HeadBlock as HeadBlock
    from neuronatlas.heads._arch import HeadsError as HeadsError
    from neuronatlas.heads._arch import HeadWeights as HeadWeights
    from neuronatlas.heads._arch import embedding_matrices as embedding_matrices
    from neuronatlas.heads._arch import find_heads as find_heads
    from neuronatlas.heads._atlas import add_patching as add_patching
    from neuronatlas.heads._atlas import score_atlas as score_atlas
    from neuronatlas.heads._induction import InductionConfig as InductionConfig
    from neuronatlas.heads._induction import run_induction as run_induction
    from neuronatlas.heads._score import PATTERN_SCORES as PATTERN_SCORES
    from neuronatlas.heads._score import WEIGHT_SCORES as WEIGHT_SCORES
    from neuronatlas.heads._score import ScoreSettings as ScoreSettings
    from neuronatlas.heads._score import score_heads as score_heads
    from neuronatlas.heads._toy import AttnOnlyTransformer as AttnOnlyTransformer


__getattr__, __dir__ = lazy_exports(__name__, {k: f".{v}" for k, v in _EXPORTS.items()})
