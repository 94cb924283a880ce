"""Recording: forward hooks that hand out each site's activations after a forward pass.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from neuronatlas.record import Recorder
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with Recorder(model, "2:input") as rec:
    ...     _ = model(torch.randn(3, 4))
    ...     tuple(rec.pop()["2:input"].shape)
    (3, 1, 8)
"""

from __future__ import annotations

from neuronatlas.record._attention import eager_attention as eager_attention
from neuronatlas.record._capture import to_bpu as to_bpu
from neuronatlas.record._recorder import Recorder as Recorder

__all__ = ["Recorder", "eager_attention", "to_bpu"]
