"""Per-kernel profile of one GPU compress and decompress, for Nsight Compute:

    ncu --profile-from-start off --metrics gpu__time_duration.sum,... python3 bench/gpu_profile.py TRACE.npz [MiB] [CODER]

The trace's first message is tiled to MiB (default 256) of float32 on the device and coded with
CODER (default auto: the context coder's lanes; bitpack: fast mode); one untimed
compress/decompress warms up (module load, workspace growth), then the profiler is switched on for
one more of each, so that ncu sees only the steady-state kernels.
"""
import sys

import numpy as np
import torch

import ebgc
from ebgc.tools.bench import load_trace


def main() -> None:
    trace = load_trace(sys.argv[1])
    mib = float(sys.argv[2]) if len(sys.argv) > 2 else 256.0
    coder = sys.argv[3] if len(sys.argv) > 3 else "auto"
    pool = np.concatenate([a.astype(np.float32).ravel() for _, a in trace.messages[0][1]])
    n = int(mib * (1 << 20)) // 4
    x = torch.from_numpy(np.resize(pool, n)).cuda()
    out = torch.empty_like(x)
    for profiled in (False, True):
        if profiled:
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
        blob = ebgc.compress(x, 1e-2, coder=coder)
        ebgc.decompress(blob, out=out)
        torch.cuda.synchronize()
        if profiled:
            torch.cuda.profiler.stop()
    print(f"{n} values, {coder}, ratio {x.numel() * 4 / len(blob):.2f}")


if __name__ == "__main__":
    main()
