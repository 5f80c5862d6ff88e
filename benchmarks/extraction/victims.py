"""Victims served through onnxruntime, the data splits, and natural out-of-distribution images."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits, load_sample_images
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

INPUT = "input"
OUTPUT = "probabilities"


@dataclass(frozen=True)
class Splits:
    """Disjoint digit sets, scaled to [0, 1]: victim training, profile calibration, benign
    clients (also the fidelity test set, which no attacker ever queries) and the attacker's pool."""

    train_x: np.ndarray
    train_y: np.ndarray
    calibration: np.ndarray
    benign: np.ndarray
    benign_y: np.ndarray
    attacker: np.ndarray


def digit_splits(seed: int = 0) -> Splits:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    a, b, c = order[:700], order[700:1100], order[1100:1500]
    return Splits(x[a], digits.target[a], x[b], x[c], digits.target[c], x[order[1500:]])


def natural_patches(n: int, rng: np.random.Generator) -> np.ndarray:
    """8x8 grey patches of scikit-learn's bundled sample photos, in [0, 1]: natural, not digits."""
    images = [im.mean(axis=2) / 255.0 for im in load_sample_images().images]
    out = np.empty((n, 64), np.float32)
    for i in range(n):
        g = images[rng.integers(len(images))]
        s = 8 * int(rng.integers(2, 9))
        r, c = rng.integers(0, g.shape[0] - s), rng.integers(0, g.shape[1] - s)
        out[i] = g[r : r + s, c : c + s].reshape(8, s // 8, 8, s // 8).mean(axis=(1, 3)).ravel()
    return out


class Victim:
    """A classifier behind a real onnxruntime session: run(x) -> class probabilities."""

    def __init__(self, model: onnx.ModelProto):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.model_bytes = model.SerializeToString()
        self.session = ort.InferenceSession(self.model_bytes, opts, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: np.asarray(x, np.float32).reshape(-1, 64)})[0]

    def labels(self, x: np.ndarray) -> np.ndarray:
        return self.run(x).argmax(axis=1)


def _graph(layers: list[tuple[np.ndarray, np.ndarray]], name: str) -> onnx.ModelProto:
    nodes, inits, cur = [], [], INPUT
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]
        cur = f"z{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"h{i}"]))
            cur = f"h{i}"
    nodes.append(helper.make_node("Softmax", [cur], [OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mlp_victim(splits: Splits, hidden: int = 32, seed: int = 0) -> Victim:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((hidden,), max_iter=400, random_state=seed).fit(splits.train_x, splits.train_y)
    return Victim(_graph(list(zip(clf.coefs_, clf.intercepts_, strict=True)), "digits_mlp"))


def logreg_victim(splits: Splits) -> Victim:
    clf = LogisticRegression(max_iter=1000).fit(splits.train_x, splits.train_y)
    return Victim(_graph([(clf.coef_.T, clf.intercept_)], "digits_logreg"))
