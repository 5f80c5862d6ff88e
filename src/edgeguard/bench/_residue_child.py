"""The process a residue scan looks into (run by :mod:`edgeguard.bench.residue`).

    python -m edgeguard.bench._residue_child '{"sealed": ..., "identity": ..., "trust": ...,
        "hygiene": "strict", "runs": 1, "batch": 4, "threads": 1, "shapes": {}}'

Loads the sealed model, runs it ``runs`` times on random inputs, then prints ``{"stage": "open"}``
and waits for a line on stdin; closes the session, drops every reference and collects garbage,
prints ``{"stage": "closed"}`` and waits again; prints ``{"stage": "done"}`` and exits.
It never sees the plaintext model: only the sealed file and the keys.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import threading
from typing import Any


def _stage(name: str, **extra: Any) -> None:
    print(json.dumps({"stage": name, **extra}), flush=True)
    sys.stdin.readline()


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("mallopt_perturb"):  # experiments: glibc's perturb byte, set before anything loads
        ctypes.CDLL(None).mallopt(-6, int(spec["mallopt_perturb"]))
    import onnxruntime as ort

    import edgeguard
    from edgeguard.bench.workloads import sample_inputs

    if "stack_wipe_bytes" in spec:  # experiments: how deep the per-run wipe must reach
        import edgeguard.runtime

        edgeguard.runtime.STACK_WIPE_BYTES = int(spec["stack_wipe_bytes"])
    if spec.get("harden"):  # {"lock_memory": bool, "wipe_freed": bool}
        edgeguard.harden_process(**spec["harden"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(spec.get("threads", 1))
    if spec.get("arena") is False:
        options.enable_cpu_mem_arena = False
    for key, value in spec.get("config", {}).items():
        options.add_session_config_entry(key, str(value))
    session = edgeguard.InferenceSession(spec["sealed"], options, providers=["CPUExecutionProvider"],
                                         identity=spec["identity"], trust=spec["trust"],
                                         hygiene=spec.get("hygiene", "strict"), **spec.get("kwargs", {}))
    feeds = sample_inputs(session.get_inputs(), int(spec.get("batch", 1)), shapes=spec.get("shapes") or None)
    for _ in range(int(spec.get("runs", 0))):
        session.run(None, feeds)
    if spec.get("thread_runs"):  # a run from a second Python thread too
        worker = threading.Thread(target=session.run, args=(None, feeds))
        worker.start()
        worker.join()
    _stage("open")
    session.close()
    del session, options
    gc.collect()
    _stage("closed")
    print(json.dumps({"stage": "done"}), flush=True)


if __name__ == "__main__":
    main()
