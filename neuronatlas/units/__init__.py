"""The unit taxonomy: label every unit the way the literature does, with scores.

- :class:`TaxonomyStats`: a mergeable accumulator run beside
  :class:`~neuronatlas.stats.UnitStats` in the same pass (positional, token, bigram and
  massive-activation statistics);
- :func:`label_units`: ``label_<name>`` columns (dead, token, bigram, positional, massive,
  universal) from the units table, with the thresholds used; :func:`layer_density`;
- :func:`unit_correlations`: universal units across two models, streaming
  (:class:`CrossCorrelation`);
- :func:`vocab_projection`: the tokens each MLP neuron promotes and suppresses;
- :func:`survey_units`: one in-memory pass returning the units table (small corpora, tests);
- :class:`SiteStats` and :func:`annotate_units`: what an atlas build keeps per site, and how it
  finishes its units table.

See ``docs/taxonomy.md`` for every definition, its source and its thresholds.
"""

from __future__ import annotations

from neuronatlas.units._atlas import SiteStats as SiteStats
from neuronatlas.units._atlas import annotate_units as annotate_units
from neuronatlas.units._correlations import UNIVERSAL_EXCESS as UNIVERSAL_EXCESS
from neuronatlas.units._correlations import CrossCorrelation as CrossCorrelation
from neuronatlas.units._correlations import UnitCorrelations as UnitCorrelations
from neuronatlas.units._correlations import random_rotation as random_rotation
from neuronatlas.units._correlations import unit_correlations as unit_correlations
from neuronatlas.units._labels import DEFAULT_THRESHOLDS as DEFAULT_THRESHOLDS
from neuronatlas.units._labels import LABELS as LABELS
from neuronatlas.units._labels import LabelSpec as LabelSpec
from neuronatlas.units._labels import TaxonomyError as TaxonomyError
from neuronatlas.units._labels import label_units as label_units
from neuronatlas.units._labels import layer_density as layer_density
from neuronatlas.units._survey import UnitSurvey as UnitSurvey
from neuronatlas.units._survey import survey_units as survey_units
from neuronatlas.units._taxonomy_stats import TAXONOMY_COLUMNS as TAXONOMY_COLUMNS
from neuronatlas.units._taxonomy_stats import TaxonomyStats as TaxonomyStats
from neuronatlas.units._vocab import output_weights as output_weights
from neuronatlas.units._vocab import vocab_projection as vocab_projection

__all__ = [
    "DEFAULT_THRESHOLDS",
    "LABELS",
    "TAXONOMY_COLUMNS",
    "UNIVERSAL_EXCESS",
    "CrossCorrelation",
    "LabelSpec",
    "SiteStats",
    "TaxonomyError",
    "TaxonomyStats",
    "UnitCorrelations",
    "UnitSurvey",
    "annotate_units",
    "label_units",
    "layer_density",
    "output_weights",
    "random_rotation",
    "survey_units",
    "unit_correlations",
    "vocab_projection",
]
