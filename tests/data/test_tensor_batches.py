"""Tensor batches for plain modules, the Batch container, and bookkeeping for activations."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from neuronatlas.data import Batch, bookkeeping_for, tensor_batches
from neuronatlas.errors import DataError


def test_single_tensor_is_split_with_running_row_ids(seq_model):
    x = torch.randn(10, 8)
    batches = list(tensor_batches(x, batch_size=4))
    assert [b.n_rows for b in batches] == [4, 4, 2]
    assert torch.cat([b.doc for b in batches]).squeeze(1).tolist() == list(range(10))
    for b in batches:
        assert b.doc.shape == b.pos.shape == b.mask.shape == (b.n_rows, 1)
        assert b.mask.dtype == torch.bool and bool(b.mask.all())
        assert int(b.pos.abs().sum()) == 0 and b.token_id is None and b.kwargs == {}
        assert b.n_tokens == b.n_rows
    out = torch.cat([seq_model(*b.args, **b.kwargs) for b in batches])
    torch.testing.assert_close(out, seq_model(x), rtol=1e-6, atol=1e-6)
    assert [b.n_rows for b in tensor_batches(torch.zeros(70, 2))] == [32, 32, 6]


def test_iterables_of_tensors_tuples_and_dicts():
    xs = [torch.zeros(3, 2), torch.ones(5, 2)]
    assert [b.doc[:, 0].tolist() for b in tensor_batches(xs)] == [[0, 1, 2], [3, 4, 5, 6, 7]]
    assert [b.n_rows for b in tensor_batches(xs, batch_size=2)] == [2, 1, 2, 2, 1]
    pairs = [(torch.zeros(2, 3), torch.zeros(2, 4))]
    (b,) = tensor_batches(iter(pairs))
    assert len(b.args) == 2 and b.kwargs == {}
    (b,) = tensor_batches([{"x": torch.zeros(4, 3), "scale": 2.0}])
    assert b.args == () and set(b.kwargs) == {"x", "scale"} and b.n_rows == 4


def test_dataloader_items_are_positional_inputs():
    ds = TensorDataset(torch.arange(14.0).reshape(7, 2), torch.arange(7))
    batches = list(tensor_batches(DataLoader(ds, batch_size=3)))
    assert [b.n_rows for b in batches] == [3, 3, 1]
    assert batches[2].doc.tolist() == [[6]]
    assert torch.equal(batches[1].args[0], ds.tensors[0][3:6])


def test_input_ids_define_tokens_and_padding():
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]])
    att = (ids > 0).long()
    att[2] = 1
    batches = list(tensor_batches({"input_ids": ids, "attention_mask": att}, batch_size=2))
    assert [b.n_rows for b in batches] == [2, 1]
    b0, b1 = batches
    assert b0.doc.tolist() == [[0] * 4, [1] * 4] and b1.doc.tolist() == [[2] * 4]
    assert b0.pos.tolist() == [[0, 1, 2, 3]] * 2
    assert torch.equal(b0.mask, att[:2].bool()) and torch.equal(b0.token_id, ids[:2])
    assert b0.n_tokens == 5 and b1.n_tokens == 4
    (no_mask,) = tensor_batches([{"input_ids": ids}])
    assert bool(no_mask.mask.all()) and no_mask.n_tokens == 12


def test_batches_run_a_hugging_face_model(hf_model):
    ids = torch.randint(1, 100, (5, 9))
    att = torch.ones_like(ids)
    att[1, 6:] = 0
    for b in tensor_batches({"input_ids": ids, "attention_mask": att}, batch_size=2):
        with torch.no_grad():
            out = hf_model(*b.args, **b.kwargs)
        assert out[0].shape[:2] == b.mask.shape


def test_bookkeeping_for_activation_positions():
    (plain,) = tensor_batches(torch.zeros(3, 4), batch_size=3)
    doc, pos, mask = bookkeeping_for(plain, 5)  # e.g. a conv map with 5 locations
    assert doc.tolist() == [[0] * 5, [1] * 5, [2] * 5]
    assert pos.tolist() == [list(range(5))] * 3 and bool(mask.all())
    assert [t.shape for t in bookkeeping_for(plain, 1)] == [(3, 1)] * 3

    ids = torch.tensor([[5, 6, 0], [0, 0, 0]])
    (tok,) = tensor_batches([{"input_ids": ids, "attention_mask": (ids > 0).long()}])
    doc, pos, mask = bookkeeping_for(tok, 3)
    assert doc is tok.doc and pos is tok.pos and mask is tok.mask
    doc, pos, mask = bookkeeping_for(tok, 1)  # pooled output: one per row
    assert doc.tolist() == [[0], [1]] and pos.tolist() == [[0], [0]]
    assert mask.tolist() == [[True], [False]]  # an all-padding row has nothing to count
    with pytest.raises(DataError, match=r"2 positions .* batch of 3 positions"):
        bookkeeping_for(tok, 2)


def test_batch_to_moves_everything_and_keeps_the_count():
    ids = torch.tensor([[1, 2, 0]])
    (b,) = tensor_batches([{"input_ids": ids, "attention_mask": (ids > 0).long(), "extra": [ids]}])
    moved = b.to("meta")
    assert moved.kwargs["input_ids"].device.type == "meta"
    assert moved.kwargs["extra"][0].device.type == "meta"
    assert {moved.doc.device.type, moved.pos.device.type, moved.mask.device.type} == {"meta"}
    assert moved.token_id.device.type == "meta"
    assert moved.n_tokens == 2  # counted on the host before the move
    back = b.to(torch.device("cpu"))
    assert torch.equal(back.kwargs["input_ids"], ids) and back.windows == ()


def test_batch_validates_shapes():
    m = torch.ones(2, 3, dtype=torch.bool)
    z = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(DataError, match="mask must be a \\(batch, pos\\) bool"):
        Batch((), {}, z, z, m.long())
    with pytest.raises(DataError, match=r"Batch.pos must have the shape of Batch.mask \(2, 3\)"):
        Batch((), {}, z, z[:, :2], m)


@pytest.mark.parametrize(
    "data,match",
    [
        ("text", "got str"),
        (5, "got int"),
        ([torch.zeros(2, 3), 7], "Item 1 is a int"),
        (
            [(torch.zeros(2, 3), torch.zeros(3, 3))],
            r"disagree on the batch size.*\(2, 3\), \(3, 3\)",
        ),
        ([(1, 2)], "holds no tensor"),
        ([torch.tensor(1.0)], "0-dimensional"),
        ([{1: torch.zeros(2)}], "non-string keys"),
        (
            [{"input_ids": torch.ones(2, 3), "attention_mask": torch.ones(2, 4)}],
            "attention_mask has shape",
        ),
    ],
)
def test_errors(data, match):
    with pytest.raises(DataError, match=match):
        list(tensor_batches(data))


def test_bad_batch_size():
    with pytest.raises(DataError, match="batch_size must be an int >= 1"):
        tensor_batches(torch.zeros(2, 2), batch_size=0)
