import json, sys, statistics as st, math
run, start_file, load_file = sys.argv[1], sys.argv[2], sys.argv[3]
thr = float(sys.argv[4]) if len(sys.argv) > 4 else 0.3
r = json.load(open(f"{run}/compare.json"))
t0 = float(open(start_file).read()) + 0.5  # parent startup ~0.5 s (imports)
load = [(float(l.split()[0]), float(l.split()[5])) for l in open(load_file)]
seq = r["sequence"]; idx = {"A": 0, "B": 0}; t = t0; win = []
for tag in seq:
    c = r["children"][tag][idx[tag]]; idx[tag] += 1
    ps = c["process_s"]; fo = [f for (ts, f) in load if t + 2 <= ts <= t + ps]
    win.append((tag, t, ps, st.fmean(fo) if fo else float("nan"), max(fo) if fo else float("nan")))
    t += ps
for w in win: print(f"{w[0]} start+{w[1]-t0:6.1f}s dur {w[2]:.1f}s foreign mean {w[3]:.2f} max {w[4]:.2f} cpu-s/2s")
nr = r["config"]["repeats"]
# round k: A child k, B child k
fa = {}; ia = {"A": 0, "B": 0}
for w in win:
    fa.setdefault(ia[w[0]], {})[w[0]] = w[3]; ia[w[0]] += 1
clean = [k for k in range(nr) if max(fa[k].values()) <= thr]
print("clean rounds (foreign mean <= %.2f cpu-s per 2 s in both children):" % thr, [k+1 for k in clean])
g = lambda xs: math.exp(st.fmean(math.log(x) for x in xs))
per = {}
for row in r["rows"]:
    a = [row["A_rounds"][k] for k in clean]; b = [row["B_rounds"][k] for k in clean]
    if not a: continue
    ratio = st.median(b) / st.median(a); pr = [y/x for x, y in zip(a, b)]
    per.setdefault(row["path"], []).append(ratio)
    print(f"{row['trace']:17s} {row['bound']:g} {row['path']:19s} all {row['B_over_A']:.3f}  clean {ratio:.3f} paired {' '.join(f'{x:.3f}' for x in pr)}")
for p, xs in per.items(): print(f"{p:19s} geomean(clean) {g(xs):.3f} min {min(xs):.3f} max {max(xs):.3f}")
