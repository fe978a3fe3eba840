"""Tooling around the library: the benchmark (``ebgc bench``) against SZ3, ZFP and fp16 on gradient
traces, and the federated-learning demo (``ebgc demo``). Not needed to use ebgc."""
