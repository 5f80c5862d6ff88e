#!/usr/bin/env python3
"""The crypto throughput benchmark: seal/open of the native chunked AEAD core next to
`openssl speed`, written as a JSON result document (schema: src/edgeguard/bench/schema.json).

    python benchmarks/crypto_throughput.py [--quick | --full] [--output results/crypto_throughput.json]

Every option of `edgeguard bench` is accepted; this script only changes the default output file.
It runs the same code as `edgeguard bench` (edgeguard.bench.crypto).
"""

from __future__ import annotations

import sys

from edgeguard.bench.__main__ import main

DEFAULT_OUTPUT = "results/crypto_throughput.json"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a in ("-o", "--output") or a.startswith("--output=") for a in argv):
        argv += ["--output", DEFAULT_OUTPUT]
    sys.exit(main(argv))
