"""Constants of the SAE tests: the corpus and site of the tiny atlas."""

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Neurons in the mlp fire on some tokens and stay quiet on others.",
    "def f(x): return x + 1  # a tiny python function",
    "Attention is all you need, said the paper, and everybody agreed.",
    "An atlas maps every unit of the network.",
    "Short one.",
    "Numbers 1 2 3 4 5 6 7 8 9 10 and more numbers 11 12 13.",
    "The end of the corpus is near; the fox sleeps.",
]
SITE = "encoder.layer.1.output.dense:input"
