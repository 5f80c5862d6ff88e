import dataclasses
import threading

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _detect_world import DIM, World, build_profile
from edgeguard import Action, Decision, Guard, Policy
from edgeguard.detect import ATLAS_TECHNIQUES, MAX_CLIENT_ID_BYTES
from edgeguard.errors import DetectorArgumentError, DetectorError, EdgeguardError, ProfileError


@pytest.fixture(scope="module")
def world():
    return World()


@pytest.fixture(scope="module")
def profile(world):
    return build_profile(world)


def feed(guard, world, client, xs):
    """Sends rows one query at a time; returns the decisions."""
    return [guard.observe(client, x[None], [world.predict(x)]) for x in xs]


def first_alert(decisions):
    return next((i + 1 for i, d in enumerate(decisions) if d.alert is not None), None)


def test_benign_clients_do_not_alert(world, profile):
    guard = Guard(profile)
    rng = np.random.default_rng(11)
    for c in range(10):
        assert first_alert(feed(guard, world, f"user-{c}", world.benign(200, rng))) is None


def test_out_of_domain_queries_alert_fast_with_atlas_ids(world, profile):
    events = []
    guard = Guard(profile, on_alert=events.append)
    x = world.benign(20, np.random.default_rng(2)) * 10.0  # a critical-point search leaves the range
    decisions = feed(guard, world, "prober", x)
    assert first_alert(decisions) == 2  # one stray out-of-range query is tolerated
    assert len(events) == 1 and events[0].client_id == "prober" and events[0].query_index == 2
    assert events[0].techniques == ATLAS_TECHNIQUES == ("AML.T0024.002", "AML.T0040")
    assert events[0].reasons[0].signal == "invalid"
    assert events[0].to_dict()["mitre_atlas"] == ["AML.T0024.002", "AML.T0040"]
    assert decisions[-1].action == Action.ALERT  # alert-only policy leaves answers alone


def test_off_profile_inputs_alert_but_noisy_benign_do_not(world, profile):
    guard = Guard(profile)
    rng = np.random.default_rng(3)
    uniform = rng.random((30, DIM)).astype(np.float32)
    at = first_alert(feed(guard, world, "knockoff", uniform))
    assert at is not None and at <= 10
    noisy = (world.benign(300, rng) + rng.normal(0, 0.05, (300, DIM))).astype(np.float32)
    assert first_alert(feed(guard, world, "noisy-camera", noisy)) is None


def test_perturbation_chains_alert_and_exact_resubmits_do_not(world):
    profile = build_profile(world, noise_sigma=0.005)  # steps of 0.03 lie between noise and the chain radius
    assert profile.repeat_dist < profile.near_dist
    guard = Guard(profile)
    rng = np.random.default_rng(4)
    walk = list(world.benign(5, rng))
    chain = []
    for i in range(80):  # five random walks of sign steps, T-RND style
        walk[i % 5] = np.clip(walk[i % 5] + 0.03 * np.sign(rng.normal(size=DIM)), 0, 1).astype(np.float32)
        chain.append(walk[i % 5])
    decisions = feed(guard, world, "t-rnd", np.array(chain))
    at = first_alert(decisions)
    assert at is not None and at <= 80
    assert [r.signal for r in decisions[at - 1].alert.reasons] == ["chain"]
    repeats = feed(guard, world, "retry-happy", np.array(walk * 60))
    assert first_alert(repeats) is None
    assert repeats[-1].stats[2] == 0.0  # exact resubmits are neutral


def test_malformed_inputs_count_as_out_of_domain_and_other_dtypes_are_cast(world, profile):
    guard = Guard(profile)
    x = world.benign(1, np.random.default_rng(5))
    d1 = guard.observe("c", x.astype(np.float64))  # numpy's default dtype: cast, scored as usual
    assert d1.alert is None and d1.stats[0] == 0.0
    d2 = guard.observe("c", np.zeros((1, DIM + 1), np.float32))  # wrong shape
    d3 = guard.observe("c", np.zeros((1, DIM), bool))  # not a real number
    assert d2.alert is None and d3.alert is not None
    assert [r.signal for r in d3.alert.reasons] == ["invalid"] and d3.queries == 3


