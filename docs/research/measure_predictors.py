#!/usr/bin/env python3
"""Measure cross-round prediction / context ideas for a stateful ebgc codec on FL gradient traces.

Report: docs/research/stateful-predictors.md.  Usage:

    python docs/research/measure_predictors.py run TRACE.npz --out /tmp/res/NAME.json
    python docs/research/measure_predictors.py table /tmp/res/*.json      # markdown tables

Model of a stateful codec (what a decoder can do):
  * per stream (client) and tensor the decoder keeps its own RECONSTRUCTIONS of earlier rounds;
  * a predictor may use them plus side information sent in the message (its bytes are counted);
  * ab = eb * (max - min) of the current tensor (REL), codes q = round((x - pred) / 2ab),
    reconstruction = float32(pred + q * 2ab); an element that misses the bound is an outlier
    (counted 6 bytes, reconstructed exactly); the next round predicts from these reconstructions.
  * coded size of a code stream q: the real ebgc coder, len(ebgc.compress(2q, 1, "abs")) (the
    codes come back exactly; checked), i.e. ebgc's binarization + rANS with its local context.
  * context ideas (pred unchanged, only the entropy coder's context changes) are estimated with a
    model of ebgc's coder: symbol = magnitude class (exact below 16, 4 per octave above), raw bits
    = sign + low bits; cost = min(static: N*H(sym|ctx) + tables of 1 + 1.5 bytes per used symbol
    per used context, adaptive: Krichevsky-Trofimov code length per context) + raw bits + 40 B
    header.  The same model with ebgc's own local context ("L") is printed next to the real
    ebgc size so the estimate can be calibrated.
Tensors with <= 1024 elements are sent raw (4 bytes per value) by every method.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict

import numpy as np
from scipy.special import gammaln

import ebgc

try:
    import pysz
except ImportError:  # pragma: no cover
    pysz = None

SMALL = 1024
CHUNK = 1 << 16
HEADER = 40
LOCAL_ENDS = np.array([0, 1, 2, 3, 5, 7, 10, 14, 19, 27, 38, 54, 76, 108, 152])
# magnitude buckets in code units (multiples of 2ab); 16 buckets
MAG_EDGES = np.array([1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32])
LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------- data
def load_trace(path):
    """-> list of streams (one per client); a stream is a list of rounds [(name, array), ...]."""
    d = np.load(path)
    streams = defaultdict(lambda: defaultdict(list))
    for k in d.files:
        r, c, name = k.split("/", 2)
        streams[c][int(r[1:])].append((name, d[k]))
    return [[streams[c][r] for r in sorted(streams[c])] for c in sorted(streams)]


# --------------------------------------------------------------------------------- cost models
def symbolize(q):
    """ebgc's binarization: (symbol, number of raw bits incl. sign)."""
    m = np.abs(q).astype(np.int64)
    sym = m.copy()
    raw = (m != 0).astype(np.int64)
    big = m >= 16
    if big.any():
        mb = m[big]
        e = np.frexp(mb.astype(np.float64))[1].astype(np.int64) - 1
        sym[big] = 16 + 4 * (e - 4) + ((mb >> (e - 2)) & 3)
        raw[big] += e - 2
    return sym, raw


def local_ctx(sym):
    """ebgc's context: bucket of 2 * (sum of the previous 4 symbols in the chunk)."""
    n = sym.size
    pos = np.arange(n) % CHUNK
    s = np.zeros(n, np.int64)
    for k in range(1, 5):
        s[k:] += np.where(pos[k:] >= k, sym[:-k], 0)
    return np.searchsorted(LOCAL_ENDS, 2 * s, side="left")


def mag_bucket(v):
    return np.searchsorted(MAG_EDGES, v, side="right")


KSYM = 120   # ebgc's alphabet
NCTX = 256   # context ids are < 256 (16 local buckets x 16 magnitude buckets at most)


def kt_bits(counts, prior):
    """Sequential adaptive code length (Dirichlet(prior) / KT) of data with these per-context
    counts; order-independent.  counts, prior: (nctx, K)."""
    N = counts.sum(1)
    A = prior.sum(1)
    return float(-(gammaln(counts + prior).sum(1) - gammaln(prior).sum(1) + gammaln(A)
                   - gammaln(N + A)).sum() / LN2)


