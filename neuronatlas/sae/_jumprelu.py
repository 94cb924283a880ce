"""JumpReLU sparse autoencoder.

From "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU Sparse Autoencoders"
(Rajamanoharan et al., Google DeepMind, 2024):

    z = JumpReLU_θ(pre) = pre · H(pre − θ),    L = ‖x_n − x̂_n‖²₂ + λ Σ_i H(pre_i − θ_i)

with a learned threshold θ per feature and H the Heaviside step. Both H's are trained with
straight-through estimators using the rectangle kernel ``K(u) = 1[|u| < ½]`` of bandwidth ε:

    ∂JumpReLU/∂θ = −(θ/ε) K((pre − θ)/ε),     ∂H(pre − θ)/∂θ = −(1/ε) K((pre − θ)/ε),

and no gradient flows from the L0 term into the pre-activations. The paper trains log θ; θ is
trained directly here (and kept ≥ 0), as SAELens does, because Adam's steps of about ``lr`` on
log θ barely move a small threshold in a short run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.sae._base import SparseAutoencoder, check_float
from neuronatlas.sae._registry import register_architecture

__all__ = ["JumpReLUSAE"]


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        d_pre = (pre > theta) * grad
        d_theta = (-(theta / eps) * _rectangle((pre - theta) / eps) * grad).sum(0)
        return d_pre, d_theta, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        d_theta = (-(1.0 / eps) * _rectangle((pre - theta) / eps) * grad).sum(0)
        return None, d_theta, None


@register_architecture
class JumpReLUSAE(SparseAutoencoder):
    """JumpReLU SAE (SAELens architecture ``"jumprelu"``).

    Args:
        d_in, d_sae, seed, apply_b_dec_to_input, encoder_init_norm: see
            :class:`SparseAutoencoder`.
        l0_coefficient: λ of the L0 penalty.
        bandwidth: ε of the straight-through estimators.
        init_threshold: initial θ of every feature.

    Examples:
        >>> import torch
        >>> sae = JumpReLUSAE(d_in=4, d_sae=8)
        >>> sae.encode(torch.randn(2, 4)).shape
        torch.Size([2, 8])
    """

    architecture = "jumprelu"
    dead_strategy = "none"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        l0_coefficient: float = 2.0,
        bandwidth: float = 0.05,
        init_threshold: float = 0.01,
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
        self.l0_coefficient = check_float(l0_coefficient, "l0_coefficient", "JumpReLUSAE")
        self.bandwidth = check_float(bandwidth, "bandwidth", "JumpReLUSAE", low=1e-12)
        self.init_threshold = check_float(init_threshold, "init_threshold", "JumpReLUSAE")
        self.threshold = nn.Parameter(torch.full((d_sae,), self.init_threshold))

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "l0_coefficient": self.l0_coefficient,
            "bandwidth": self.bandwidth,
            "init_threshold": self.init_threshold,
        }

    def activate(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold)

    def training_loss(self, x_n: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        with torch.no_grad():
            self.threshold.clamp_(min=0.0)
        pre = self.pre_normalized(x_n)
        z = _JumpReLU.apply(pre, self.threshold, self.bandwidth)
        x_hat = self.decode_normalized(z)
        mse = (x_hat - x_n).pow(2).sum(-1).mean()
        l0 = _Step.apply(pre, self.threshold, self.bandwidth).sum(-1).mean()
        return mse + self.l0_coefficient * l0, {"mse": mse, "l0_loss": l0}, z, x_hat

    @torch.no_grad()
    def saelens_state(self) -> dict[str, Tensor]:
        state = super().saelens_state()
        state["threshold"] = self.threshold.detach().clone()
        return state

    @torch.no_grad()
    def load_saelens_state(self, state: dict[str, Tensor]) -> None:
        super().load_saelens_state(state)
        if "threshold" not in state and "log_threshold" in state:
            state = {**state, "threshold": state["log_threshold"].exp()}
        self.threshold.copy_(state["threshold"].to(self.threshold.dtype))