def test_feed_dicts_and_output_lists(world, profile):
    guard = Guard(profile)
    x = world.benign(1, np.random.default_rng(5))
    d = guard.observe("c", {"x": x}, [world.predict(x), np.zeros(1)])
    assert d.queries == 1
    named = Guard(dataclasses.replace(profile, input_name="x"))
    with pytest.raises(DetectorArgumentError, match="no input 'x'"):
        named.observe("c", {"image": x})
    with pytest.raises(DetectorArgumentError, match="not probabilities"):
        guard.observe("c", x, [np.log(world.predict(x))])  # logits where probabilities were calibrated
    with pytest.raises(DetectorArgumentError, match="several inputs"):
        guard.observe("c", {"a": x, "b": x})
    with pytest.raises(DetectorArgumentError, match="class scores"):
        guard.observe("c", x, [np.zeros((1, 3), np.float32)])
    with pytest.raises(DetectorArgumentError, match="output_index"):
        guard.observe("c", x, [])


@pytest.mark.parametrize("client", [
    "", 7, None, b"client", "x" * 1025,
    "é" * 1024,  # 1024 characters but 2048 bytes: a snapshot could not hold it
    "é" * 512 + "x",  # one byte over
    "\ud800",  # a lone surrogate has no UTF-8 encoding
])
def test_bad_client_ids_are_refused(profile, client):
    guard = Guard(profile)
    with pytest.raises(DetectorArgumentError, match="client_id"):
        guard.observe(client, np.zeros((1, DIM), np.float32))
    assert guard.clients == 0


def test_longest_client_ids_survive_a_restart(world, profile):
    """The id limit is the snapshot's: MAX_CLIENT_ID_BYTES of UTF-8, whatever the characters."""
    assert MAX_CLIENT_ID_BYTES == 1024
    ids = ["x" * 1024, "é" * 512, "\U0001f600" * 256, "日本" * 170 + "abcd"]
    assert all(len(c.encode()) == MAX_CLIENT_ID_BYTES for c in ids)
    guard = Guard(profile)
    for c in ids + ["short"]:
        feed(guard, world, c, world.benign(3, np.random.default_rng(17)))
    restarted = Guard(profile)
    restarted.restore_state(guard.save_state())
    assert restarted.clients == len(ids) + 1 and all(restarted.tracked(c) for c in ids)
    assert restarted.save_state() == guard.save_state()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=st.text(min_size=1, max_size=1100)
       | st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=300, max_size=1100))
def test_every_accepted_client_id_can_be_restored(profile, client):
    guard = Guard(profile)
    x = np.zeros((1, DIM), np.float32)
    if len(client.encode()) > MAX_CLIENT_ID_BYTES:
        with pytest.raises(DetectorArgumentError, match="client_id"):
            guard.observe(client, x)
        return
    guard.observe(client, x)
    restarted = Guard(profile)
    restarted.restore_state(guard.save_state())
    assert restarted.tracked(client)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_clients=0), "max_clients"), (dict(max_clients=2.5), "max_clients"),
    (dict(policy="protective"), "Policy"), (dict(profile=b"EGDPROF"), "Profile"),
])
def test_bad_guard_arguments_are_refused(profile, kwargs, message):
    args = dict(profile=profile)
    args.update(kwargs)
    with pytest.raises(DetectorArgumentError, match=message):
        Guard(**args)


def test_bad_arguments_are_value_errors_and_bad_data_is_not():
    assert issubclass(DetectorArgumentError, ValueError) and issubclass(DetectorArgumentError, DetectorError)
    assert issubclass(DetectorArgumentError, EdgeguardError)
    # A malformed profile or snapshot is bad data, not a bad argument, as everywhere in edgeguard.
    assert not issubclass(ProfileError, ValueError) and not issubclass(DetectorError, ValueError)


def test_batch_request_matches_single_queries(world, profile):
    xs = world.benign(50, np.random.default_rng(6)) * np.float32(1.0)
    xs[10:] = np.clip(xs[10:] + 0.01, 0, 1)
    one, batch = Guard(profile), Guard(profile)
    singles = feed(one, world, "c", xs)
    d = batch.observe("c", xs, [world.predict(xs)])
    assert d.queries == 50
    assert d.risk == pytest.approx(singles[-1].risk)
    assert d.peak_risk == pytest.approx(max(s.risk for s in singles))


def test_memory_is_bounded_however_many_clients_appear(world, profile):
    guard = Guard(profile, max_clients=8)
    x = world.benign(1, np.random.default_rng(7))
    for c in range(100):
        guard.observe(f"sybil-{c}", x)
    assert guard.clients == 8 and guard.evictions == 92
    assert guard.tracked("sybil-99") and not guard.tracked("sybil-0")
    before = guard.state_bytes_per_client
    for _ in range(500):
        guard.observe("sybil-99", x)
    assert guard.state_bytes_per_client == before <= 16 * 1024


