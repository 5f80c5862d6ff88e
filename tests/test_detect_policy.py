import time
import types

import numpy as np
import pytest

from _detect_world import DIM, World, build_profile
from edgeguard import Action, Guard, Policy
from edgeguard.errors import DetectorArgumentError, QueryBlockedError


@pytest.mark.parametrize("risk, peak, sticky, expected", [
    (0.5, 0.5, True, Action.ALLOW),
    (1.0, 1.0, True, Action.DEGRADE),
    (0.2, 2.5, True, Action.THROTTLE),  # sticky: a paused thief is still throttled
    (0.2, 2.5, False, Action.ALLOW),
    (4.0, 4.0, True, Action.BLOCK),
])
def test_protective_ladder(risk, peak, sticky, expected):
    policy = Policy(degrade_at=1.0, throttle_at=2.0, block_at=4.0, sticky=sticky)
    assert policy.action(risk, peak) == expected


def test_alert_only_never_touches_answers():
    assert Policy.alert_only().action(9.0, 9.0) == Action.ALERT


@pytest.mark.parametrize("kwargs", [
    dict(degrade_at=0.5), dict(degrade_at=3.0, block_at=2.0), dict(noise=-1.0), dict(delay_s=-1.0),
    dict(decimals=-1),
])
def test_inconsistent_policies_are_refused(kwargs):
    with pytest.raises(DetectorArgumentError):
        Policy(**kwargs)


def test_degrading_keeps_the_top1_class():
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(10), size=50).astype(np.float32)
    onehot = Policy(top1_only=True).degrade_scores(scores, rng)
    np.testing.assert_array_equal(onehot.argmax(1), scores.argmax(1))
    np.testing.assert_array_equal(onehot.sum(1), np.ones(50))
    noisy = Policy(top1_only=False, noise=0.05, decimals=2).degrade_scores(scores, rng)
    assert (noisy.argmax(1) == scores.argmax(1)).all()
    np.testing.assert_allclose(noisy.sum(1), 1.0, atol=0.06)
    assert np.array_equal(noisy, np.round(noisy, 2))


@pytest.fixture(scope="module")
def flagged():
    world = World()
    profile = build_profile(world)
    guards = {}
    for name, policy in [("throttle", Policy(throttle_at=1.0, delay_s=0.2)), ("block", Policy(block_at=1.0))]:
        guard = Guard(profile, policy)
        for _ in range(3):
            decision = guard.observe("prober", np.full((1, DIM), 50.0, np.float32))
        guards[name] = (guard, decision)
    return guards


def test_blocked_client_gets_no_answer(flagged):
    guard, decision = flagged["block"]
    assert decision.action == Action.BLOCK
    with pytest.raises(QueryBlockedError, match="prober"):
        guard.apply(decision, [np.ones((1, 10), np.float32)])


def test_throttle_delay_is_reported_and_optional(flagged):
    guard, decision = flagged["throttle"]
    assert decision.action == Action.THROTTLE and decision.delay_s == 0.2
    start = time.monotonic()
    out = guard.apply(decision, np.eye(10, dtype=np.float32)[None, 3] * 0.9, sleep=False)
    assert time.monotonic() - start < 0.1
    assert out.argmax() == 3 and out.max() == 1.0


@pytest.mark.parametrize("foreign", [
    "allow", None, Action.ALLOW,
    # A look-alike that would pass duck typing and let a blocked client through.
    types.SimpleNamespace(client_id="prober", action=Action.ALLOW, delay_s=0.0),
])
def test_apply_refuses_foreign_decisions(flagged, foreign):
    guard, decision = flagged["block"]
    answer = [np.ones((1, 10), np.float32)]
    with pytest.raises(QueryBlockedError):
        guard.apply(decision, answer)  # the guard's own decision for this client blocks it
    with pytest.raises(DetectorArgumentError, match=r"Guard\.observe"):
        guard.apply(foreign, answer)


@pytest.mark.parametrize("outputs", [[], np.float32(0.5), None, [np.float32(0.5)]])
def test_degrading_outputs_without_class_scores_is_refused(flagged, outputs):
    guard, decision = flagged["throttle"]
    with pytest.raises(DetectorArgumentError, match="class-score"):
        guard.apply(decision, outputs, sleep=False)
