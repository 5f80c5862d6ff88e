"""Class-score functions over an ONNX model file, for calibration (onnxruntime is imported only here)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..errors import ProfileError


def onnx_predict(
    path: str | os.PathLike[str], output_index: int = 0, batch: int = 64
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A batch predict function over the ONNX model at ``path`` (its class-score output
    ``output_index``) and the model's input name. Inputs are fed ``batch`` rows at a time (one at a
    time when the model's batch dimension is fixed at 1), so calibrating on a large model never
    holds more than one batch of activations.

    Raises:
        ProfileError: onnxruntime cannot load the model, it has more than one input, or no output
            ``output_index``.
    """
    import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable models
        raise ProfileError(f"cannot load model {os.fspath(path)}: {e}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ProfileError("the model must have exactly one input to profile")
    name = inputs[0].name
    if not 0 <= output_index < len(session.get_outputs()):
        raise ProfileError(f"the model has no output {output_index}")
    step = 1 if (inputs[0].shape and inputs[0].shape[0] == 1) else max(1, batch)

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        try:
            parts = [session.run(None, {name: x[i : i + step]})[output_index] for i in range(0, len(x), step)]
        except Exception as e:  # wrong input shape for this model, in onnxruntime's own error types
            raise ProfileError(f"the model refused the calibration inputs: {e}") from None
        return np.concatenate(parts).reshape(len(x), -1)

    return predict, name