def test_state_survives_a_restart(world, profile):
    rng = np.random.default_rng(8)
    xs = np.clip(world.benign(1, rng) + 0.01 * np.sign(rng.normal(size=(30, DIM))), 0, 1).astype(np.float32)
    straight, restarted = Guard(profile), Guard(profile)
    expect = feed(straight, world, "t", xs)
    feed(restarted, world, "t", xs[:15])
    blob = restarted.save_state()
    fresh = Guard(profile)
    fresh.restore_state(blob)
    got = feed(fresh, world, "t", xs[15:])
    assert [d.risk for d in got] == [d.risk for d in expect[15:]]
    assert fresh.save_state() == straight.save_state()


def test_bad_state_snapshots_are_refused_and_state_kept(world, profile):
    guard = Guard(profile)
    guard.observe("keep", world.benign(1, np.random.default_rng(9)))
    good = guard.save_state()
    other = Guard(build_profile(world, seed=1))
    with pytest.raises(DetectorError, match="different profile"):
        other.restore_state(good)
    for bad in (b"junk", good[:-3], good + b"\0", good[:40] + b"XXXX" + good[44:]):
        with pytest.raises(DetectorError):
            guard.restore_state(bad)
    assert guard.tracked("keep") and guard.save_state() == good


def test_concurrent_clients_are_counted_exactly(world, profile):
    guard = Guard(profile)
    xs = world.benign(200, np.random.default_rng(10))

    def work(t):
        for x in xs:
            guard.observe("shared", x[None])
            guard.observe(f"own-{t}", x[None])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert guard.observe("shared", xs[:1]).queries == 4 * 200 + 1
    assert guard.clients == 5


def test_guard_beside_onnxruntime_degrades_a_flagged_client(world, profile):
    session = ort.InferenceSession(world.onnx_model().SerializeToString(), providers=["CPUExecutionProvider"])
    guard = Guard(profile, Policy(degrade_at=1.0))
    x = world.benign(10, np.random.default_rng(12)) * 10.0
    for row in x:
        feed_dict = {"x": row[None]}
        outputs = session.run(None, feed_dict)
        decision = guard.observe("prober", feed_dict, outputs)
        answer = guard.apply(decision, outputs)
    assert decision.action == Action.DEGRADE
    assert isinstance(answer, list)
    np.testing.assert_array_equal(answer[0].sum(axis=1), [1.0])
    assert set(np.unique(answer[0])) == {0.0, 1.0}
    assert answer[0].argmax() == outputs[0].argmax()


def test_batch_alert_names_the_query_that_crossed(world, profile):
    events = []
    guard = Guard(profile, on_alert=events.append)
    xs = world.benign(6, np.random.default_rng(13))
    xs[3:] *= 10.0  # the 5th query is the second out-of-range one
    d = guard.observe("batcher", xs, [world.predict(xs)])
    assert d.alert is events[0] and d.alert.query_index == 5 and d.queries == 6


def test_default_sizes_fit_the_state_budget(world):
    profile = build_profile(world, sketch_dim=DIM)
    guard = Guard(profile)
    before = guard.state_bytes_per_client
    feed(guard, world, "c", world.benign(300, np.random.default_rng(14)))
    assert guard.state_bytes_per_client == before <= 16 * 1024
    assert before >= profile.memory * DIM + profile.bloom_bits // 8  # the memory is really held per client


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_snapshots_are_refused_or_harmless(world, profile, data):
    guard = Guard(profile, max_clients=4)
    xs = world.benign(40, np.random.default_rng(15))
    for i, x in enumerate(xs):
        guard.observe(f"c{i % 3}", x[None])
    blob = bytearray(guard.save_state())
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    target = Guard(profile, max_clients=4)
    try:
        target.restore_state(bytes(blob))
    except DetectorError:
        assert target.clients == 0
        return
    d = target.observe("c0", xs[0][None])  # whatever was accepted is safe to keep using
    assert np.isfinite(d.risk) and target.clients <= 4


def test_decisions_are_frozen_dataclasses_with_their_reasons(world, profile):
    guard = Guard(profile)
    d = feed(guard, world, "prober", world.benign(2, np.random.default_rng(16)) * 10.0)[-1]
    assert d.alert is not None and d.reasons[0].signal == "invalid"
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.action = Action.ALLOW
    # The guard's fast constructor fills exactly the dataclass's fields, so equality, repr and
    # replace() behave as for a Decision built by __init__.
    values = {f.name: getattr(d, f.name) for f in dataclasses.fields(Decision)}
    assert vars(d) == values and Decision(**values) == d
    assert repr(d) == repr(Decision(**values)) and "stats" not in repr(d)
    assert dataclasses.replace(d, risk=0.0).risk == 0.0
