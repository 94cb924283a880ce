"""BatchTopK sparse autoencoder.

From "BatchTopK Sparse Autoencoders" (Bussmann, Leask and Nanda, 2024). Training keeps the
``k · batch`` largest ReLU'd pre-activations of the whole batch (so an input may use more or
fewer than k features, k on average):

    z = BatchTopK_{k·B}(ReLU(pre)),    L = ‖x_n − x̂_n‖²₂ + α ‖e − ê‖²₂   (AuxK, as TopK)

Inference uses one global threshold θ instead of the batch: ``z = pre · 1[pre > θ]``, with θ
the expected smallest positive activation of a training batch, estimated here as its
exponential moving average over the training steps (rate ``threshold_lr``). An SAE saved for
SAELens becomes a JumpReLU SAE with every feature's threshold equal to θ.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuronatlas.sae._base import SAEError, SparseAutoencoder, check_float
from neuronatlas.sae._registry import register_architecture

__all__ = ["BatchTopKSAE"]


@register_architecture
class BatchTopKSAE(SparseAutoencoder):
    """BatchTopK SAE; saved for SAELens as ``"jumprelu"``.

    Args:
        d_in, d_sae, seed, apply_b_dec_to_input, encoder_init_norm: see
            :class:`SparseAutoencoder`.
        k: average active features per input (may be fractional), in ``(0, d_sae]``.
        threshold_lr: rate of the moving average that estimates θ.

    Attributes:
        threshold: θ (a scalar buffer).

    Examples:
        >>> import torch
        >>> sae = BatchTopKSAE(d_in=8, d_sae=32, k=2.5)
        >>> rows, cols, vals = sae.sparse_codes(torch.randn(4, 32))
        >>> len(vals)
        10
    """

    architecture = "batchtopk"
    dead_strategy = "aux"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        k: float = 32,
        threshold_lr: float = 0.01,
        seed: int = 0,
        apply_b_dec_to_input: bool = True,
        encoder_init_norm: float = 0.1,
    ) -> None:
        super().__init__(
            d_in,
            d_sae,
            seed=seed,
            apply_b_dec_to_input=apply_b_dec_to_input,
            encoder_init_norm=encoder_init_norm,
        )
        k = check_float(k, "k", "BatchTopKSAE")
        if not 0 < k <= d_sae:
            raise SAEError(
                f"The 'k' parameter of BatchTopKSAE must be in (0, d_sae={d_sae}]; got {k}."
            )
        self.k = k
        self.threshold_lr = check_float(threshold_lr, "threshold_lr", "BatchTopKSAE")
        self.register_buffer("threshold", torch.tensor(0.0, dtype=torch.float64))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "k": self.k, "threshold_lr": self.threshold_lr}

    def activate(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold.to(pre.dtype))

    def sparse_codes(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, width = pre.shape
        take = max(1, min(int(self.k * n), n * width))
        values, flat = pre.reshape(-1).topk(take, sorted=False)
        return flat // width, flat % width, values.relu_()

    def batch_codes(self, pre: Tensor) -> Tensor:
        """Dense training codes of one batch (reference for tests)."""
        rows, cols, vals = self.sparse_codes(pre)
        z = torch.zeros_like(pre)
        z[rows, cols] = vals
        return z

    def training_loss(self, x_n: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """Dense autograd version of the training loss without AuxK (reference, tests)."""
        z = self.batch_codes(self.pre_normalized(x_n))
        x_hat = self.decode_normalized(z)
        mse = (x_hat - x_n).pow(2).sum(-1).mean()
        return mse, {"mse": mse}, z, x_hat

    @torch.no_grad()
    def after_step(self, z_or_vals: Tensor, n_rows: int) -> None:
        positive = z_or_vals[z_or_vals > 0]
        if positive.numel():
            lr = self.threshold_lr
            self.threshold.mul_(1 - lr).add_(lr * positive.min().to(torch.float64))

    def saelens_fields(self) -> dict[str, Any]:
        return {"architecture": "jumprelu"}

    @torch.no_grad()
    def saelens_state(self) -> dict[str, Tensor]:
        state = super().saelens_state()
        state["threshold"] = torch.full_like(state["b_enc"], float(self.threshold))
        return state
