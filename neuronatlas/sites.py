"""Sites: named places in a model where units live.

A site is addressed by the model's own module names (``model.named_modules()``), so nothing has
to be maintained per architecture except a thin table of presets on top.

Spec syntax (a string, comma-separated allowed, or a list of strings / :class:`Site`):

- ``encoder.layer.0.intermediate`` — the output of that module;
- ``encoder.layer.0.output.dense:input`` — its first input (``:output`` is the default);
- ``transformer.h.0.attn:attn`` — the attention probabilities ``(batch, head, q, k)`` of an
  attention module;
- globs: ``*`` matches within one name component (it never crosses a dot), ``**`` as a whole
  component matches any number of components (zero included), ``?`` one character and
  ``[...]`` a character class, as in :mod:`fnmatch`. So ``encoder.layer.*.output`` matches
  ``encoder.layer.3.output`` but not ``encoder.layer.3.attention.output``, and
  ``**.mlp`` matches every module called ``mlp`` at any depth;
- presets ``mlp``, ``resid`` and ``attn``, resolved per architecture family (see
  :data:`PRESETS` and ``docs/sites.md``). A module literally named ``mlp``, ``resid`` or
  ``attn`` at the top of the model takes precedence over the preset of that name.

Examples:
    >>> from collections import OrderedDict
    >>> from torch import nn
    >>> model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.ReLU(), fc2=nn.Linear(8, 2)))
    >>> [s.name for s in resolve_sites(model, "fc2:input, fc1")]
    ['fc1', 'fc2:input']
    >>> resolve_sites(model, "fc*")[1]
    Site(name='fc2', module='fc2', hook='output', kind='module', layer=None)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from torch import nn

from neuronatlas.errors import SiteError, closest

__all__ = ["PRESETS", "Hook", "Kind", "Site", "resolve_sites"]

Hook = Literal["output", "input", "attn"]
T = TypeVar("T")

Kind = Literal["mlp", "resid", "attn", "module", "sae", "brain"]

_HOOKS: tuple[str, ...] = ("output", "input", "attn")
_HOOK_RANK = {"input": 0, "output": 1, "attn": 2}
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Site:
    """One recorded place in a model.

    Attributes:
        name: the site's name in every output (``module`` for outputs, ``module:input``,
            ``module:attn``).
        module: the module's path in ``model.named_modules()``.
        hook: ``"output"`` (what the module returns), ``"input"`` (its first input) or
            ``"attn"`` (the attention probabilities it computes).
        kind: ``"mlp"`` (hidden MLP neurons), ``"resid"`` (residual stream after a block),
            ``"attn"`` (attention probabilities) or ``"module"`` (anything else).
        layer: the index of the enclosing block, i.e. the first integer path component of
            ``module``, or ``None`` when there is none.

    Examples:
        >>> Site.make("model.layers.3.mlp.down_proj", "input", kind="mlp")
        Site(name='model.layers.3.mlp.down_proj:input', module='model.layers.3.mlp.down_proj', hook='input', kind='mlp', layer=3)
    """

    name: str
    module: str
    hook: Hook
    kind: Kind
    layer: int | None

    @classmethod
    def make(cls, module: str, hook: Hook = "output", *, kind: Kind | None = None) -> Site:
        """Build a site from a module path and a hook, deriving ``name`` and ``layer``."""
        name = module if hook == "output" else f"{module}:{hook}"
        if kind is None:
            kind = "attn" if hook == "attn" else "module"
        return cls(name=name, module=module, hook=hook, kind=kind, layer=_layer_of(module))

    def __str__(self) -> str:
        return self.name


# ----------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class _Layout:
    """How one architecture family lays out a transformer block, relative to the block.

    ``mlp`` lists candidate paths of the MLP's down (output) projection, whose *input* is the
    MLP's hidden neurons; ``attn`` candidate paths of the self-attention module; ``requires``
    paths that must also exist for a block to count as this family. The first existing
    candidate wins.
    """

    family: str
    mlp: tuple[str, ...]
    attn: tuple[str, ...]
    requires: tuple[str, ...] = ()


_LAYOUTS: tuple[_Layout, ...] = (
    _Layout(
        "BERT / RoBERTa / MiniLM / ELECTRA (encoder.layer.N)",
        mlp=("output.dense",),
        attn=("attention.self", "attention.attention"),
        requires=("intermediate",),
    ),
    _Layout("GPT-2 (transformer.h.N)", mlp=("mlp.c_proj",), attn=("attn",)),
    _Layout(
        "Llama / Mistral / Qwen / Gemma (model.layers.N)",
        mlp=("mlp.down_proj",),
        attn=("self_attn",),
    ),
    _Layout(
        "GPT-NeoX / Pythia / Falcon / BLOOM",
        mlp=("mlp.dense_4h_to_h",),
        attn=("attention", "self_attention"),
    ),
    _Layout("GPT-J (transformer.h.N)", mlp=("mlp.fc_out",), attn=("attn",)),
    _Layout("OPT (model.decoder.layers.N)", mlp=("fc2",), attn=("self_attn",)),
    _Layout(
        "ViT / CLIP / Phi (mlp.fc1 -> mlp.fc2)", mlp=("mlp.fc2",), attn=("self_attn", "attention")
    ),
    _Layout("DistilBERT (transformer.layer.N)", mlp=("ffn.lin2",), attn=("attention",)),
    _Layout(
        "T5 (encoder.block.N / decoder.block.N)",
        mlp=("layer.1.DenseReluDense.wo", "layer.2.DenseReluDense.wo"),
        attn=("layer.0.SelfAttention",),
    ),
    _Layout(
        "PyTorch nn.TransformerEncoderLayer / DecoderLayer", mlp=("linear2",), attn=("self_attn",)
    ),
)

#: Preset name -> what it records, for messages and docs.
PRESETS: dict[str, str] = {
    "mlp": "the MLP's hidden neurons: the input of each block's down (output) projection",
    "resid": "the residual stream: the output of each transformer block",
    "attn": "the attention probabilities (batch, head, q, k) of each block's self-attention",
}


@dataclass(frozen=True)
class _Block:
    path: str
    layout: _Layout
    mlp: str | None
    attn: str | None


def find_blocks(names: dict[str, nn.Module], match: Callable[[str], T | None]) -> list[T]:
    """Transformer blocks, in module order: what ``match`` makes of each candidate block path.

    A candidate is an element of an ``nn.ModuleList`` / ``nn.Sequential`` (its last name
    component is an integer); ``match(path)`` returns the block (or ``None`` if ``path`` is not
    one), and the descendants of a matched block are not candidates. Detection looks only at
    relative names, so it works at any nesting depth (``bert.encoder.layer.N``,
    ``model.model.layers.N``, a user's wrapper around an HF model, ...). Presets and the
    attention-head analyses each match with their own table of families.
    """
    blocks: list[T] = []
    inside: str | None = None  # path of the last matched block: its descendants are skipped
    for path in names:
        if inside is not None and path.startswith(inside + "."):
            continue
        head, _, last = path.rpartition(".")
        if not last.isdigit() or not isinstance(names.get(head), nn.ModuleList | nn.Sequential):
            continue
        block = match(path)
        if block is not None:
            blocks.append(block)
            inside = path
    return blocks


def _find_blocks(names: dict[str, nn.Module]) -> list[_Block]:
    """Transformer blocks of a known :data:`_LAYOUTS` layout (see :func:`find_blocks`)."""

    def match(path: str) -> _Block | None:
        for layout in _LAYOUTS:
            mlp = next((f"{path}.{r}" for r in layout.mlp if f"{path}.{r}" in names), None)
            if mlp is None or any(f"{path}.{r}" not in names for r in layout.requires):
                continue
            attn = next((f"{path}.{r}" for r in layout.attn if f"{path}.{r}" in names), None)
            return _Block(path, layout, mlp, attn)
        return None

    return find_blocks(names, match)


def _preset_sites(blocks: list[_Block], preset: str) -> list[Site]:
    if preset == "mlp":
        return [Site.make(b.mlp, "input", kind="mlp") for b in blocks if b.mlp]
    if preset == "resid":
        return [Site.make(b.path, "output", kind="resid") for b in blocks]
    return [Site.make(b.attn, "attn", kind="attn") for b in blocks if b.attn]


# -------------------------------------------------------------------------------------- globs


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a dotted glob. ``*`` stays within a component; a ``**`` component spans any
    number of components (zero included).

    Matching is done on ``name + "."`` so that every component, the last included, ends in a
    dot; a ``**`` component then simply becomes ``(?:[^.]+\\.)*``.
    """
    out: list[str] = []
    for comp in pattern.split("."):
        if comp == "**":
            out.append(r"(?:[^.]+\.)*")
            continue
        i, part = 0, []
        while i < len(comp):
            c = comp[i]
            if c == "*":
                while i + 1 < len(comp) and comp[i + 1] == "*":
                    i += 1
                part.append(r"[^.]*")
            elif c == "?":
                part.append(r"[^.]")
            elif c == "[":
                j = comp.find("]", i + 2)  # "[]...]" keeps a literal "]" as the first member
                if j == -1:
                    part.append(re.escape(c))
                else:
                    body = comp[i + 1 : j]
                    if body.startswith("!"):
                        body = "^" + body[1:]
                    part.append("[" + body.replace("\\", "\\\\") + "]")
                    i = j
            else:
                part.append(re.escape(c))
            i += 1
        out.append("".join(part) + r"\.")
    return re.compile("".join(out))


def _glob_match(pattern: str, names: Iterable[str]) -> list[str]:
    rx = _glob_regex(pattern)
    return [n for n in names if n and rx.fullmatch(n + ".")]


def _is_glob(s: str) -> bool:
    return any(c in _GLOB_CHARS for c in s)


# -------------------------------------------------------------------------------- resolution


def _layer_of(module: str) -> int | None:
    for comp in module.split("."):
        if comp.isdigit():
            return int(comp)
    return None


def _split_spec(spec: str | Site | Sequence[str | Site]) -> list[str | Site]:
    items: list[str | Site] = []
    raw: Iterable[object] = [spec] if isinstance(spec, str | Site) else spec
    for item in raw:
        if isinstance(item, Site):
            items.append(item)
        elif isinstance(item, str):
            items.extend(p.strip() for p in item.split(",") if p.strip())
        else:
            raise SiteError(
                f"A site spec must be a string or a Site; got {type(item).__name__} ({item!r}). "
                "Pass e.g. 'mlp', 'encoder.layer.*.intermediate' or a list of such strings."
            )
    return items


def _parse(item: str, names: dict[str, nn.Module]) -> tuple[str, Hook]:
    """Split ``module[:hook]``; an existing module name containing ':' is taken as is."""
    if item in names:
        return item, "output"
    module, sep, hook = item.rpartition(":")
    if not sep:
        return item, "output"
    if hook not in _HOOKS:
        raise SiteError(
            f"Unknown site suffix ':{hook}' in {item!r}. Expected one of "
            f"{', '.join(':' + h for h in _HOOKS)} (':output' is the default), e.g. "
            f"'{module}:input'."
        )
    return module, hook  # type: ignore[return-value]


def _family_help() -> str:
    lines = []
    for lay in _LAYOUTS:
        attn = "|".join(lay.attn)
        lines.append(
            f"  - {lay.family}: mlp = N.{'|'.join(lay.mlp)}:input, resid = N, attn = N.{attn}:attn"
        )
    return "\n".join(lines)


def _unknown_name_error(
    item: str, module: str, names: dict[str, nn.Module], model: nn.Module
) -> SiteError:
    real = [n for n in names if n]
    near = closest(module, real)
    if _is_glob(module):
        msg = f"The glob {module!r} (from {item!r}) matches no module of {type(model).__name__}."
        loose = [n for n in real if fnmatch.fnmatchcase(n, module)]
        if loose:
            msg += (
                f" Note that '*' matches within one name component only; '**' spans several "
                f"(it would match e.g. {loose[:3]})."
            )
    else:
        msg = f"No module named {module!r} (from {item!r}) in {type(model).__name__}."
    if near:
        msg += f" Closest module names: {', '.join(near)}."
    msg += " See model.named_modules() for all names; presets: " + ", ".join(PRESETS) + "."
    return SiteError(msg)


def _preset_error(
    preset: str, blocks: list[_Block], names: dict[str, nn.Module], model: nn.Module
) -> SiteError:
    real = [n for n in names if n]
    if blocks:
        fams = sorted({b.layout.family for b in blocks})
        msg = (
            f"The preset {preset!r} ({PRESETS[preset]}) is not available for "
            f"{type(model).__name__}: its blocks ({blocks[0].path}, ...) were recognized as "
            f"{'; '.join(fams)}, but none has such a module."
        )
    else:
        msg = (
            f"The preset {preset!r} ({PRESETS[preset]}) found no transformer block of a known "
            f"architecture in {type(model).__name__}. Blocks are recognized by module names "
            f"(an element N of a ModuleList/Sequential with these sub-modules):\n{_family_help()}"
        )
    listed = [n for n in real if re.search(r"\.\d+$", n)][:5] or real[:8]
    example = re.sub(r"\d+$", "*", listed[0]) if listed else "fc1"
    msg += (
        f"\nPass module names or globs instead, e.g. '{example}' or '{example}:input' "
        "(see model.named_modules())."
    )
    if listed:
        msg += f" Some module names of this model: {', '.join(listed)}."
    return SiteError(msg)


def resolve_sites(model: nn.Module, spec: str | Site | Sequence[str | Site]) -> list[Site]:
    """Resolve a site spec on a model's module tree.

    Args:
        model: any ``nn.Module``; names are those of ``model.named_modules()``.
        spec: one string (comma-separated allowed) or a list of strings and :class:`Site`\\ s.
            Each item is a module name, a glob, or a preset (``mlp``, ``resid``, ``attn``),
            optionally with a ``:input`` / ``:output`` / ``:attn`` suffix (not on presets).

    Returns:
        The sites in module order (a module's ``:input`` before its output before its
        ``:attn``), without duplicates. ``kind`` is ``"mlp"``, ``"resid"`` or ``"attn"`` when a
        site is one the preset of that name would give (whichever way it was named), else
        ``"module"`` (``"attn"`` for any ``:attn`` site).

    Raises:
        SiteError: for an unknown name, a glob that matches nothing, a preset the model's
            architecture does not have, an unknown suffix or an empty spec. The message lists
            the closest real module names.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [s.name for s in resolve_sites(model, ["2:input", "0"])]
        ['0', '2:input']
        >>> resolve_sites(model, "mlp")
        Traceback (most recent call last):
        ...
        neuronatlas.errors.SiteError: The preset 'mlp' ...
    """
    names = dict(model.named_modules())
    order = {n: i for i, n in enumerate(names)}
    items = _split_spec(spec)
    if not items:
        raise SiteError(
            f"No sites given (spec={spec!r}). Pass module names, globs or a preset "
            f"({', '.join(PRESETS)}), e.g. 'mlp' or 'encoder.layer.*.intermediate'."
        )
    blocks: list[_Block] | None = None

    def get_blocks() -> list[_Block]:
        nonlocal blocks
        if blocks is None:
            blocks = _find_blocks(names)
        return blocks

    found: dict[tuple[str, str], Site] = {}
    for item in items:
        if isinstance(item, Site):
            if item.module not in names:
                raise _unknown_name_error(item.name, item.module, names, model)
            found.setdefault((item.module, item.hook), item)
            continue
        module, hook = _parse(item, names)
        if module in PRESETS and module not in names:
            if module != item:
                raise SiteError(
                    f"Presets take no suffix; got {item!r}. Use {module!r}, or name the "
                    "modules yourself with a glob such as 'model.layers.*.mlp:output'."
                )
            sites = _preset_sites(get_blocks(), module)
            if not sites:
                raise _preset_error(module, get_blocks(), names, model)
            for s in sites:
                found.setdefault((s.module, s.hook), s)
            continue
        matched = (
            _glob_match(module, names)
            if _is_glob(module)
            else ([module] if module in names else [])
        )
        if not matched:
            raise _unknown_name_error(item, module, names, model)
        for m in matched:
            found.setdefault((m, hook), Site.make(m, hook))

    # name the kind of explicitly named sites that coincide with a preset's sites
    if any(s.kind == "module" for s in found.values()):
        for preset in PRESETS:
            for s in _preset_sites(get_blocks(), preset):
                key = (s.module, s.hook)
                if key in found and found[key].kind == "module":
                    found[key] = s
    return sorted(found.values(), key=lambda s: (order[s.module], _HOOK_RANK[s.hook]))
