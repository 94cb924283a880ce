"""Mergeable per-unit statistics of a site, computed in one pass on the model's device.

:class:`UnitStats` runs all of them on each :class:`SiteBatch`; each accumulator also works on
its own. Every accumulator merges (``a.merge(b)`` equals one pass over both halves), saves its
state as plain tensors, and returns per-unit numpy columns named as in ``units.parquet``.
See ``docs/stats.md`` for the definitions, the quantile guarantee and the cost per batch.
"""

from __future__ import annotations

from neuronatlas.stats._activity import Activity as Activity
from neuronatlas.stats._base import Accumulator as Accumulator
from neuronatlas.stats._base import SiteBatch as SiteBatch
from neuronatlas.stats._extremes import Extremes as Extremes
from neuronatlas.stats._moments import Moments as Moments
from neuronatlas.stats._moments import batch_moments as batch_moments
from neuronatlas.stats._moments import merge_moments as merge_moments
from neuronatlas.stats._nonfinite import NonFinite as NonFinite
from neuronatlas.stats._quantiles import QUANTILES as QUANTILES
from neuronatlas.stats._quantiles import QuantileSketch as QuantileSketch
from neuronatlas.stats._topk import TopK as TopK
from neuronatlas.stats._topk import rank_order as rank_order
from neuronatlas.stats._unit_stats import COLUMNS as COLUMNS
from neuronatlas.stats._unit_stats import UnitStats as UnitStats
