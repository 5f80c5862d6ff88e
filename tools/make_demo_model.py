"""Regenerates the bundled demo model (src/edgeguard/data/digits_mlp.onnx) and its sample inputs.

A 64-32-10 MLP trained on scikit-learn's bundled 8x8 digits (BSD-3-Clause data), about 11 KB.
Run: python tools/make_demo_model.py   (needs scikit-learn and onnx; not needed at run time)
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

OUT = Path(__file__).resolve().parent.parent / "src" / "edgeguard" / "data"


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=600, random_state=0).fit(x_train, y_train)
    print(f"test accuracy {mlp.score(x_test, y_test):.3f}")
    w1, w2 = (w.astype(np.float32) for w in mlp.coefs_)
    b1, b2 = (b.astype(np.float32) for b in mlp.intercepts_)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pixels", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["l0"]),
            helper.make_node("Add", ["l0", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeguard-demo")
    model.ir_version = 8
    model.doc_string = "64-32-10 MLP on scikit-learn's 8x8 digits, inputs scaled to [0, 1]"
    onnx.checker.check_model(model)
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(OUT / "digits_mlp.onnx"))
    np.savez(OUT / "digits_samples.npz", pixels=x_test[:8], labels=y_test[:8].astype(np.int64))


if __name__ == "__main__":
    main()
