"""The default corpus: the documentation that ships with Python itself (no network, no files)."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import inspect
import os
import pkgutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuronatlas.data._corpus import Corpus, Document

__all__ = ["python_docs_corpus"]

# Modules left out: they act when imported (open a browser, print, start a GUI or change the
# terminal), are test suites, or would import third-party code (setuptools' distutils shim).
SKIP = frozenset(
    {
        "__main__",
        "antigravity",
        "distutils",
        "ensurepip",
        "idlelib",
        "lib2to3",
        "pydoc_data",
        "readline",
        "test",
        "this",
        "tkinter",
        "turtle",
        "turtledemo",
    }
)


def python_docs_corpus() -> Corpus:
    """The documentation that ships with Python, as a lazy corpus (the bundled demo corpus).

    Two parts, in this order:

    1. every help topic of ``pydoc_data.topics`` (the language reference pages that ``help()``
       shows: ``assert``, ``for``, ``numbers``, ...), sorted by name; source ``topic:NAME``;
    2. one document per standard-library module (``sys.stdlib_module_names``, sorted, with the
       submodules of packages after their package; private modules, tests and the modules in
       ``SKIP`` left out); source ``module:NAME``. A document is the module's docstring, then
       for each public function and class (``__all__`` when the module defines it, else names
       without a leading underscore) a header ``name(signature)`` and its docstring, and for
       classes their public methods the same way.

    Pure-Python modules are read with :mod:`ast` from their source files and never imported, so
    nothing runs; only compiled modules (``math``, ``itertools``, ...) are imported, with warnings
    silenced, and skipped if the import fails. The result is deterministic for a given Python
    installation. With CPython 3.11 it is about 1.5 MB of text (about 380k MiniLM tokens).

    Returns:
        A re-iterable :class:`Corpus`.

    Examples:
        >>> docs = iter(python_docs_corpus())
        >>> next(docs).source
        'topic:assert'
    """
    return Corpus(
        f"Python {sys.version.split()[0]} documentation (pydoc topics, stdlib docstrings)",
        _iter_docs,
    )


def _iter_docs() -> Iterator[Document]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(f"topic:{name}", topics[name])
    for name in _stdlib_modules():
        text = _module_text(name)
        if text:
            yield Document(f"module:{name}", text)


def _stdlib_dirs() -> list[str]:
    root = Path(os.__file__).parent  # os.py lives in the standard library's folder
    return [str(root), str(root / "lib-dynload")]


def _stdlib_modules() -> Iterator[str]:
    dirs = _stdlib_dirs()
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIP:
            continue
        spec = importlib.machinery.PathFinder.find_spec(name, dirs)
        if spec is None:
            if importlib.machinery.BuiltinImporter.find_spec(name) is not None:
                yield name  # compiled into the interpreter (sys, builtins, itertools, ...)
            continue
        yield name
        if spec.submodule_search_locations:
            yield from _submodules(name, list(spec.submodule_search_locations))


def _submodules(package: str, paths: list[str]) -> Iterator[str]:
    for info in sorted(pkgutil.iter_modules(paths), key=lambda m: m.name):
        if info.name.startswith(("_", "test_")) or info.name in {"test", "tests", "idle_test"}:
            continue
        full = f"{package}.{info.name}"
        yield full
        if info.ispkg:
            yield from _submodules(full, [os.path.join(p, info.name) for p in paths])


def _module_text(name: str) -> str:
    path = _source_path(name)
    if path is not None:
        try:
            source = Path(path).read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return ""
        return _text_from_ast(name, tree)
    return _text_from_import(name)


def _source_path(name: str) -> str | None:
    dirs = _stdlib_dirs()
    parts = name.split(".")
    for part in parts[:-1]:
        dirs = [os.path.join(d, part) for d in dirs]
    spec = importlib.machinery.PathFinder.find_spec(parts[-1], dirs)
    origin = spec.origin if spec is not None else None
    return origin if origin and origin.endswith(".py") else None


def _static_all(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, (ast.List, ast.Tuple))
        ):
            return {
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
    return None


_Defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _header(qualname: str, node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases)
        return f"class {qualname}({bases})" if bases else f"class {qualname}"
    return f"{qualname}({ast.unparse(node.args)})"  # type: ignore[attr-defined]


def _text_from_ast(name: str, tree: ast.Module) -> str:
    sections = []
    doc = ast.get_docstring(tree)
    if doc:
        sections.append(f"{name}\n\n{doc}")
    public = _static_all(tree)
    for node in tree.body:
        if not isinstance(node, _Defs) or node.name.startswith("_"):
            continue
        if public is not None and node.name not in public:
            continue
        doc = ast.get_docstring(node)
        if doc:
            sections.append(f"{_header(f'{name}.{node.name}', node)}\n\n{doc}")
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, _Defs) and not sub.name.startswith("_"):
                    doc = ast.get_docstring(sub)
                    if doc:
                        qual = f"{name}.{node.name}.{sub.name}"
                        sections.append(f"{_header(qual, sub)}\n\n{doc}")
    return "\n\n".join(sections)


def _text_from_import(name: str) -> str:
    """Docstrings of a compiled module; importing it is the only way to read them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except Exception:  # not built for this platform, or fails to load: leave it out
        return ""
    sections = []
    doc = _clean(module.__doc__)
    if doc:
        sections.append(f"{name}\n\n{doc}")
    public = getattr(module, "__all__", None)
    for attr in sorted(public if public is not None else dir(module)):
        if attr.startswith("_"):
            continue
        # sys.excepthook & co. are often replaced at run time (by pytest, IPython, ...): read
        # the originals Python keeps in sys.__excepthook__ & co., so the text does not change
        obj = getattr(module, f"__{attr}__", None) if name == "sys" else None
        obj = obj if obj is not None else getattr(module, attr, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", name) != name:
            continue  # re-exported from elsewhere
        doc = _clean(obj.__doc__)
        if doc:
            sections.append(f"{_signature(f'{name}.{attr}', obj)}\n\n{doc}")
        if inspect.isclass(obj):
            for meth in sorted(vars(obj)):
                value = vars(obj)[meth]
                if meth.startswith("_") or not inspect.isroutine(value):
                    continue
                doc = _clean(getattr(value, "__doc__", None))
                if doc:
                    sections.append(f"{_signature(f'{name}.{attr}.{meth}', value)}\n\n{doc}")
    return "\n\n".join(sections)


def _clean(doc: Any) -> str:
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _signature(qualname: str, obj: Any) -> str:
    if inspect.isclass(obj):
        return f"class {qualname}"
    try:
        return f"{qualname}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return qualname
