#!/usr/bin/env python3
"""The nibabel + numpy side of `cargo bench --bench ingest`.

Reads one NIfTI file the way a Python pipeline would and prints the median
wall time (seconds) of each step as JSON:
  load       nib.load(f).get_fdata(dtype=float32)            (scaling applied)
  canonical  as_closest_canonical + contiguous float32 array  (what the store needs)
"""
import json
import statistics
import sys
import time

import nibabel as nib
import numpy as np


def median_time(fn, repeat):
    fn()  # warm-up: page cache, imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load(path):
    return nib.load(path).get_fdata(dtype=np.float32)


def canonical(path):
    img = nib.as_closest_canonical(nib.load(path))
    return np.ascontiguousarray(img.get_fdata(dtype=np.float32))


def main():
    path, repeat = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    a = load(path)
    result = {
        "shape": list(a.shape),
        "checksum": float(np.float64(a.sum())),
        "load": median_time(lambda: load(path), repeat),
        "canonical": median_time(lambda: canonical(path), repeat),
        "nibabel": nib.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
