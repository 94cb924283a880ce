"""Steering replications on two small causal LMs trained here (see ``toys.py``).

1. Case model (character-level GPT-2 on the bundled Python docs, each window in its original
   case or UPPERCASE): CAA vectors (Rimsky et al., 2023) from 64 paired windows (the same text
   uppercased vs. as is) at every block output, and Linear-AcT transport maps (Rodriguez et al.,
   2024) from the same windows at every MLP's hidden units. Behaviour: the rate at which greedy
   continuations of original-case prompts come out UPPERCASE (more than half of their letters);
   fluency: perplexity on neutral held-out text (half original, half uppercase windows), its
   case-insensitive version (a letter counts as predicted if either case is), and the KL from
   the unsteered model. Layer x coefficient sweep with :func:`neuronatlas.steer.sweep`.
2. Dynamic Activation Composition (Scalena et al., 2024) with the CAA vector: strengths per step.
3. Function vectors (Todd et al., 2023) on the ICL model: copy / successor / reverse on 3-letter
   lists; zero-shot accuracy with and without the task's function vector.

Writes ``steering.json`` and ``steering.png`` next to this file and prints the tables of
``README.md``. The models are trained first if not cached (``toys.py``).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python docs/replications/steering/steering.py [case] [fv]
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import toys

from neuronatlas.intervene import add, intervene
from neuronatlas.steer import (
    caa,
    dac_generate,
    fluency,
    function_vector,
    generate,
    sweep,
    transport,
)

HERE = Path(__file__).parent
N_PAIRS, N_PROMPTS, PROMPT_LEN, NEW, N_NEUTRAL = 64, 32, 32, 32, 24
CAA_COEFS = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
ACT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
FV_SITE = "transformer.h.1"  # the middle of the 4 blocks


def upper_rate(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / max(1, len(letters))


def is_upper(text: str) -> bool:
    """The attribute: more than half of the letters of a continuation are uppercase."""
    return upper_rate(text) > 0.5


def held_out_windows(
    text: str, n: int, length: int, rng: random.Random, *, min_letters: int
) -> list[str]:
    out = []
    while len(out) < n:
        i = rng.randrange(len(text) - length)
        w = text[i : i + length]
        letters = [c for c in w if c.isalpha()]
        if len(letters) >= min_letters and upper_rate(w) < 0.2:
            out.append(w)
    return out


def flip_rate(model, tok, prompts: list[str], upper: bool = True) -> float:
    seqs = [torch.tensor(tok(p)["input_ids"]) for p in prompts]
    gens = generate(model, seqs, max_new_tokens=NEW, batch_size=64)
    return sum(is_upper(tok.decode(g)) == upper for g in gens) / len(gens)


@torch.no_grad()
def casefold_ppl(model, tok, texts: list[str], edits=None) -> float:
    """Perplexity where a letter is predicted if either of its cases is: the fluency of the
    text's content, blind to the steered attribute."""
    vocab = tok.get_vocab()
    other = torch.arange(len(tok))
    for c, i in vocab.items():
        if len(c) == 1 and c.isalpha() and c.swapcase() in vocab:
            other[i] = vocab[c.swapcase()]
    nll, n = 0.0, 0
    ctx = intervene(model, edits) if edits else torch.no_grad()
    with ctx:
        for t in texts:
            ids = torch.tensor(tok(t)["input_ids"])[None]
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            tgt = ids[0, 1:]
            p = lp.exp()
            both = p.gather(1, tgt[:, None])[:, 0] + torch.where(
                other[tgt] != tgt,
                p.gather(1, other[tgt][:, None])[:, 0],
                torch.zeros(len(tgt), dtype=p.dtype),
            )
            nll -= float(both.log().sum())
            n += len(tgt)
    return float(torch.exp(torch.tensor(nll / n)))


def add_casefold(table, vecs, model, tok, neutral, base: float) -> None:
    """Add the case-insensitive perplexity ratio of every (site, coef) cell to a sweep table."""
    ratios = []
    for r in table.itertuples():
        with intervene(model, {r.site: vecs[r.site].edit(r.coef)}):
            ratios.append(casefold_ppl(model, tok, neutral) / base)
    table["casefold_ppl_ratio"] = ratios


