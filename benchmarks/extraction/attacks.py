"""Extraction attacks as generators: each yields a query (64 floats) and is sent the answer.

Every attack sees only answers (class probabilities) to its own queries, as a thief would.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

Attack = Generator[np.ndarray, np.ndarray, None]


@dataclass
class Context:
    rng: np.random.Generator
    pool: np.ndarray  # the attacker's own in-distribution digits
    natural: np.ndarray  # natural-image patches (out of distribution)


def _substitute(x: np.ndarray, y: np.ndarray) -> LogisticRegression | None:
    if len(np.unique(y)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(max_iter=200).fit(x, y)


def _in_order(ctx: Context, n: int, shuffle: bool) -> np.ndarray:
    return ctx.rng.permutation(n) if shuffle else np.arange(n)


def jbda(ctx: Context, seeds: int = 10, step: float = 0.1, shuffle: bool = False) -> Attack:
    """Papernot et al. 2017: Jacobian-based augmentation of a small seed set around a substitute.

    Each round trains the substitute on every labelled query so far and adds, for each of them,
    x + step * sign(d F_y / d x); the set doubles per round, so a child follows its parent by the
    size of the set (more than any fixed history once the set is large). ``shuffle`` sends each
    round (and the seeds) in random order.
    """
    xs = [ctx.pool[i] for i in ctx.rng.choice(len(ctx.pool), seeds, replace=False)]
    ys = [0] * len(xs)
    for i in _in_order(ctx, len(xs), shuffle):
        ys[i] = int(np.argmax((yield xs[i])))
    while True:
        sub = _substitute(np.array(xs), np.array(ys))
        new = []
        for x, y in zip(list(xs), list(ys), strict=True):
            if sub is None:
                direction = np.sign(ctx.rng.normal(size=x.shape))
            else:  # sign of d p_y / d x for a softmax-regression substitute
                p = sub.predict_proba(x[None])[0]
                w = sub.coef_ if sub.coef_.shape[0] > 1 else np.vstack([-sub.coef_, sub.coef_])
                k = int(np.searchsorted(sub.classes_, y)) if y in sub.classes_ else 0
                direction = np.sign(w[k] - p @ w)
            new.append(np.clip(x + step * direction, 0, 1).astype(np.float32))
        labels = [0] * len(new)
        for i in _in_order(ctx, len(new), shuffle):
            labels[i] = int(np.argmax((yield new[i])))
        xs += new
        ys += labels


def t_rnd(ctx: Context, seeds: int = 10, step: float = 0.1, shuffle: bool = False) -> Attack:
    """Juuti et al. 2019 T-RND: seeds perturbed in random sign directions, set doubling per round."""
    xs = [ctx.pool[i] for i in ctx.rng.choice(len(ctx.pool), seeds, replace=False)]
    for i in _in_order(ctx, len(xs), shuffle):
        yield xs[i]
    while True:
        new = [np.clip(x + step * np.sign(ctx.rng.normal(size=x.shape)), 0, 1).astype(np.float32) for x in xs]
        for i in _in_order(ctx, len(new), shuffle):
            yield new[i]
        xs += new


def knockoff_random(ctx: Context) -> Attack:
    """Orekondy et al. 2019, random strategy: natural images from another distribution."""
    while True:
        yield ctx.natural[ctx.rng.integers(len(ctx.natural))]


def knockoff_adaptive(ctx: Context, arms: int = 8, lr: float = 0.2) -> Attack:
    """Knockoff adaptive: a gradient bandit over clusters of natural images, rewarding certain
    and diverse answers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = KMeans(arms, n_init=2, random_state=int(ctx.rng.integers(1 << 30))).fit_predict(ctx.natural)
    members = [np.flatnonzero(cluster == a) for a in range(arms)]
    h, baseline, seen = np.zeros(arms), 0.0, np.zeros(10)
    for t in range(1, 1 << 30):
        pi = np.exp(h - h.max())
        pi /= pi.sum()
        a = int(ctx.rng.choice(arms, p=pi)) if all(len(m) for m in members) else int(ctx.rng.integers(arms))
        if len(members[a]) == 0:
            continue
        p = yield ctx.natural[ctx.rng.choice(members[a])]
        top = np.sort(p)
        label = int(np.argmax(p))
        reward = (top[-1] - top[-2]) + (1.0 - seen[label] / t)
        seen[label] += 1
        baseline += (reward - baseline) / t
        h -= lr * (reward - baseline) * pi
        h[a] += lr * (reward - baseline)


def art_knockoff_random(ctx: Context, budget: int = 4096) -> Attack:
    """Knockoff Nets' random strategy as implemented by IBM's Adversarial Robustness Toolbox
    (``art.attacks.extraction.KnockoffNets``, an independent implementation): ART picks which
    natural images to query. The random strategy's choices do not depend on the answers, so ART
    runs once against a recording stand-in and its queries are replayed here, in ART's order; the
    surrogate is the harness's own (ART's thieved model is not used)."""
    import logging

    from art.attacks.extraction import KnockoffNets
    from art.estimators.classification import BlackBoxClassifier
    from art.estimators.classification.scikitlearn import ScikitlearnClassifier
    from sklearn.dummy import DummyClassifier

    class Unused(ScikitlearnClassifier):  # ART's thieved model: nothing is learnt here
        def fit(self, x, y, **_):
            return None

    logging.getLogger("art").setLevel(logging.ERROR)
    asked: list[np.ndarray] = []

    def record(x: np.ndarray) -> np.ndarray:
        asked.extend(np.asarray(x, np.float32).reshape(len(x), -1))
        return np.full((len(x), 10), 0.1, np.float32)

    victim = BlackBoxClassifier(record, input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))
    thieved = Unused(DummyClassifier(), clip_values=(0.0, 1.0))
    state = np.random.get_state()
    np.random.seed(int(ctx.rng.integers(1 << 31)))  # ART draws from numpy's global generator
    try:
        KnockoffNets(victim, batch_size_query=64, nb_stolen=min(budget, len(ctx.natural)),
                     sampling_strategy="random", verbose=False).extract(ctx.natural, thieved_classifier=thieved)
    finally:
        np.random.set_state(state)
    yield from asked
    while True:  # past ART's budget: more of the same distribution
        yield ctx.natural[ctx.rng.integers(len(ctx.natural))]


