"""Benchmarks: `make bench` (python -m benchmarks) runs every bench_*.py and prints figures.

The figures are quoted for one core. numpy's OpenBLAS starts its worker threads when numpy
is first imported, so the limit is set here, before any benchmark module imports numpy:
importing one benchmark on its own (``import benchmarks.bench_loop``) runs it as `make bench`
does. Without it, the twin's flicker noise (a batched matrix product every ~400 s of
simulated time) woke a worker thread that then spun on the second core: the loop's CPU time
came out above its wall-clock time, and the main thread lost time to it.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # an explicit setting in the environment wins
