"""Two small causal LMs for the steering replications, trained on one CPU core in minutes.

- ``case``: a character-level GPT-2 (4 layers, d_model 96) trained on 128-character windows of
  the Python documentation bundled with Python, each window either in its original case or
  entirely UPPERCASE (probability 1/2). The model continues a prompt in the prompt's case: case
  is a known, controllable attribute of its generations.
- ``fv``: a GPT-2 (4 layers, d_model 64) trained on in-context-learning prompts over lists of 3
  letters, ``"abc>abc;dfg>dfg;klm>"``, for three tasks: copy, successor (each letter + 1) and
  reverse. The task is only given by the demonstrations (0 to 5 of them); the loss is on the
  answers.

Both are trained deterministically (fixed seeds, one thread) and cached next to this file in
safetensors (1.9 MB and 0.8 MB), with a character-level Hugging Face tokenizer. Training takes
about 4 and 7 minutes on an idle core (about 14 minutes each on a loaded shared machine).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python docs/replications/steering/toys.py
"""

from __future__ import annotations

import random
import string
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
CHARS = "\n" + "".join(chr(c) for c in range(32, 127))  # newline + printable ASCII
SEQ = 128
LETTERS = string.ascii_lowercase[:20]  # a..t, so that the successor stays in a..u
FV_VOCAB = [*string.ascii_lowercase, ">", ";", "<pad>"]


def char_tokenizer(chars: str | list[str]):
    """A Hugging Face fast tokenizer with one token per character (no special tokens)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(chars)}
    vocab.setdefault("<unk>", len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    fast.pad_token = "<unk>" if "<pad>" not in vocab else "<pad>"
    return fast


def case_corpus() -> tuple[str, str]:
    """(train, held-out) text: ASCII lines of the bundled Python docs, 90% / 10% by document."""
    from neuronatlas.data import python_docs_corpus

    train, test = [], []
    for i, doc in enumerate(python_docs_corpus()):
        lines = [ln.rstrip() for ln in doc.text.splitlines()]
        text = "\n".join(ln for ln in lines if ln.strip() and ln.isascii())
        (test if i % 10 == 9 else train).append(text)
    return "\n\n".join(train), "\n\n".join(test)


def _gpt2(vocab: int, n_layer: int, d: int, n_pos: int, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=n_pos,
        n_embd=d,
        n_layer=n_layer,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(cfg)


def windows(text: str, n: int, rng: random.Random, upper: float = 0.5) -> list[str]:
    """``n`` random windows of ``SEQ`` characters, each uppercased with probability ``upper``."""
    out = []
    for _ in range(n):
        i = rng.randrange(len(text) - SEQ)
        w = text[i : i + SEQ]
        out.append(w.upper() if rng.random() < upper else w)
    return out


def _train(model, batches, steps: int, lr: float, name: str) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        ids, labels = batches(step)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(
                f"{name} step {step} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
    model.eval()


def train_case(steps: int = 1000, out: Path = HERE / "case-model"):
    torch.set_num_threads(1)
    train, _ = case_corpus()
    tok = char_tokenizer(list(CHARS))
    model = _gpt2(len(tok), 4, 96, SEQ, seed=0)
    rng = random.Random(0)
    lut = {c: i for i, c in enumerate(CHARS)}

    def batches(step):
        ids = torch.tensor([[lut[c] for c in w] for w in windows(train, 16, rng)])
        return ids, ids

    _train(model, batches, steps, 3e-3, "case")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model, tok


def fv_example(task: str, rng: random.Random) -> tuple[str, str]:
    x = rng.sample(LETTERS, 3)
    if task == "copy":
        y = x
    elif task == "successor":
        y = [chr(ord(c) + 1) for c in x]
    else:
        y = x[::-1]
    return "".join(x), "".join(y)


TASKS = ("copy", "successor", "reverse")


def fv_prompt(
    task: str, n_demos: int, rng: random.Random, shuffle: bool = False
) -> tuple[str, str]:
    """An ICL prompt ``"x1>y1;...;xq>"`` and its answer; ``shuffle`` pairs demo inputs with the
    outputs of other demos (the corrupted prompts of the causal-indirect-effect test)."""
    demos = [fv_example(task, rng) for _ in range(n_demos)]
    if shuffle and n_demos > 1:
        ys = [y for _, y in demos]
        rot = rng.randrange(1, n_demos)
        demos = [(x, ys[(i + rot) % n_demos]) for i, (x, _) in enumerate(demos)]
    q, a = fv_example(task, rng)
    return "".join(f"{x}>{y};" for x, y in demos) + f"{q}>", a


def train_fv(steps: int = 4000, out: Path = HERE / "fv-model"):
    torch.set_num_threads(1)
    tok = char_tokenizer(FV_VOCAB)
    model = _gpt2(len(tok), 4, 64, 48, seed=1)
    rng = random.Random(1)
    lut = {c: i for i, c in enumerate(FV_VOCAB)}
    pad = lut["<pad>"]

    def batches(step):
        rows, labels = [], []
        for _ in range(32):
            prompt, ans = fv_prompt(rng.choice(TASKS), rng.randint(0, 5), rng)
            ids = [lut[c] for c in prompt + ans + ";"]
            lab = [-100] * len(prompt) + ids[len(prompt) :]
            # also learn the demonstrations' answers (after the first)
            for j, c in enumerate(prompt):
                if c == ">" and j > 3:
                    lab[j + 1 : j + 4] = ids[j + 1 : j + 4]
            rows.append(ids)
            labels.append(lab)
        n = max(map(len, rows))
        ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows])
        lab = torch.tensor([r + [-100] * (n - len(r)) for r in labels])
        # labels are shifted inside the model: label[t] is predicted at t-1
        return ids, lab

    _train(model, batches, steps, 2e-3, "fv")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model, tok


def load(name: str):
    """The cached model and tokenizer (``"case"`` or ``"fv"``), trained first if missing."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    out = HERE / f"{name}-model"
    if not (out / "model.safetensors").exists():
        (train_case if name == "case" else train_fv)(out=out)
    return GPT2LMHeadModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)


if __name__ == "__main__":
    which = sys.argv[1:] or ["case", "fv"]
    for name in which:
        (train_case if name == "case" else train_fv)()