def copycat(ctx: Context) -> Attack:
    """Correia-Silva et al. 2018 with in-distribution data: the thief's own unlabelled digits."""
    while True:
        for i in ctx.rng.permutation(len(ctx.pool)):
            yield ctx.pool[i]


def equation_solving(ctx: Context) -> Attack:
    """Tramer et al. 2016 against logistic regression: random inputs, then solve for the weights."""
    while True:
        yield ctx.rng.random(64).astype(np.float32)


def critical_points(ctx: Context, span: float = 8.0, inbox: bool = False) -> Attack:
    """The query pattern of Jagielski et al. 2020 functionally-equivalent extraction: sweep lines
    through input space and binary-search where the logits stop being linear (ReLU critical points).
    Lines run through a digit in a random direction over [-span, span]; with ``inbox`` they join
    two of the thief's digits instead, so every query stays inside the data range.
    """
    def logits(p):
        return np.log(np.maximum(p, 1e-12))

    while True:
        a, b = ctx.pool[ctx.rng.choice(len(ctx.pool), 2, replace=False)]
        if inbox:
            x0, d = 0.5 * (a + b), b - a
            half = float(np.linalg.norm(d)) / 2
            d, lo, hi = d / (2 * half), -half, half
        else:
            x0, d = a, ctx.rng.normal(size=64).astype(np.float32)
            d, lo, hi = d / np.linalg.norm(d), -span, span

        def point(t, x0=x0, d=d):
            return (x0 + t * d).astype(np.float32)

        ts = np.linspace(lo, hi, 9)
        ls = []
        for t in ts:
            ls.append(logits((yield point(t))))
        for i in range(8):
            ta, tb, la, lb = ts[i], ts[i + 1], ls[i], ls[i + 1]
            for _ in range(6):  # bisect towards a kink: midpoint off the chord means one lies inside
                m = 0.5 * (ta + tb)
                lm = logits((yield point(m)))
                if np.abs(lm - 0.5 * (la + lb)).max() < 1e-3:
                    break
                if np.abs(lm - la).sum() < np.abs(lb - lm).sum():
                    ta, la = m, lm
                else:
                    tb, lb = m, lm


def interleaved(ctx: Context, inner: Callable[[Context], Attack], every: int = 2) -> Attack:
    """An evasive thief: one attack query, then ``every - 1`` ordinary digits, repeating."""
    gen = inner(ctx)
    x = next(gen)
    while True:
        y = yield x
        x = gen.send(y)
        for _ in range(every - 1):
            yield ctx.pool[ctx.rng.integers(len(ctx.pool))]


ATTACKS: dict[str, Callable[[Context], Attack]] = {
    "jbda": jbda,
    "jbda-100seeds": lambda ctx: jbda(ctx, seeds=100),  # each child 100-800 queries after its parent
    "jbda-100seeds-shuffled": lambda ctx: jbda(ctx, seeds=100, shuffle=True),
    "t-rnd": t_rnd,
    "t-rnd-100seeds-shuffled": lambda ctx: t_rnd(ctx, seeds=100, shuffle=True),
    "knockoff-random": knockoff_random,
    "knockoff-adaptive": knockoff_adaptive,
    "knockoff-random-art": art_knockoff_random,
    "copycat-indist": copycat,
    "tramer-eqsolve": equation_solving,
    "critical-point": critical_points,
    "critical-point-inbox": lambda ctx: critical_points(ctx, inbox=True),
    "jbda-interleaved-1to1": lambda ctx: interleaved(ctx, jbda, every=2),
    "jbda-interleaved-1to4": lambda ctx: interleaved(ctx, jbda, every=5),
    "t-rnd-interleaved-1to1": lambda ctx: interleaved(ctx, t_rnd, every=2),
    "t-rnd-interleaved-1to4": lambda ctx: interleaved(ctx, t_rnd, every=5),
    "knockoff-interleaved-1to4": lambda ctx: interleaved(ctx, knockoff_random, every=5),
}
# Split across client ids (round-robin or each query to a random id), with benign traffic from
# other clients interleaved 1:1 on the same guard: detection is then the fleet view's.
SYBIL_ATTACKS: dict[str, tuple[Callable[[Context], Attack], int, str]] = {
    "jbda-sybil20-roundrobin": (jbda, 20, "round-robin"),
    "jbda-sybil19-random": (jbda, 19, "random"),
    "t-rnd-sybil20-roundrobin": (t_rnd, 20, "round-robin"),
    "t-rnd-sybil19-random": (t_rnd, 19, "random"),
}
INTERLEAVED_1TO4 = {n for n in ATTACKS if n.endswith("1to4")}
try:  # the Adversarial Robustness Toolbox is optional: pip install adversarial-robustness-toolbox
    import art  # noqa: F401
except ImportError:
    del ATTACKS["knockoff-random-art"]
LOGREG_ATTACKS = {"tramer-eqsolve"}
