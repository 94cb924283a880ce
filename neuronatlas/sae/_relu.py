"""ReLU sparse autoencoder with an L1 penalty.

From "Sparse Autoencoders Find Highly Interpretable Features in Language Models" (Cunningham
et al., 2023) and "Towards Monosemanticity: Decomposing Language Models With Dictionary
Learning" (Bricken et al., Anthropic, 2023):

    z = ReLU((x_n − b_dec) W_enc + b_enc),    x̂_n = z W_dec + b_dec,
    L = ‖x_n − x̂_n‖²₂ + λ Σ_i z_i ‖W_dec,i‖₂

(the L1 term weighted by decoder-row norms, as in Anthropic's April 2024 update; with the
unit-norm decoder rows kept here it is ``λ‖z‖₁``). Dead features are revived by resampling
("Towards Monosemanticity", Neuron Resampling) unless the trainer is told otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuronatlas.sae._base import SparseAutoencoder, check_float
from neuronatlas.sae._registry import register_architecture

__all__ = ["ReLUSAE"]


@register_architecture
class ReLUSAE(SparseAutoencoder):
    """ReLU + L1 SAE (SAELens architecture ``"standard"``).

    Args:
        d_in, d_sae, seed, apply_b_dec_to_input, encoder_init_norm: see
            :class:`SparseAutoencoder`.
        l1_coefficient: λ of the L1 penalty (on normalized inputs, ``E‖x_n‖ = √d_in``).

    Examples:
        >>> import torch
        >>> sae = ReLUSAE(d_in=4, d_sae=16, l1_coefficient=1.0)
        >>> sae.encode(torch.randn(3, 4)).shape
        torch.Size([3, 16])
    """

    architecture = "relu"
    dead_strategy = "resample"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        l1_coefficient: float = 5.0,
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
        self.l1_coefficient = check_float(l1_coefficient, "l1_coefficient", "ReLUSAE")

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "l1_coefficient": self.l1_coefficient}

    def activate(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)

    def training_loss(self, x_n: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        z = torch.relu(self.pre_normalized(x_n))
        x_hat = self.decode_normalized(z)
        mse = (x_hat - x_n).pow(2).sum(-1).mean()
        l1 = (z * self.W_dec.norm(dim=1)).sum(-1).mean()
        return mse + self.l1_coefficient * l1, {"mse": mse, "l1": l1}, z, x_hat

    def saelens_fields(self) -> dict[str, Any]:
        return {"architecture": "standard"}