def case_experiments() -> dict:
    model, tok = toys.load("case")
    _, test = toys.case_corpus()
    rng = random.Random(0)
    pairs = held_out_windows(test, N_PAIRS, 64, rng, min_letters=30)
    prompts = held_out_windows(test, N_PROMPTS, PROMPT_LEN, rng, min_letters=15)
    neutral_raw = held_out_windows(test, N_NEUTRAL, 128, rng, min_letters=40)
    neutral = [w if i % 2 == 0 else w.upper() for i, w in enumerate(neutral_raw)]
    upper_prompts = [p.upper() for p in prompts]
    res: dict = {
        "n_pairs": N_PAIRS,
        "n_prompts": N_PROMPTS,
        "prompt_len": PROMPT_LEN,
        "new_tokens": NEW,
    }

    t0 = time.perf_counter()
    vecs = caa(model, [w.upper() for w in pairs], pairs, "resid", tokenizer=tok, reduce="mean")
    res["caa_norms"] = {k: v.meta["norm"] for k, v in vecs.items()}
    base = fluency(model, neutral, tokenizer=tok)
    res["unsteered"] = {
        "upper_rate": flip_rate(model, tok, prompts),
        "lower_rate_from_upper_prompts": flip_rate(model, tok, upper_prompts, upper=False),
        "ppl": base["ppl"],
        "casefold_ppl": casefold_ppl(model, tok, neutral),
    }
    behaviour = lambda m: flip_rate(m, tok, prompts)  # noqa: E731
    table = sweep(model, vecs, CAA_COEFS, behaviour, neutral, tokenizer=tok, progress=print)
    add_casefold(table, vecs, model, tok, neutral, res["unsteered"]["casefold_ppl"])
    res["caa_sweep"] = table.drop(columns=["n_tokens"]).to_dict("records")
    # the headline setting: among cells flipping >= 95% of continuations, the lowest perplexity
    pos = table[table["coef"] > 0]
    ok = pos[pos["behaviour"] >= 0.95]
    best = (
        (ok if len(ok) else pos)
        .sort_values(["ppl_ratio", "behaviour"], ascending=[True, False])
        .iloc[0]
    )
    v = vecs[best["site"]]
    edits = {v.site: v.edit(best["coef"])}
    with intervene(model, edits):
        casefold = casefold_ppl(model, tok, neutral)
    neg = {v.site: v.edit(-best["coef"])}
    with intervene(model, neg):
        back = flip_rate(model, tok, upper_prompts, upper=False)
    res["caa_best"] = {
        "site": best["site"], "coef": float(best["coef"]), "upper_rate": float(best["behaviour"]),
        "ppl_ratio": float(best["ppl_ratio"]), "kl": float(best["kl"]),
        "casefold_ppl_ratio": casefold / res["unsteered"]["casefold_ppl"],
        "lower_rate_from_upper_prompts_with_minus_coef": back,
    }  # fmt: skip
    res["caa_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    maps = transport(model, pairs, [w.upper() for w in pairs], "mlp", tokenizer=tok, reduce="all")
    rows = []
    for lam in ACT_STRENGTHS:
        edits = {s: m.edit(lam) for s, m in maps.items()}
        with intervene(model, edits):
            rate = flip_rate(model, tok, prompts)
        f = fluency(model, neutral, tokenizer=tok, edits=edits, reference=base["reference"])
        with intervene(model, edits):
            cf = casefold_ppl(model, tok, neutral)
        rows.append({"strength": lam, "upper_rate": rate, "ppl_ratio": f["ppl"] / base["ppl"], "kl": f["kl"],
                     "casefold_ppl_ratio": cf / res["unsteered"]["casefold_ppl"]})  # fmt: skip
        print(
            f"transport all MLPs λ={lam}: upper rate {rate:.2f}, ppl ratio {rows[-1]['ppl_ratio']:.3f}"
        )
    res["transport_all_mlp"] = rows
    per_layer = sweep(
        model, maps, ACT_STRENGTHS[1:], behaviour, neutral, tokenizer=tok, progress=print
    )
    add_casefold(per_layer, maps, model, tok, neutral, res["unsteered"]["casefold_ppl"])
    res["transport_sweep"] = per_layer.drop(columns=["n_tokens"]).to_dict("records")
    res["transport_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dac_prompts = prompts[:12]
    rates, alphas = [], []
    for p in dac_prompts:
        out = dac_generate(
            model, torch.tensor(tok(p)["input_ids"]), {"upper": v}, max_new_tokens=NEW
        )
        rates.append(is_upper(tok.decode(out["tokens"])))
        alphas.append(out["alpha"]["upper"])
    mean_alpha = [sum(a[i] for a in alphas) / len(alphas) for i in range(NEW)]
    res["dac"] = {"site": v.site, "upper_rate": sum(rates) / len(rates), "n_prompts": len(dac_prompts),
                  "mean_alpha_per_step": mean_alpha, "alpha_max": 2.0}  # fmt: skip
    res["dac_seconds"] = time.perf_counter() - t0
    res["examples"] = []
    seqs = [torch.tensor(tok(p)["input_ids"]) for p in prompts[:3]]
    plain = generate(model, seqs, max_new_tokens=NEW)
    with intervene(model, {v.site: v.edit(best["coef"])}):
        steered = generate(model, seqs, max_new_tokens=NEW)
    for p, a, b in zip(prompts[:3], plain, steered, strict=True):
        res["examples"].append({"prompt": p, "unsteered": tok.decode(a), "caa": tok.decode(b)})
    return res


def fv_experiments() -> dict:
    model, tok = toys.load("fv")
    rng = random.Random(7)
    enc = lambda s: torch.tensor(tok(s)["input_ids"])  # noqa: E731
    res: dict = {}
    for task in toys.TASKS:
        icl = [toys.fv_prompt(task, 5, rng)[0] for _ in range(48)]
        corrupted = [toys.fv_prompt(task, 5, rng, shuffle=True) for _ in range(32)]
        fv, _ = function_vector(
            model, icl, [c[0] for c in corrupted], [c[1][0] for c in corrupted],
            "transformer.h.*.attn.c_proj:input", 4, FV_SITE, n_top=4, tokenizer=tok,
        )  # fmt: skip
        tests = [toys.fv_prompt(task, 0, rng) for _ in range(100)]
        icl_tests = [toys.fv_prompt(task, 5, rng) for _ in range(100)]

        def accuracy(pairs, edits=None):
            seqs = [enc(p) for p, _ in pairs]
            with intervene(model, edits) if edits else torch.no_grad():
                gens = generate(model, seqs, max_new_tokens=3, batch_size=100)
            full = sum(tok.decode(g) == a for g, (_, a) in zip(gens, pairs, strict=True)) / len(
                pairs
            )
            first = sum(
                tok.decode(g[:1]) == a[0] for g, (_, a) in zip(gens, pairs, strict=True)
            ) / len(pairs)
            return full, first

        icl_acc, zero_acc = accuracy(icl_tests), accuracy(tests)
        row = {"icl_5_shot": icl_acc[0], "zero_shot": zero_acc[0], "icl_5_shot_first": icl_acc[1],
               "zero_shot_first": zero_acc[1], "heads": fv.meta["heads"], "layers": {}, "layers_first": {}}  # fmt: skip
        for layer in range(4):
            site = f"transformer.h.{layer}"
            full, first = accuracy(tests, {site: add(fv.vector, 1.0, positions="last_prompt")})
            row["layers"][site], row["layers_first"][site] = full, first
        row["n_top"] = {4: row["layers"][FV_SITE]}
        for n_top in (2, 8):  # sensitivity to |A|, at the same layer
            other, _ = function_vector(
                model, icl, [c[0] for c in corrupted], [c[1][0] for c in corrupted],
                "transformer.h.*.attn.c_proj:input", 4, FV_SITE, n_top=n_top, tokenizer=tok,
            )  # fmt: skip
            row["n_top"][n_top] = accuracy(
                tests, {FV_SITE: add(other.vector, 1.0, positions="last_prompt")}
            )[0]
        row["zero_shot_with_fv"] = row["layers"][FV_SITE]
        row["zero_shot_with_fv_first"] = row["layers_first"][FV_SITE]
        res[task] = row
        print(
            f"{task}: ICL {row['icl_5_shot']:.2f}, zero-shot {row['zero_shot']:.2f}, with FV at {FV_SITE} {row['zero_shot_with_fv']:.2f}, by layer {row['layers']}"
        )
    return res


def figure(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(1, 5, figsize=(23, 4))
    sw = res["case"]["caa_sweep"]
    sites = list(dict.fromkeys(r["site"] for r in sw))
    coefs = sorted({r["coef"] for r in sw})
    for k, (col, title) in enumerate((("behaviour", "CAA: UPPERCASE rate of continuations"),
                                      ("ppl_ratio", "CAA: perplexity ratio, neutral text"),
                                      ("casefold_ppl_ratio", "CAA: case-insensitive perplexity ratio"))):  # fmt: skip
        grid = np.array(
            [
                [next(r[col] for r in sw if r["site"] == s and r["coef"] == c) for c in coefs]
                for s in sites
            ]
        )
        im = ax[k].imshow(np.log10(grid) if k else grid, aspect="auto", cmap="viridis")
        ax[k].set_xticks(range(len(coefs)), [f"{c:g}" for c in coefs])
        ax[k].set_yticks(range(len(sites)), [s.replace("transformer.", "") for s in sites])
        for i in range(len(sites)):
            for j in range(len(coefs)):
                ax[k].text(
                    j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8
                )
        ax[k].set_xlabel("coefficient")
        ax[k].set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax[k], label="log10" if k else None)
    t = res["case"]["transport_all_mlp"]
    lam = [r["strength"] for r in t]
    ax[3].plot(lam, [r["upper_rate"] for r in t], "o-", color="C0", label="UPPERCASE rate")
    ax[3].set_ylim(0, 1.05)
    ax[3].set_ylabel("UPPERCASE rate of continuations")
    twin = ax[3].twinx()
    twin.plot(lam, [r["ppl_ratio"] for r in t], "s--", color="C1", label="perplexity ratio")
    twin.plot(
        lam,
        [r["casefold_ppl_ratio"] for r in t],
        "^:",
        color="C2",
        label="case-insensitive ppl ratio",
    )
    twin.set_yscale("log")
    twin.set_ylabel("ratio to unsteered (log)")
    ax[3].set_xlabel("transport strength λ (all 4 MLPs)")
    ax[3].set_title("Linear-AcT", fontsize=10)
    lines = ax[3].get_lines() + twin.get_lines()
    ax[3].legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="center right")
    fv = res["fv"]
    tasks = list(fv)
    x = np.arange(len(tasks))
    for i, (key, label) in enumerate((("zero_shot", "zero-shot"), ("zero_shot_with_fv", f"zero-shot + FV ({FV_SITE})"),
                                      ("icl_5_shot", "5-shot ICL"))):  # fmt: skip
        ax[4].bar(x + (i - 1) * 0.27, [fv[t][key] for t in tasks], 0.27, label=label)
    ax[4].set_xticks(x, tasks)
    ax[4].set_ylim(0, 1.3)
    ax[4].set_ylabel("exact-match accuracy")
    ax[4].set_title("Function vectors", fontsize=10)
    ax[4].legend(fontsize=8, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(HERE / "steering.png", dpi=110)


def main(parts: list[str]) -> None:
    """Run the experiments named in ``parts`` (``case``, ``fv``; default both), update
    ``steering.json`` and redraw the figure."""
    torch.set_num_threads(1)
    out = HERE / "steering.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    for part in parts or ["case", "fv"]:
        t0 = time.perf_counter()
        res[part] = case_experiments() if part == "case" else fv_experiments()
        res[f"{part}_seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(res, indent=1))
    if "case" in res and "fv" in res:
        figure(res)
    if "case" in res:
        print(
            json.dumps(
                {k: res["case"][k] for k in ("unsteered", "caa_best", "transport_all_mlp", "dac")},
                indent=1,
            )[:4000]
        )


if __name__ == "__main__":
    main(sys.argv[1:])
