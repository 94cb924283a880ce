"""What every sparse autoencoder shares: a linear encoder, one activation, a linear decoder.

``x ≈ x̂ = decode(encode(x))`` with, for an input ``x`` of ``d_in`` values,

- input normalization: ``x_n = s · x`` with one scalar ``s`` fixed before training so that
  ``E‖x_n‖₂ = √d_in`` (Anthropic, "Towards Monosemanticity" and its April 2024 update;
  SAELens calls it ``expected_average_only_in``), ``s = 1`` when normalization is off;
- ``pre = (x_n − b_dec) W_enc + b_enc`` (the decoder bias is subtracted from the input first,
  as in "Towards Monosemanticity", 2023, and in SAELens's ``apply_b_dec_to_input``);
- ``z = σ(pre)``, the architecture's activation (ReLU, TopK, BatchTopK, JumpReLU);
- ``x̂ = (z W_dec + b_dec) / s``.

Weights are kept in SAELens's shapes: ``W_enc (d_in, d_sae)``, ``b_enc (d_sae)``,
``W_dec (d_sae, d_in)``, ``b_dec (d_in)``. Every architecture here trains with unit-norm
decoder rows (renormalized after each step, gradient parallel to each row removed before it).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from neuronatlas.errors import NeuronAtlasError

__all__ = ["SAEError", "SparseAutoencoder"]


class SAEError(NeuronAtlasError, ValueError):
    """Bad settings or input for a sparse autoencoder, or a file that is not an SAE."""


def check_int(value: Any, name: str, owner: str, *, low: int = 1, high: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise SAEError(f"The {name!r} parameter of {owner} must be an int {rng}; got {value!r}.")
    return int(value)


def check_float(value: Any, name: str, owner: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise SAEError(
            f"The {name!r} parameter of {owner} must be a finite number >= {low}; got {value!r}."
        )
    if value != value or value in (float("inf"), float("-inf")):
        raise SAEError(f"The {name!r} parameter of {owner} must be finite; got {value!r}.")
    return float(value)


class SparseAutoencoder(nn.Module, abc.ABC):
    """Base class: subclasses set :attr:`architecture` and define :meth:`activate`.

    Args:
        d_in: width of the activations it reads (``d_model`` or a site's units).
        d_sae: number of features (dictionary size).
        seed: seed of the initialization: decoder rows uniform on the sphere, the encoder their
            transpose ("Scaling and evaluating sparse autoencoders", 2024) scaled to
            ``encoder_init_norm``.
        apply_b_dec_to_input: subtract ``b_dec`` from the input before encoding.
        encoder_init_norm: norm of the encoder's columns at initialization (0.1: the
            "heuristic" initialization of Anthropic's April 2024 update, as in SAELens).

    Attributes:
        norm_scale: the input normalization ``s`` (a buffer; 1 until training sets it).
    """

    architecture: ClassVar[str] = ""
    #: "aux" (AuxK loss) or "resample" (dead-feature resampling): the default way to revive
    #: dead features of this architecture during training.
    dead_strategy: ClassVar[str] = "resample"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        seed: int = 0,
        apply_b_dec_to_input: bool = True,
        encoder_init_norm: float = 0.1,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        d_in = check_int(d_in, "d_in", name)
        d_sae = check_int(d_sae, "d_sae", name)
        self.seed = check_int(seed, "seed", name, low=0)
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.encoder_init_norm = check_float(
            encoder_init_norm, "encoder_init_norm", name, low=1e-12
        )
        g = torch.Generator().manual_seed(self.seed)
        w_dec = torch.randn(d_sae, d_in, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone() * self.encoder_init_norm)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("norm_scale", torch.tensor(1.0))

    # -- sizes and settings ----------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that define this SAE (for configs and checkpoints)."""
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "seed": self.seed,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "encoder_init_norm": self.encoder_init_norm,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings().items() if k != "seed")

    # -- inference -------------------------------------------------------------------------------
    def hidden_pre(self, x: Tensor) -> Tensor:
        """``pre = (s·x − b_dec) W_enc + b_enc``: ``(..., d_in)`` → ``(..., d_sae)``."""
        x = x.to(self.W_enc.dtype) * self.norm_scale
        return self.pre_normalized(x)

    def pre_normalized(self, x_n: Tensor) -> Tensor:
        """The pre-activations of an already normalized input ``x_n = s·x``."""
        if self.apply_b_dec_to_input:
            x_n = x_n - self.b_dec
        return torch.addmm(self.b_enc, x_n.reshape(-1, self.d_in), self.W_enc).reshape(
            *x_n.shape[:-1], self.d_sae
        )

    @abc.abstractmethod
    def activate(self, pre: Tensor) -> Tensor:
        """The architecture's activation at inference: ``(..., d_sae)`` → ``(..., d_sae)``."""

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations ``z``: ``(..., d_in)`` → ``(..., d_sae)``."""
        return self.activate(self.hidden_pre(x))

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction ``x̂ = (z W_dec + b_dec) / s``: ``(..., d_sae)`` → ``(..., d_in)``."""
        return self.decode_normalized(z) / self.norm_scale

    def decode_normalized(self, z: Tensor) -> Tensor:
        """``z W_dec + b_dec``, in the normalized input space."""
        flat = torch.addmm(self.b_dec, z.reshape(-1, self.d_sae).to(self.W_dec.dtype), self.W_dec)
        return flat.reshape(*z.shape[:-1], self.d_in)

    def forward(self, x: Tensor) -> Tensor:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x))

    # -- training hooks (normalized space) -------------------------------------------------------
    def sparse_codes(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """Training codes as ``(rows, cols, values)`` for architectures with sparse decoding.

        ``None`` (the default) means the trainer uses :meth:`training_loss` with autograd.
        """
        return None

    @abc.abstractmethod
    def training_loss(self, x_n: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """Loss of one normalized batch: ``(loss, parts, z, x̂_n)``; ``parts`` has ``mse``."""

    def after_step(self, z_or_vals: Tensor, n_rows: int) -> None:
        """Update non-gradient state after an optimizer step (BatchTopK's threshold)."""

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (rows of zeros are left alone)."""
        norms = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec.div_(torch.where(norms > 0, norms, torch.ones_like(norms)))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove from ``W_dec.grad`` its component parallel to each (unit-norm) row."""
        g = self.W_dec.grad
        if g is not None:
            g -= (g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec

    # -- SAELens interop -------------------------------------------------------------------------
    def saelens_fields(self) -> dict[str, Any]:
        """Architecture name and extra ``cfg.json`` fields of the SAELens inference config."""
        return {"architecture": self.architecture}

    @torch.no_grad()
    def saelens_state(self) -> dict[str, Tensor]:
        """Inference weights in SAELens's names, with the input normalization folded in.

        With ``s`` the scale: ``W_enc ← s·W_enc``, ``W_dec ← W_dec/s``, ``b_dec ← b_dec/s``
        (SAELens's ``fold_activation_norm_scaling_factor``); pre-activations and codes are
        unchanged, so the saved SAE computes the same ``z`` and ``x̂`` with ``s = 1``.
        """
        s = self.norm_scale.to(self.W_enc.dtype)
        return {
            "W_enc": (self.W_enc * s).contiguous(),
            "b_enc": self.b_enc.detach().clone(),
            "W_dec": (self.W_dec / s).contiguous(),
            "b_dec": (self.b_dec / s).contiguous(),
        }

    @classmethod
    def from_saelens(cls, cfg: dict[str, Any], state: dict[str, Tensor]) -> SparseAutoencoder:
        """Build this architecture from a SAELens config and weights (no normalization)."""
        self = cls(int(cfg["d_in"]), int(cfg["d_sae"]), **cls.saelens_settings(cfg))
        self.load_saelens_state(state)
        return self

    @classmethod
    def saelens_settings(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments read from a SAELens config."""
        return {"apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True))}

    @torch.no_grad()
    def load_saelens_state(self, state: dict[str, Tensor]) -> None:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            target = getattr(self, name)
            value = state[name]
            if tuple(value.shape) != tuple(target.shape):
                raise SAEError(
                    f"SAELens weight {name!r} has shape {tuple(value.shape)}; this "
                    f"{self.architecture} SAE expects {tuple(target.shape)} (d_in={self.d_in}, "
                    f"d_sae={self.d_sae}). Check the cfg.json beside the weights."
                )
            target.copy_(value.to(target.dtype))
        self.norm_scale.fill_(1.0)
