"""Labelled rows of an atlas's activation store: which rows a probe reads, and reading them.

A probe reads a bounded sample of the store (``max_rows`` rows, balanced over classes by
default), chunk by chunk through :meth:`ActivationStore.read`; memory is the sample
(``max_rows × units``), never the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from neuronatlas.concepts._common import ConceptError

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.store import ActivationStore

__all__ = ["LabelledRows", "labelled_rows", "read_rows"]


@dataclass
class LabelledRows:
    """A sample of store rows with their labels.

    Attributes:
        rows: ``(row,)`` store rows, ascending. label: ``(row,)`` label values.
        token_id: ``(row,)`` token ids (the "word types" of a control task).
        n_labelled: tokens of the store that carry a label (before sampling).
        class_counts: label value → count among the labelled rows (classification).
    """

    rows: np.ndarray
    label: np.ndarray
    token_id: np.ndarray
    n_labelled: int
    class_counts: dict[str, int]


def labelled_rows(
    store: ActivationStore,
    labels: pd.DataFrame,
    *,
    task: str,
    max_rows: int,
    balance: bool = True,
    seed: int = 0,
) -> LabelledRows:
    """Join the store's rows with a label table on ``(doc, pos)`` and sample them.

    Args:
        store: the activation store.
        labels: ``doc, pos, label`` (one row per token, e.g. from
            :func:`~neuronatlas.concepts.token_labels`).
        task: ``"classification"`` or ``"regression"``.
        max_rows: most rows to keep.
        balance: classification only: keep the same number of rows of every class,
            ``min(max_rows // classes, rarest class count)`` each, as "Finding Neurons in a
            Haystack" does; otherwise a uniform sample.
        seed: sampling seed.

    Returns:
        :class:`LabelledRows`.

    Raises:
        ConceptError: no store row has a label, or a classification label has one class.
    """
    if max_rows < 2:
        raise ConceptError(f"max_rows must be at least 2; got {max_rows}.")
    index = store.index().to_pandas()
    merged = index.merge(labels[["doc", "pos", "label"]], on=["doc", "pos"], how="inner")
    if merged.empty:
        raise ConceptError(
            "No row of the activation store has a label: the label table's (doc, pos) do not "
            "match the store's. Build the labels from the same atlas."
        )
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    if task == "classification":
        values = merged["label"].to_numpy()
        classes, inverse = np.unique(values, return_inverse=True)
        counts = {str(c): int((inverse == i).sum()) for i, c in enumerate(classes)}
        if len(classes) < 2:
            raise ConceptError(
                f"The label takes a single value ({classes.tolist()}) on the stored tokens; a "
                "classification probe needs two classes or more."
            )
        if balance:
            per = max(1, min(max_rows // len(classes), min(counts.values())))
            keep = np.concatenate(
                [
                    rng.choice(g, size=per, replace=False)
                    for g in (np.flatnonzero(inverse == i) for i in range(len(classes)))
                ]
            )
        else:
            keep = rng.choice(len(merged), size=min(max_rows, len(merged)), replace=False)
    else:
        keep = rng.choice(len(merged), size=min(max_rows, len(merged)), replace=False)
    sample = merged.iloc[np.sort(keep)].sort_values("row")
    return LabelledRows(
        rows=sample["row"].to_numpy(np.int64),
        label=sample["label"].to_numpy(),
        token_id=sample["token_id"].to_numpy(np.int64),
        n_labelled=len(merged),
        class_counts=counts,
    )


def read_rows(
    store: ActivationStore, site: str, rows: np.ndarray, units: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``rows`` of ``site`` as float32; rows holding NaN/±inf are counted, not returned.

    Returns:
        ``(x, finite)``: ``(kept row, unit)`` float32 values and the ``(row,)`` boolean mask of
        the rows kept (``~finite`` had a non-finite value).
    """
    x = store.read(site, rows=rows, units=units).astype(np.float32, copy=False)
    finite = np.isfinite(x).all(1)
    return (x if finite.all() else x[finite]), finite
