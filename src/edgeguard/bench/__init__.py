"""edgeguard's benchmarks: the platform fingerprint, the crypto, load, inference and detector
suites, the versioned result document and its report.

Mounted into the main CLI as ``edgeguard bench`` through :func:`edgeguard.cli.bench.add_bench_parser`;
also runnable as ``python -m edgeguard.bench``.
"""
