"""A small synthetic world for detector tests: structured benign inputs and a linear classifier.

Ten sparse prototypes in [0, 1]^32; a benign input is a prototype at a random intensity plus
noise. The classifier scores inputs against the prototypes, as numpy or as an ONNX model.
"""

from __future__ import annotations

import numpy as np

DIM = 32


class World:
    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.protos = (rng.random((10, DIM)) < 0.35).astype(np.float32)
        self.weights = (4.0 * (self.protos - self.protos.mean(axis=0))).T.astype(np.float32)

    def benign(self, n: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.integers(10, size=n)
        x = self.protos[labels] * rng.uniform(0.6, 1.0, (n, 1)) + rng.normal(0, 0.1, (n, DIM))
        return np.clip(x, 0, 1).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float32).reshape(-1, DIM) @ self.weights
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def onnx_model(self):
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Softmax", ["z"], ["p"], axis=1)],
            "world", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, DIM])],
            [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 10])],
            [numpy_helper.from_array(self.weights, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model


def build_profile(world: World, **kw):
    from edgeguard import Profile

    rng = np.random.default_rng(1)
    args = dict(predict=world.predict, streams=16, stream_length=300, sketch_dim=12, seed=0)
    args.update(kw)
    return Profile.build(world.benign(400, rng), **args)
