"""The session memory, evidence accumulation and the fleet view: perturbation chains are found
however they are ordered, spaced, diluted or split across client ids; re-captures under the
declared noise are not chains; snapshots of an older layout are refused."""

import struct

import numpy as np
import onnx
import pytest

from _detect_world import World
from edgeguard import Guard, Profile
from edgeguard.errors import DetectorError

DIM = 64
NOISE = 0.02  # the declared sensor noise, clipped to [0, 1]
STEP = 0.1    # T-RND's and JBDA's step: beyond the noise, inside the chain radius


class Digits:
    """scikit-learn's 8x8 digits in [0, 1] and a softmax-regression classifier over them."""

    def __init__(self):
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        d = load_digits()
        x = (d.data / 16.0).astype(np.float32)
        order = np.random.default_rng(0).permutation(len(x))
        self.train, self.calibration, self.pool = x[order[:600]], x[order[600:1000]], x[order[1000:]]
        clf = LogisticRegression(max_iter=500).fit(self.train, d.target[order[:600]])
        self.w, self.b = clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32)

    def predict(self, x):
        z = np.asarray(x, np.float32).reshape(-1, DIM) @ self.w + self.b
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def benign(self, n, rng):
        return self.pool[rng.integers(len(self.pool), size=n)]


@pytest.fixture(scope="module")
def world():
    return Digits()


def build(world, seed=0):
    return Profile.build(world.calibration, predict=world.predict, noise_sigma=NOISE, domain=(0.0, 1.0),
                         streams=40, stream_length=600, seed=seed)


@pytest.fixture(scope="module")
def profile(world):
    p = build(world)
    assert p.repeat_dist < p.near_dist and not p.calibration["chain_blind"]
    return p


def steps_of(parents, rng, per_parent):
    kids = [np.clip(p + STEP * np.sign(rng.normal(size=DIM)), 0, 1) for p in parents for _ in range(per_parent)]
    return np.array(kids, np.float32)


def send(guard, world, client, xs):
    out = []
    for i, x in enumerate(xs):
        cid = client(i) if callable(client) else client
        out.append(guard.observe(cid, x[None], [world.predict(x)]))
    return out


def first(decisions, attr="alert"):
    return next((i + 1 for i, d in enumerate(decisions) if getattr(d, attr) is not None), None)


def test_children_far_from_their_parents_are_still_steps(world, profile):
    rng = np.random.default_rng(1)
    parents = world.benign(12, rng)
    filler = world.pool[:400]  # more distinct queries than any fixed history held
    kids = steps_of(parents, rng, 5)
    guard = Guard(profile)
    head = send(guard, world, "thief", np.concatenate([parents, filler]))
    assert first(head) is None
    tail = send(guard, world, "thief", kids[rng.permutation(len(kids))])  # and in any order
    at = first(tail)
    assert at is not None and at <= len(kids)
    assert "chain" in [r.signal for r in tail[at - 1].alert.reasons]


def test_interleaved_benign_queries_slow_a_chain_but_do_not_hide_it(world, profile):
    rng = np.random.default_rng(3)
    parents = world.benign(10, rng)
    kids = steps_of(parents, rng, 8)
    benign = world.pool[np.random.default_rng(4).permutation(len(world.pool))[: 4 * len(kids)]]
    mixed = [parents]
    for i, k in enumerate(kids):
        mixed += [k[None], benign[4 * i : 4 * i + 4]]
    decisions = send(Guard(profile), world, "thief", np.concatenate(mixed))
    assert first(decisions) is not None


def test_re_captures_under_the_declared_noise_are_not_chains(world, profile):
    rng = np.random.default_rng(5)
    objects = world.benign(40, rng)
    pick = rng.integers(len(objects), size=600)
    caps = np.clip(objects[pick] + rng.normal(0, NOISE, (600, DIM)), 0, 1).astype(np.float32)
    decisions = send(Guard(profile), world, "camera", caps)
    assert first(decisions) is None
    assert decisions[-1].stats[2] < profile.thresholds[2] / 2