def ent_bits(counts, probs):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-np.nansum(np.where(counts > 0, counts * np.log2(probs), 0.0)))


def ctx_counts(ctx, sym):
    return np.bincount(ctx * KSYM + sym, minlength=NCTX * KSYM).reshape(NCTX, KSYM).astype(np.float64)


def ctx_bits(counts, prev=None, detail=None):
    """Bits to code symbols with these per-context counts.
    fresh = min(static: entropy + tables (1 + 1.5 B per used symbol per used context + 8 B map),
                adaptive KT from scratch over the symbols up to the tensor's max);
    with `prev` (decoder-known counts of the previous round, same tensor and context model) also
    reuse = static tables rebuilt from prev (no table bytes), carried = adaptive with prev as prior.
    The encoder takes the cheapest (+1 byte flag)."""
    used_ctx = counts.sum(1) > 0
    c = counts[used_ctx]
    K = int(np.nonzero(counts.sum(0))[0].max()) + 1
    c = c[:, :K]
    N = c.sum(1, keepdims=True)
    ideal = ent_bits(c, c / N)
    kt = kt_bits(c, np.full_like(c, 0.5))
    static = ideal + 8 * (used_ctx.sum() + 1.5 * (c > 0).sum() + 8)
    best = min(kt, static)
    if detail is not None:
        detail["ideal"] = ideal
        detail["fresh"] = best
    if prev is not None:
        pv = prev[used_ctx, :K]
        probs = (pv + 0.05) / (pv.sum(1, keepdims=True) + 0.05 * K)
        reuse = ent_bits(c, probs)
        carried = kt_bits(c, 0.5 + 0.5 * pv)
        best = min(best, reuse, carried) + 8
        if detail is not None:
            detail["reuse"] = reuse
            detail["carried"] = carried
    return best


def binary_bits(ctx, bit):
    """Adaptive (KT) cost of binary `bit` given contexts (for sign coding)."""
    if bit.size == 0:
        return 0.0
    _, ctx = np.unique(ctx, return_inverse=True)
    nctx = int(ctx.max()) + 1
    c = np.bincount(ctx * 2 + bit, minlength=2 * nctx).reshape(nctx, 2).astype(np.float64)
    N = c.sum(1)
    return float(-(gammaln(c + 0.5).sum(1) - 2 * gammaln(0.5) + gammaln(1.0) - gammaln(N + 1.0)).sum() / LN2)


def h0_bytes(q):
    _, c = np.unique(q, return_counts=True)
    p = c / q.size
    return float(-(c * np.log2(p)).sum() / 8)


def ebgc_code_bytes(q, check=False):
    assert np.abs(q).max(initial=0) < (1 << 22)
    f = q.astype(np.float32) * np.float32(2.0)
    blob = ebgc.compress(f, 1.0, mode="abs", threads=1)
    if check:
        y = ebgc.decompress(blob, threads=1)
        assert np.array_equal((y / 2).astype(np.int64), q)
    return len(blob)


# --------------------------------------------------------------------------------- predictors
def ls_fit(x, cols):
    """Least-squares coefficients (float32, as sent) of x on columns."""
    A = np.stack(cols, 1)
    coef, *_ = np.linalg.lstsq(A, x, rcond=None)
    return coef.astype(np.float32).astype(np.float64)


def ema_mag_pred(st, x, alpha):
    """Paper-style magnitude: EMA of |rec| z-scored, rescaled by current mean/std of |x| (8 B)."""
    m = st["ema"][alpha]
    mu, sd = m.mean(), m.std()
    z = (m - mu) / sd if sd > 0 else np.zeros_like(m)
    ax = np.abs(x)
    cm, cs = np.float32(ax.mean()), np.float32(ax.std())
    return np.maximum(cm + cs * z, 0.0), 8


