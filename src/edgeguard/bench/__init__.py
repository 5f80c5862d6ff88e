"""edgeguard's benchmarks: the platform fingerprint, the crypto throughput suite and reports.

Mounted into the main CLI as ``edgeguard bench`` through :func:`edgeguard.bench.cli.add_bench_parser`;
also runnable as ``python -m edgeguard.bench``.
"""