def test_a_chain_split_over_many_ids_is_seen_by_the_fleet_view(world, profile):
    rng = np.random.default_rng(6)
    parents = world.benign(10, rng)
    kids = steps_of(parents, rng, 10)
    xs = np.concatenate([parents, kids])
    events = []
    guard = Guard(profile, on_alert=events.append)
    decisions = send(guard, world, lambda i: f"sybil-{i % 40}", xs)
    assert first(decisions) is None  # no single id sends enough
    at = first(decisions, "fleet_alert")
    assert at is not None
    assert events[0].scope == "fleet" and events[0].to_dict()["scope"] == "fleet"
    assert "chain" in [r.signal for r in events[0].reasons]
    assert Guard(profile, fleet=False).fleet_state_bytes == 0


def test_fleet_views_merge_across_devices(world, profile):
    rng = np.random.default_rng(7)
    parents = world.benign(10, rng)
    kids = steps_of(parents, rng, 6)
    a, b = Guard(profile), Guard(profile)
    send(a, world, lambda i: f"a-{i}", parents)  # the parents went to device A
    b.merge_fleet(a.fleet_snapshot())
    decisions = send(b, world, lambda i: f"b-{i}", kids)  # their children to device B
    assert first(decisions, "fleet_alert") is not None
    with pytest.raises(DetectorError, match="different profile"):
        Guard(build(world, seed=3)).merge_fleet(a.fleet_snapshot())
    before = b.fleet_snapshot()
    with pytest.raises(DetectorError):
        b.merge_fleet(a.fleet_snapshot()[:-1], a.fleet_snapshot())
    assert b.fleet_snapshot() == before  # a bad snapshot merges nothing
    with pytest.raises(DetectorError, match="no fleet view"):
        Guard(profile, fleet=False).fleet_snapshot()


def test_state_is_fixed_and_snapshots_of_the_old_layout_are_refused(world, profile):
    guard = Guard(profile)
    size = guard.state_bytes_per_client
    send(guard, world, "c", world.benign(900, np.random.default_rng(8)))
    assert guard.state_bytes_per_client == size
    blob = guard.save_state()
    fresh = Guard(profile)
    fresh.restore_state(blob)
    assert fresh.save_state() == blob
    head = len(b"EGDGUARD") + 32
    old = blob[:head] + b"EGDS" + struct.pack("<I", 1) + blob[head + 8 :]
    with pytest.raises(DetectorError, match="version 1 is not supported"):
        fresh.restore_state(old)


def test_alert_reasons_are_the_signals_that_fired(world, profile):
    guard = Guard(profile)
    d = send(guard, world, "prober", world.benign(3, np.random.default_rng(9)) * 10.0)
    alert = next(x.alert for x in d if x.alert is not None)
    assert alert.reasons and all(r.ratio >= 1 for r in alert.reasons)


def test_large_inputs_are_pooled_into_a_small_profile(tmp_path, capsys):
    rng = np.random.default_rng(10)
    base = rng.random((12, 3, 24, 48)).astype(np.float32)
    benign = np.clip(base[rng.integers(12, size=160)] + rng.normal(0, 0.05, (160, 3, 24, 48)), 0, 1).astype(np.float32)
    p = Profile.build(benign.astype(np.float64), max_features=256, sketch_dim=16, streams=8, stream_length=100,
                      progress=True)
    assert "profile: [" in capsys.readouterr().err
    assert p.pool == (1, 4, 4) and p.pooled_dim == 3 * 6 * 12
    assert len(p.to_bytes()) < 4 * (p.pooled_dim * 17) + 4096
    assert Profile.from_bytes(p.to_bytes()).to_bytes() == p.to_bytes()
    guard = Guard(p)
    d = [guard.observe("u", x[None]) for x in benign[:50]]
    assert all(x.alert is None for x in d)


def test_build_takes_an_onnx_model_path(tmp_path):
    world = World()
    path = tmp_path / "m.onnx"
    onnx.save(world.onnx_model(), path)
    p = Profile.build(world.benign(200, np.random.default_rng(11)), predict=path, sketch_dim=12, streams=8,
                      stream_length=100)
    assert p.classes == 10 and p.input_name == "x" and p.output_kind == "probabilities"