def kernel_sign(x, shape):
    """Kernel-level sign consistency (conv OIHW, kh*kw >= 9): per kernel, predicted sign if >= 7/9
    of its values share a sign, else 0.  Side info = entropy of the 3-state map (bytes)."""
    if len(shape) != 4 or shape[2] * shape[3] < 9:
        return np.zeros_like(x), 0.0
    k = shape[2] * shape[3]
    xs = np.sign(x).reshape(-1, k)
    npos = (xs > 0).sum(1)
    nneg = (xs < 0).sum(1)
    thr = math.ceil(7 * k / 9)
    st = np.where(npos >= thr, 1.0, np.where(nneg >= thr, -1.0, 0.0))
    _, c = np.unique(st, return_counts=True)
    side = float(-(c * np.log2(c / st.size)).sum() / 8) + 2
    return np.repeat(st, k), side


def sign_prev(st):
    return np.sign(st["recs"][-1])


def sign_osc(st):
    s1 = np.sign(st["recs"][-1])
    if len(st["recs"]) < 2:
        return s1
    s2 = np.sign(st["recs"][-2])
    return np.where((s1 != 0) & (s1 == -s2), -s1, s1)


PREDICTORS = [
    "zero", "prev", "ls1", "lsch", "blend2", "blend3",
    "ema07_sprev", "ema30_sprev", "ema100_sprev", "ema07_sosc", "ema07_skern",
    "ema07_sprev_ls", "ema07_skern_ls", "skern_ls", "auto",
]
# "auto": per tensor and round the encoder tries these (own reconstruction chain) and sends the
# cheapest, +1 byte to say which
AUTO_CANDS = ["zero", "ls1", "lsch", "blend2", "blend3"]
EMA_ALPHAS = (0.07, 0.3, 1.0)
CTX_PRED = {"zero", "ls1", "lsch", "blend2", "ema07_skern_ls", "auto"}  # predictors that get the context grid
CTX_MODELS = ["L", "P", "E07", "E30", "C", "LP", "LE07", "LE30", "LC", "LE30+s", "L+s", "L+k", "L+ks",
              "LE30+ks"]


def predict(name, st, x, shape):
    """-> (pred float64 flat, side bytes).  st: decoder-side state of this tensor, or None."""
    n = x.size
    if st is None or name == "zero":
        return np.zeros(n), 0.0
    r1 = st["recs"][-1]
    if name == "prev":
        return r1.copy(), 0.0
    if name == "ls1":
        return ls_fit(x, [r1])[0] * r1, 4.0
    if name == "lsch":
        o = shape[0] if len(shape) >= 2 else 1
        X = x.reshape(o, -1)
        P = r1.reshape(o, -1)
        den = (P * P).sum(1)
        a = np.where(den > 0, (X * P).sum(1) / np.where(den > 0, den, 1), 0).astype(np.float32)
        return (a[:, None] * P).ravel(), 4.0 * o
    if name in ("blend2", "blend3"):
        k = min(int(name[-1]), len(st["recs"]))
        cols = st["recs"][-k:]
        c = ls_fit(x, cols)
        return sum(ci * col for ci, col in zip(c, cols)), 4.0 * k
    if name.startswith("ema") or name == "skern_ls":
        if name == "skern_ls":  # |prev rec| rescaled (alpha = 1), kernel sign
            mag, side = ema_mag_pred(st, x, 1.0)
        else:
            a = {"07": 0.07, "30": 0.3, "100": 1.0}[name.split("_")[0][3:]]
            mag, side = ema_mag_pred(st, x, a)
        if "_skern" in name or name == "skern_ls":
            s, sk = kernel_sign(x, shape)
            side += sk
        elif "_sosc" in name:
            s = sign_osc(st)
        else:
            s = sign_prev(st)
        pred = s * mag
        if name.endswith("_ls"):
            c = ls_fit(x, [pred])[0]
            pred = c * pred
            side += 4
        return pred, side
    raise KeyError(name)


def new_state(rec):
    return {"recs": [rec], "ema": {a: np.abs(rec) for a in EMA_ALPHAS}}


def push_state(st, rec):
    if st is None:
        return new_state(rec)
    st["recs"] = (st["recs"] + [rec])[-3:]
    for a in EMA_ALPHAS:
        st["ema"][a] = (1 - a) * st["ema"][a] + a * np.abs(rec)
    return st


def quantize(x, pred, ab):
    step = 2.0 * ab
    q = np.rint((x - pred) / step).astype(np.int64)
    rec = (pred + q * step).astype(np.float32)
    bad = ~(np.abs(rec.astype(np.float64) - x) <= ab * (1 - 2.0 ** -50))
    nbad = int(bad.sum())
    if nbad:
        q[bad] = 0
        rec[bad] = x[bad]
    return q, rec.astype(np.float64), nbad


