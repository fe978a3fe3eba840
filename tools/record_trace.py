#!/usr/bin/env python3
"""Record federated-learning traces: the sample shipped inside the package
(python/ebgc/data/sample.npz) and the larger traces the README's results are measured on.

What it is
    Real federated-learning model updates: FedAvg with 4 clients on scikit-learn's bundled
    handwritten digits (``sklearn.datasets.load_digits``: 1797 8x8 images, no download),
    upsampled to 16x16 and split non-IID across the clients with a Dirichlet(alpha=0.5) draw per
    class.  The model is a small residual CNN (``--model resnet``: width 16, three stages of two
    basic blocks, ~175k parameters; ``--width 32``: ~700k) or a VGG-style CNN (``--model vgg``:
    six 3x3 conv layers of 32-128 channels and two linear layers, 512 x 512 and 10 x 512, ~555k
    parameters).  Every round each client starts from the global model, runs a few local epochs of
    SGD with momentum, and sends ``update = local - global`` (``--payload weights``: its local
    weights, what APPFL clients send by default; consecutive rounds then correlate closely); the
    server averages the local models weighted by client data size.  The updates of clients
    0..RECORD-1 are recorded.

File format
    One .npz with keys ``r{round:03d}/c{client}/{param_name}`` -> float32 arrays in their natural
    shapes (conv weights OIHW, linear weights (out, in), BN weight/bias 1-D).  Only trainable
    parameters are recorded (no BN running statistics).  Group the keys by their ``r???/c?``
    prefix to get one message (one client's whole-model update for one round).

How the shipped file was made (CPU, fixed seed, ~30 s on 2 cores)
    pip install torch==2.13.0 scikit-learn numpy
    python tools/record_trace.py --out python/ebgc/data/sample.npz

    defaults: --model resnet --rounds 4 --clients 4 --record 1 --width 16 --local-epochs 2
              --lr 0.05 --batch 32 --alpha 0.5 --seed 1234 --payload update

The README's traces (a few minutes each)
    python tools/record_trace.py --model resnet --width 32 --rounds 20 --out traces/resnet.npz
    python tools/record_trace.py --model vgg --rounds 20 --out traces/vgg.npz
    python tools/record_trace.py --model vgg --rounds 20 --payload weights --out traces/vgg-weights.npz

torch is needed only to *record* the sample; the ebgc package and CLI read the committed .npz with
numpy alone.  Torch's CPU kernels are deterministic for this model with one thread (the script
sets ``torch.set_num_threads(1)``), so the same torch version gives the same bytes.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _build_model(width: int, classes: int = 10):
    import torch.nn as nn

    class Basic(nn.Module):
        """conv3x3-BN-ReLU-conv3x3-BN plus identity (or 1x1 projection) shortcut."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(
                    nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(cout),
                )
            self.act = nn.ReLU()

        def forward(self, x):
            h = self.act(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            skip = x if self.proj is None else self.proj(x)
            return self.act(h + skip)

    class SmallResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.head = nn.Sequential(
                nn.Conv2d(1, w, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
            )
            stages = []
            cin = w
            for i, cout in enumerate((w, 2 * w, 4 * w)):
                stride = 1 if i == 0 else 2
                stages.append(nn.Sequential(Basic(cin, cout, stride), Basic(cout, cout, 1)))
                cin = cout
            self.stages = nn.Sequential(*stages)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(cin, classes)

        def forward(self, x):
            h = self.stages(self.head(x))
            return self.classifier(self.pool(h).flatten(1))

    return SmallResNet()


def _build_vgg(classes: int = 10):
    """Six 3x3 conv layers (32, 32, 64, 64, 128, 128 channels, BN + ReLU, max-pooled after every
    second one: 16x16 -> 2x2) and two linear layers (512 -> 512 -> classes)."""
    import torch.nn as nn

    layers, cin = [], 1
    for i, cout in enumerate((32, 32, 64, 64, 128, 128)):
        layers += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        if i % 2:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(nn.Sequential(*layers), nn.Flatten(), nn.Linear(128 * 2 * 2, 512), nn.ReLU(),
                         nn.Linear(512, classes))


def build_model(name: str, width: int):
    return _build_model(width) if name == "resnet" else _build_vgg()


def _digits_16x16(seed: int):
    """Digits as (N, 1, 16, 16) float32 tensors, standardized, in a seeded random order."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32)).unsqueeze(1)  # (N, 1, 8, 8), 0..16
    images = F.interpolate(images / 16.0, size=(16, 16), mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = np.random.default_rng(seed).permutation(len(labels))
    return images[order], labels[order]


def _dirichlet_clients(labels: np.ndarray, clients: int, alpha: float, seed: int) -> list:
    """Per class, share its samples among the clients in Dirichlet(alpha) proportions."""
    rng = np.random.default_rng(seed + 1)
    owned: list[list[int]] = [[] for _ in range(clients)]
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        shares = rng.dirichlet(np.full(clients, alpha))
        bounds = np.round(np.cumsum(shares) * len(members)).astype(int)
        start = 0
        for k in range(clients):
            owned[k].extend(members[start:bounds[k]].tolist())
            start = bounds[k]
    return [np.array(sorted(ix), dtype=np.int64) for ix in owned]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output .npz (e.g. python/ebgc/data/sample.npz)")
    p.add_argument("--model", choices=("resnet", "vgg"), default="resnet")
    p.add_argument("--payload", choices=("update", "weights"), default="update",
                   help="what a client sends: its update (local - global) or its local weights")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--record", type=int, default=1, help="record clients 0..RECORD-1")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (non-IID strength)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--holdout", type=int, default=300, help="test images kept out of training")
    a = p.parse_args(argv)

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True)

    x, y = _digits_16x16(a.seed)
    x_test, y_test = x[: a.holdout], y[: a.holdout]
    x_train, y_train = x[a.holdout:], y[a.holdout:]
    parts = _dirichlet_clients(y_train.numpy(), a.clients, a.alpha, a.seed)
    for k, ix in enumerate(parts):
        hist = np.bincount(y_train.numpy()[ix], minlength=10)
        print(f"client {k}: {len(ix):4d} images, per class {hist.tolist()}")

    global_model = build_model(a.model, a.width)
    param_names = [n for n, _ in global_model.named_parameters()]
    n_params = sum(p.numel() for p in global_model.parameters())
    print(f"model: {n_params:,} parameters in {len(param_names)} tensors")

    gen = torch.Generator().manual_seed(a.seed + 2)
    recorded: dict[str, np.ndarray] = {}
    for rnd in range(a.rounds):
        start = {k: v.detach().clone() for k, v in global_model.state_dict().items()}
        results = []
        for cid, ix in enumerate(parts):
            local = build_model(a.model, a.width)
            local.load_state_dict(start)
            local.train()
            opt = torch.optim.SGD(local.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
            idx = torch.from_numpy(ix)
            for _ in range(a.local_epochs):
                shuffled = idx[torch.randperm(len(idx), generator=gen)]
                for b in range(0, len(shuffled), a.batch):
                    batch = shuffled[b:b + a.batch]
                    if len(batch) < 2:  # BatchNorm needs more than one sample
                        continue
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(local(x_train[batch]), y_train[batch])
                    loss.backward()
                    opt.step()
            state = {k: v.detach().clone() for k, v in local.state_dict().items()}
            results.append((len(ix), state))
            if cid < a.record:
                for name in param_names:
                    sent = state[name] if a.payload == "weights" else state[name] - start[name]
                    recorded[f"r{rnd:03d}/c{cid}/{name}"] = np.ascontiguousarray(sent.numpy().astype(np.float32))
        # FedAvg: data-size-weighted mean of every state entry (BN running stats included).
        total = float(sum(n for n, _ in results))
        merged = {}
        for key, ref in start.items():
            acc = sum((n / total) * s[key].double() for n, s in results)
            merged[key] = acc.to(ref.dtype)
        global_model.load_state_dict(merged)
        global_model.eval()
        with torch.no_grad():
            acc = (global_model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"round {rnd}: global test accuracy {acc:.3f}", flush=True)

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    np.savez_compressed(a.out, **recorded)
    raw = sum(v.nbytes for v in recorded.values())
    print(f"wrote {a.out}: {len(recorded)} arrays, {raw / 1e6:.2f} MB raw, "
          f"{os.path.getsize(a.out) / 1e6:.2f} MB on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
