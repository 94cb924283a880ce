"""Interventions: edit activations at sites while a ``with`` block runs.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from neuronatlas.intervene import add, intervene
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> x = torch.randn(3, 4)
    >>> with intervene(model, {"2:input": add(torch.ones(8), coef=0.5)}):
    ...     y = model(x)
    >>> bool(torch.allclose(y, model[2](model[1](model[0](x)) + 0.5)))
    True
"""

from __future__ import annotations

from neuronatlas.intervene._edits import Edit as Edit
from neuronatlas.intervene._edits import add as add
from neuronatlas.intervene._edits import heads as heads
from neuronatlas.intervene._edits import mean as mean
from neuronatlas.intervene._edits import patch as patch
from neuronatlas.intervene._edits import position_mask as position_mask
from neuronatlas.intervene._edits import project_out as project_out
from neuronatlas.intervene._edits import resample as resample
from neuronatlas.intervene._edits import set_subspace as set_subspace
from neuronatlas.intervene._edits import zero as zero
from neuronatlas.intervene._errors import InterventionError as InterventionError
from neuronatlas.intervene._intervene import EditContext as EditContext
from neuronatlas.intervene._intervene import EditFn as EditFn
from neuronatlas.intervene._intervene import Intervention as Intervention
from neuronatlas.intervene._intervene import intervene as intervene

__all__ = [
    "Edit",
    "EditContext",
    "EditFn",
    "Intervention",
    "InterventionError",
    "add",
    "heads",
    "intervene",
    "mean",
    "patch",
    "position_mask",
    "project_out",
    "resample",
    "set_subspace",
    "zero",
]