def kernel_sign_ctx(q, shape):
    """Causal in-kernel sign context (conv OIHW with >= 9 taps): sum of the signs of the earlier
    codes of the same kernel, clipped to [-3, 3] -> 0..6; other tensors: 3 (no information)."""
    if len(shape) != 4 or shape[2] * shape[3] < 9:
        return np.full(q.size, 3, np.int64)
    s = np.sign(q).reshape(-1, shape[2] * shape[3])
    c = np.cumsum(s, 1) - s
    return (np.clip(c, -3, 3) + 3).ravel().astype(np.int64)


def context_costs(q, st, ab, shape, models, tabs):
    """Estimated bytes of code stream q under the context models (prediction unchanged).
    tabs: decoder-side per-model count tables of this tensor from the previous round (updated)."""
    sym, raw = symbolize(q)
    loc = local_ctx(sym)
    nz = q != 0
    out = {}
    if st is None:
        cnt = ctx_counts(loc, sym)
        det = {}
        base = (ctx_bits(cnt, None, det) + raw.sum()) / 8 + HEADER
        for m in models:
            out[m] = base
            out[m + "|stateful-tables"] = base
            out[m + "|ideal-no-tables"] = (det["ideal"] + raw.sum()) / 8 + HEADER
            tabs[m] = cnt
        return out
    step = 2.0 * ab
    r1 = st["recs"][-1]
    mags = {
        "P": mag_bucket(np.abs(r1) / step),
        "E07": mag_bucket(st["ema"][0.07] / step),
        "E30": mag_bucket(st["ema"][0.3] / step),
    }
    o = shape[0] if len(shape) >= 2 else 1
    chan = np.repeat(np.abs(r1).reshape(o, -1).mean(1) / step, q.size // o)
    mags["C"] = mag_bucket(chan)
    sprev = np.sign(r1).astype(np.int64) + 1  # 0,1,2
    kctx = kernel_sign_ctx(q, shape)
    for m in models:
        base, _, sgn = m.partition("+")
        if base == "L":
            ctx = loc
        elif base.startswith("L"):
            ctx = loc * 16 + mags[base[1:]]
        else:
            ctx = mags[base]
        cnt = ctx_counts(ctx, sym)
        det = {}
        best = ctx_bits(cnt, tabs.get(m), det)
        tabs[m] = cnt + 0.5 * tabs[m] if m in tabs else cnt
        extra = raw.sum()
        if sgn:  # code the sign with a context instead of as a raw bit
            if sgn == "s":    # previous round: (sign of prev rec, magnitude bucket of |prev rec|)
                sctx = sprev * 16 + mags["P"]
            elif sgn == "k":  # this round, causal: signs of the earlier codes of the same kernel
                sctx = kctx
            else:             # "ks": both (kernel running sign x prev-round sign)
                sctx = kctx * 3 + sprev
            extra += binary_bits(sctx[nz], (q[nz] > 0).astype(np.int64)) - nz.sum()
        out[m] = (det["fresh"] + extra) / 8 + HEADER
        out[m + "|stateful-tables"] = (best + extra) / 8 + HEADER
        out[m + "|ideal-no-tables"] = (det["ideal"] + extra) / 8 + HEADER
    return out


# --------------------------------------------------------------------------------- one trace
def sz3_bytes(x, ab, algo):
    c = pysz.szConfig(x.shape)
    c.errorBoundMode = pysz.szErrorBoundMode.ABS
    c.absErrorBound = ab
    c.cmprAlgo = algo
    buf, _ = pysz.sz.compress(np.ascontiguousarray(x), c)
    return int(buf.nbytes)


def run_trace(path, ebs, do_sz3=True, log=print, max_rounds=None):
    streams = load_trace(path)
    if max_rounds:
        streams = [s[:max_rounds] for s in streams]
    res = {"trace": os.path.basename(path), "streams": len(streams),
           "rounds": len(streams[0]), "params": int(sum(a.size for _, a in streams[0][0]))}
    sz_algos = {"sz3_interp": pysz.szAlgorithm.INTERP_LORENZO, "sz3_nopred": pysz.szAlgorithm.NOPRED,
                "sz3_lorreg": pysz.szAlgorithm.LORENZO_REG} if (do_sz3 and pysz) else {}
    # correlation of consecutive updates (raw data, independent of eb)
    corr, corr_abs, corr_w = [], [], []
    for rounds in streams:
        for t in range(1, len(rounds)):
            for (nm, a), (_, b) in zip(rounds[t], rounds[t - 1]):
                if a.size <= SMALL:
                    continue
                a64, b64 = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
                if a64.std() == 0 or b64.std() == 0:
                    continue
                corr.append(np.corrcoef(a64, b64)[0, 1])
                corr_abs.append(np.corrcoef(np.abs(a64), np.abs(b64))[0, 1])
                corr_w.append(a.size)
    w = np.array(corr_w, float)
    res["corr"] = {"pearson_wmean": float(np.dot(corr, w) / w.sum()),
                   "pearson_median": float(np.median(corr)),
                   "pearson_abs_wmean": float(np.dot(corr_abs, w) / w.sum())}
    for eb in ebs:
        t0 = time.time()
        tot = defaultdict(float)      # method -> bytes
        raw_total = 0
        state = {p: {} for p in PREDICTORS}  # predictor -> (stream, tensor) -> state
        tabstate = {}  # (predictor, (stream, tensor)) -> context model -> previous counts
        sign_stats = defaultdict(lambda: np.zeros(3))  # name -> [covered, correct, considered]
        outliers = defaultdict(int)
        auto_pick = defaultdict(int)
        corr_rec = []
        for si, rounds in enumerate(streams):
            for t, msg in enumerate(rounds):
                for nm, arr in msg:
                    raw_total += arr.nbytes
                    if arr.size <= SMALL:
                        tot["_small"] += arr.nbytes
                        continue
                    x = arr.ravel().astype(np.float64)
                    ab = eb * float(arr.max() - arr.min())
                    tot["ebgc_oneshot"] += len(ebgc.compress(arr, eb, mode="rel", threads=1))
                    for k, algo in sz_algos.items():
                        tot[k] += sz3_bytes(arr, float(np.float32(ab)), algo)
                    key = (si, nm)
                    if ab == 0:  # constant tensor: every method sends it exactly for ~nothing
                        for p in PREDICTORS:
                            tot["pred:" + p] += HEADER
                            state[p][key] = push_state(state[p].get(key), x.copy())
                        continue
                    # sign-prediction accuracy on the values that matter (|x| > ab)
                    st0 = state["zero"].get(key)
                    sig = np.abs(x) > ab
                    sx = np.sign(x[sig])
                    if st0 is not None:
                        ks, _ = kernel_sign(x, arr.shape)
                        sp = {"prev": sign_prev(st0), "osc": sign_osc(st0), "kernel(side info)": ks}
                        r1 = st0["recs"][-1]
                        o = arr.shape[0]
                        if arr.ndim == 4 and arr.shape[2] * arr.shape[3] >= 9:
                            kmaj = np.sign(r1.reshape(-1, arr.shape[2] * arr.shape[3]).sum(1))
                            sp["kernel-majority of prev"] = np.repeat(kmaj, arr.shape[2] * arr.shape[3])
                        for sn, s in sp.items():
                            s = s[sig]
                            cov = s != 0
                            sign_stats[sn] += [cov.sum(), (s[cov] == sx[cov]).sum(), s.size]
                        corr_rec.append((x.size, float(np.corrcoef(x, r1)[0, 1]) if r1.std() > 0 else 0.0))
                    for p in PREDICTORS:
                        st = state[p].get(key)
                        if p == "auto":
                            best = None
                            for cand in AUTO_CANDS:
                                pred, side = predict(cand, st, x, arr.shape)
                                q, rec, nbad = quantize(x, pred, ab)
                                b = ebgc_code_bytes(q) + side + 6 * nbad + 1
                                if best is None or b < best[0]:
                                    best = (b, q, rec, nbad, side + 1, cand)
                            b, q, rec, nbad, side, cand = best
                            auto_pick[cand] += 1
                        else:
                            pred, side = predict(p, st, x, arr.shape)
                            q, rec, nbad = quantize(x, pred, ab)
                            b = ebgc_code_bytes(q, check=(t < 1 and p == "zero")) + side + 6 * nbad
                        outliers[p] += nbad
                        tot["pred:" + p] += b
                        tot["h0:" + p] += h0_bytes(q) + side + 6 * nbad + HEADER
                        if p in CTX_PRED:
                            tb = tabstate.setdefault((p, key), {})
                            for m, v in context_costs(q, st, ab, arr.shape, CTX_MODELS, tb).items():
                                tot[f"ctx:{p}:{m}"] += v + side + 6 * nbad
                        state[p][key] = push_state(st, rec)
        small = tot.pop("_small", 0.0)
        ratios = {k: raw_total / (v + small) for k, v in tot.items()}
        if sz_algos:
            ratios["sz3_best"] = max(ratios[k] for k in sz_algos)
        res[f"eb={eb:g}"] = {
            "ratios": ratios,
            "sign": {k: {"coverage": v[0] / max(v[2], 1), "accuracy": v[1] / max(v[0], 1)}
                     for k, v in sign_stats.items()},
            "outliers": dict(outliers),
            "auto_pick": dict(auto_pick),
            "pearson_x_vs_prev_rec": float(sum(n * c for n, c in corr_rec) / max(sum(n for n, _ in corr_rec), 1)),
            "seconds": time.time() - t0,
        }
        log(f"{res['trace']} eb={eb:g}: {time.time() - t0:.0f}s  oneshot {ratios['ebgc_oneshot']:.3f}"
            f"  sz3best {ratios.get('sz3_best', float('nan')):.3f}")
    return res


# --------------------------------------------------------------------------------- tables
def gmean(v):
    return float(np.exp(np.mean(np.log(v))))


def tables(paths, rows=None):
    R = [json.load(open(p)) for p in sorted(paths)]
    cols = []
    for r in R:
        for k in r:
            if k.startswith("eb="):
                cols.append((r, k))
    hdr = "| method | " + " | ".join(f"{r['trace'].replace('.npz', '')} {k[3:]}" for r, k in cols) + \
          " | gmean / SZ3-best | gmean / one-shot |"
    sep = "|" + "---|" * (len(cols) + 3)
    methods = rows or list(cols[0][0][cols[0][1]]["ratios"].keys())
    lines = [hdr, sep]
    for m in methods:
        vals = [r[k]["ratios"][m] for r, k in cols]
        g_sz = gmean([v / r[k]["ratios"].get("sz3_best", float("nan")) for v, (r, k) in zip(vals, cols)])
        g_os = gmean([v / r[k]["ratios"]["ebgc_oneshot"] for v, (r, k) in zip(vals, cols)])
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {g_sz:.3f} | {g_os:.3f} |")
    print("\n".join(lines))
    print()
    print("| trace | params | rounds | Pearson(t,t-1) weighted | median | Pearson(|t|,|t-1|) |")
    print("|---|---|---|---|---|---|")
    for r in R:
        c = r["corr"]
        print(f"| {r['trace']} | {r['params']} | {r['rounds']} | {c['pearson_wmean']:.3f} | "
              f"{c['pearson_median']:.3f} | {c['pearson_abs_wmean']:.3f} |")
    print()
    print("| trace eb | sign predictor | coverage | accuracy |")
    print("|---|---|---|---|")
    for r, k in cols:
        for sn, v in r[k]["sign"].items():
            print(f"| {r['trace']} {k[3:]} | {sn} | {v['coverage']:.3f} | {v['accuracy']:.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("run")
    a.add_argument("trace")
    a.add_argument("--out", required=True)
    a.add_argument("--eb", type=float, nargs="+", default=[1e-2, 1e-3])
    a.add_argument("--no-sz3", action="store_true")
    a.add_argument("--max-rounds", type=int)
    b = sub.add_parser("table")
    b.add_argument("json", nargs="+")
    b.add_argument("--rows", nargs="+", help="methods to list (default: all)")
    args = ap.parse_args()
    if args.cmd == "run":
        res = run_trace(args.trace, args.eb, do_sz3=not args.no_sz3, max_rounds=args.max_rounds, log=lambda s: print(s, file=sys.stderr))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    else:
        tables(args.json, args.rows)


if __name__ == "__main__":
    main()
