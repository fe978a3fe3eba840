import os, sys, time
# logs, every 2 s, CPU seconds used by processes not descended from ROOT pid (foreign) and by ours
root = int(sys.argv[1]); out = open(sys.argv[2], "a", buffering=1)
tck = os.sysconf("SC_CLK_TCK")
def snap():
    d = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            s = open(f"/proc/{p}/stat").read()
        except OSError: continue
        r = s.rfind(")"); f = s[r+2:].split()
        d[int(p)] = (int(f[1]), (int(f[11]) + int(f[12])) / tck, s[s.find("(")+1:r])
    return d
def ours(pid, d):
    seen = 0
    while pid > 1 and seen < 50:
        if pid == root: return True
        pid = d.get(pid, (0,))[0]; seen += 1
    return False
prev = snap()
while True:
    time.sleep(2)
    cur = snap()
    fo = me = 0.0; top = []
    for pid, (pp, t, name) in cur.items():
        dt = t - prev.get(pid, (0, 0.0 if pid not in prev else t))[1] if pid in prev else t if False else (t - prev[pid][1] if pid in prev else 0.0)
        if dt <= 0: continue
        if ours(pid, cur): me += dt
        else: fo += dt; top.append((dt, name))
    top.sort(reverse=True)
    out.write(f"{time.time():.1f} {time.strftime('%H:%M:%S')} ours {me:.2f} foreign {fo:.2f} {top[:3]}\n")
    prev = cur
    if not os.path.exists(f"/proc/{root}") : break
