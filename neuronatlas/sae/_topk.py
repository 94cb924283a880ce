"""TopK sparse autoencoder.

From "Scaling and evaluating sparse autoencoders" (Gao et al., OpenAI, 2024):

    z = ReLU(TopK_k((x_n − b_dec) W_enc + b_enc)),    x̂_n = z W_dec + b_dec,
    L = ‖x_n − x̂_n‖²₂ + α ‖e − ê‖²₂

where TopK keeps the k largest pre-activations of each input and zeroes the rest, and the
auxiliary loss (AuxK) has the ``k_aux`` largest pre-activations among the *dead* features
(no activation over the last ``dead_window`` training samples) reconstruct the residual
``e = x_n − x̂_n`` as ``ê = z_aux W_dec`` (paper: ``k_aux = d_in / 2``, ``α = 1/32``). There is no
sparsity penalty: L0 is k by construction. Training decodes the k codes of each row sparsely
(only k decoder rows per input are read and updated).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuronatlas.sae._base import SparseAutoencoder, check_int
from neuronatlas.sae._registry import register_architecture

__all__ = ["TopKSAE", "topk_codes"]


def topk_codes(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(values, indices)``, each ``(n, k)``: the k largest pre-activations per row, ReLU'd."""
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return values.relu_(), indices


@register_architecture
class TopKSAE(SparseAutoencoder):
    """TopK SAE (SAELens architecture ``"topk"``).

    Args:
        d_in, d_sae, seed, apply_b_dec_to_input, encoder_init_norm: see
            :class:`SparseAutoencoder`.
        k: active features per input, in ``[1, d_sae]``.

    Examples:
        >>> import torch
        >>> sae = TopKSAE(d_in=8, d_sae=32, k=3)
        >>> int((sae.encode(torch.randn(5, 8)) > 0).sum(-1).max()) <= 3
        True
    """

    architecture = "topk"
    dead_strategy = "aux"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        k: int = 32,
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
        self.k = check_int(k, "k", "TopKSAE", low=1, high=d_sae)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "k": self.k}

    def activate(self, pre: Tensor) -> Tensor:
        values, indices = topk_codes(pre, self.k)
        return torch.zeros_like(pre).scatter_(-1, indices, values)

    def sparse_codes(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        values, indices = topk_codes(pre, self.k)
        rows = torch.arange(pre.shape[0], device=pre.device).repeat_interleave(self.k)
        return rows, indices.reshape(-1), values.reshape(-1)

    def training_loss(self, x_n: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """Dense autograd version of the training loss without AuxK (reference, tests)."""
        z = self.activate(self.pre_normalized(x_n))
        x_hat = self.decode_normalized(z)
        mse = (x_hat - x_n).pow(2).sum(-1).mean()
        return mse, {"mse": mse}, z, x_hat

    def saelens_fields(self) -> dict[str, Any]:
        return {"architecture": "topk", "k": self.k, "rescale_acts_by_decoder_norm": False}

    @classmethod
    def saelens_settings(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        if cfg.get("rescale_acts_by_decoder_norm"):
            from neuronatlas.sae._base import SAEError

            raise SAEError(
                "This SAELens TopK SAE has rescale_acts_by_decoder_norm=true (codes scaled by "
                "decoder norms); fold the norms first in SAELens (sae.fold_W_dec_norm()) and "
                "save it again."
            )
        return {**super().saelens_settings(cfg), "k": int(cfg["k"])}
