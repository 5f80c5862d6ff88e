#!/usr/bin/env python3
"""Copies the Wycheproof AEAD groups that apply to edgeguard's core (256-bit key, 96-bit nonce,
128-bit tag) from an upstream testvectors_v1 checkout into this directory, unchanged otherwise.

    python tests/vectors/wycheproof/extract.py /path/to/wycheproof/testvectors_v1
"""

import json
import sys
from pathlib import Path

FILES = ("aes_gcm_test.json", "chacha20_poly1305_test.json")


def main(src: Path, dst: Path) -> None:
    for name in FILES:
        data = json.loads((src / name).read_text())
        data["testGroups"] = [
            g for g in data["testGroups"] if (g["keySize"], g["ivSize"], g["tagSize"]) == (256, 96, 128)
        ]
        data["numberOfTests"] = sum(len(g["tests"]) for g in data["testGroups"])
        (dst / name).write_text(json.dumps(data, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
