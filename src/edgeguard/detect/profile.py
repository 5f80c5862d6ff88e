"""The benign reference profile: what normal traffic looks like, and the calibrated thresholds.

A profile is built once, at seal time, from benign calibration inputs (and, when a model is at
hand, its answers to them). Half of the inputs fit a linear sketch (the top principal directions)
and its robust statistics; the other half replays simulated benign client streams through the
very detector that runs on the device, and each signal's threshold is set so that at most
``target_fpr`` of those streams would ever alert.

Serialised form (``to_bytes``), version 1, all integers little-endian::

    b"EGDPROF\\0" | u16 version | u32 header_len | header | arrays

``header`` is UTF-8 JSON with sorted keys, no whitespace and no NaN/Infinity (a disabled threshold
is ``null``); ``arrays`` are float32 little-endian, in this order: mean[dim],
components[sketch_dim*dim], sketch_center[sketch_dim], sketch_scale[sketch_dim], lo[dim], hi[dim].
The encoding is canonical: ``from_bytes`` rejects any input that ``to_bytes`` would not produce.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._files import write_file
from ..errors import ProfileError
from .events import SIGNALS

MAGIC = b"EGDPROF\0"
VERSION = 1
MAX_PROFILE_BYTES = 64 << 20

_ARRAYS = ("mean", "components", "sketch_center", "sketch_scale", "lo", "hi")
_HEADER_KEYS = {
    "dim", "sketch_dim", "classes", "input_shape", "input_name", "output_index", "window",
    "reservoir", "mahal_ref", "resid_ref", "novelty_slack", "novelty_cap", "near_dist", "low_margin", "thresholds",
    "calibration",
}
_INVALID_ALERT_COUNT = 2.0  # out-of-domain queries in a window before alerting; one stray is not an attack
_FLOORS = {"chain": 4.0, "low_margin": 2.0, "coverage": 8.0}
_NEAR_FRACTION = 0.4     # chain radius, as a fraction of the median benign nearest-neighbour distance
_COMBINED_FLOOR = 1.5   # the combined score needs two signals well up, not one just under its threshold
_THRESHOLD_MARGIN = 1.2  # headroom above the worst calibration stream, for unseen benign clients
_SKEW_FOCUS = 0.7        # share of a focused (class-skewed) client's queries drawn from its favourite region
_COVERAGE_BITS = 12      # the native core hashes the first 12 sketch coordinates into cells
_SLACK_QUANTILE = 0.9    # novelty above the benign 90th percentile accumulates as evidence
_NOVELTY_CAP = 4.0       # no single query adds more than (cap - slack) to the novelty CUSUM


def _f32(x: float) -> float:
    return float(np.float32(x))


@dataclass(frozen=True, eq=False)
class Profile:
    """A calibrated benign reference profile. Build one with :meth:`build`; treat it as immutable.

    Raises:
        ProfileError: the fields are inconsistent with each other or values the native detector
            would refuse.
    """

    dim: int
    sketch_dim: int
    classes: int
    input_shape: tuple[int, ...]
    mean: np.ndarray
    components: np.ndarray
    sketch_center: np.ndarray
    sketch_scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mahal_ref: float
    resid_ref: float
    novelty_slack: float
    novelty_cap: float
    near_dist: float
    low_margin: float
    thresholds: tuple[float, ...]
    window: int = 32
    reservoir: int = 96
    input_name: str | None = None
    output_index: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _ARRAYS:  # private read-only copies: a profile cannot change under a guard
            arr = np.array(getattr(self, name), dtype=np.float32)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        try:
            _core.Detector(**self.native_args(max_clients=1))  # type: ignore[attr-defined]  # not in the stub
        except (ValueError, TypeError) as e:
            raise ProfileError(f"inconsistent profile: {e}") from None
        if math.prod(self.input_shape) != self.dim:
            raise ProfileError("input_shape does not match dim")
        if len(self.thresholds) != len(SIGNALS):
            raise ProfileError(f"thresholds must have {len(SIGNALS)} entries")

    # ----------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        benign: np.ndarray,
        *,
        predict: Callable[[np.ndarray], np.ndarray] | None = None,
        target_fpr: float = 0.01,
        sketch_dim: int = 32,
        window: int = 32,
        reservoir: int = 96,
        domain: tuple[float, float] | None = None,
        domain_margin: float = 0.25,
        noise_sigma: float = 0.05,
        resubmit_rate: float = 0.05,
        streams: int = 200,
        stream_length: int = 2000,
        volume_budget: int | None = None,
        input_name: str | None = None,
        output_index: int = 0,
        seed: int = 0,
    ) -> Profile:
        """Fits the sketch on half of ``benign`` and calibrates thresholds on the other half.

        ``benign`` is (n, *input_shape) float32 benign inputs, n >= 64. ``predict`` maps a batch of
        inputs to the model's class-score output (enables the low-margin signal). ``domain`` is the
        model's declared value range; by default the calibration range widened by
        ``domain_margin`` of its width. Calibration streams model benign clients: clean, with
        Gaussian sensor noise ``noise_sigma``, resubmitting ``resubmit_rate`` of queries, and
        focused on one region of the data; each ``stream_length`` queries long, drawing new
        inputs (the held-out half, reshuffled each pass) rather than re-capturing recent ones.
        ``volume_budget`` (queries per client) arms the volume signal; None leaves it off.

        Raises:
            ProfileError: bad arguments, too few or non-finite inputs, or predict output of the
                wrong shape.
        """
        x = np.asarray(benign)
        if x.dtype != np.float32:
            raise ProfileError(f"benign inputs must be float32, got {x.dtype}")
        if x.ndim < 2 or x.shape[0] < 64:
            raise ProfileError("need at least 64 benign inputs, shaped (n, *input_shape)")
        if not np.isfinite(x).all():
            raise ProfileError("benign inputs must be finite")
        if not 0 < target_fpr < 1:
            raise ProfileError("target_fpr must be in (0, 1)")
        if noise_sigma < 0 or not 0 <= resubmit_rate < 1 or domain_margin < 0:
            raise ProfileError("noise_sigma, resubmit_rate and domain_margin must be non-negative")
        if streams < 4 or stream_length < window:
            raise ProfileError("need at least 4 calibration streams of at least `window` queries")
        if volume_budget is not None and volume_budget < 1:
            raise ProfileError("volume_budget must be positive")
        input_shape = tuple(int(s) for s in x.shape[1:])
        flat = x.reshape(len(x), -1).astype(np.float64)
        dim = flat.shape[1]
        if not _COVERAGE_BITS <= sketch_dim <= min(256, dim):
            raise ProfileError(f"sketch_dim must be in {_COVERAGE_BITS}..{min(256, dim)}")

        # Independent streams per purpose, so changing one step never reshuffles another.
        split_rng, noise_rng, near_rng, replay_rng = (np.random.default_rng([seed, i]) for i in range(4))
        order = split_rng.permutation(len(flat))
        fit, held = flat[order[: len(flat) // 2]], flat[order[len(flat) // 2 :]]

        mean = fit.mean(axis=0)
        _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
        components = vt[:sketch_dim]
        z = (fit - mean) @ components.T
        center = np.median(z, axis=0)
        scale = np.maximum(1.4826 * np.median(np.abs(z - center), axis=0), 1e-6)
        parts = _novelty_parts(fit, mean, components, center, scale)
        mahal_ref, resid_ref = (max(float(np.median(v)), 1e-6) for v in parts)
        # The CUSUM slack is set on held-out inputs carrying the tolerated sensor noise: in-sample,
        # noise-free novelty would understate what benign clients send.
        noisy = held + noise_rng.normal(0, noise_sigma, held.shape)
        held_mahal, held_resid = _novelty_parts(noisy, mean, components, center, scale)
        slack = float(np.quantile(0.5 * held_mahal / mahal_ref + 0.5 * held_resid / resid_ref, _SLACK_QUANTILE))

        if domain is None:
            low, high = float(flat.min()), float(flat.max())
        else:
            low, high = (float(v) for v in domain)
            if not low < high:
                raise ProfileError("domain must be (low, high) with low < high")
        pad = domain_margin * (high - low)

        classes, low_margin = 0, 0.0
        if predict is not None:
            y_fit = _predict(predict, fit.astype(np.float32), input_shape)
            classes = y_fit.shape[1]
            top = np.sort(y_fit, axis=1)
            low_margin = float(np.quantile(top[:, -1] - top[:, -2], 0.1))

        draft = cls(
            dim=dim, sketch_dim=sketch_dim, classes=classes, input_shape=input_shape,
            mean=mean.astype(np.float32), components=components.astype(np.float32),
            sketch_center=center.astype(np.float32), sketch_scale=scale.astype(np.float32),
            lo=np.full(dim, low - pad, np.float32), hi=np.full(dim, high + pad, np.float32),
            mahal_ref=_f32(mahal_ref), resid_ref=_f32(resid_ref), novelty_slack=_f32(slack),
            novelty_cap=_NOVELTY_CAP, near_dist=_f32(_near_distance(z, reservoir, near_rng)),
            low_margin=_f32(low_margin), thresholds=(math.inf,) * len(SIGNALS),
            window=window, reservoir=reservoir, input_name=input_name, output_index=output_index,
        )
        stats = _replay_benign_streams(draft, held.astype(np.float32), predict, replay_rng, streams,
                                       stream_length, noise_sigma, resubmit_rate)
        thresholds = _thresholds(stats, target_fpr, volume_budget, classes > 0,
                                 novelty_floor=2 * (_NOVELTY_CAP - slack),
                                 coverage_armed=len(held) >= stream_length)
        calibration = {
            "target_fpr": target_fpr, "benign_inputs": len(flat), "streams": streams,
            "stream_length": stream_length, "noise_sigma": noise_sigma,
            "resubmit_rate": resubmit_rate, "seed": seed,
        }
        return replace(draft, thresholds=thresholds, calibration=calibration)

    # ------------------------------------------------------------ serialisation

    def to_bytes(self) -> bytes:
        """The canonical, versioned encoding (see the module docstring)."""
        header = {
            "dim": self.dim, "sketch_dim": self.sketch_dim, "classes": self.classes,
            "input_shape": list(self.input_shape), "input_name": self.input_name,
            "output_index": self.output_index, "window": self.window, "reservoir": self.reservoir,
            "mahal_ref": self.mahal_ref, "resid_ref": self.resid_ref,
            "novelty_slack": self.novelty_slack, "novelty_cap": self.novelty_cap, "near_dist": self.near_dist,
            "low_margin": self.low_margin,
            "thresholds": [None if math.isinf(t) else t for t in self.thresholds],
            "calibration": self.calibration,
        }
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        arrays = b"".join(np.ascontiguousarray(getattr(self, a), "<f4").tobytes() for a in _ARRAYS)
        return MAGIC + struct.pack("<HI", VERSION, len(text)) + text + arrays

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Parses :meth:`to_bytes` output.

        Raises:
            ProfileError: wrong magic, unknown version, malformed or non-canonical encoding, or
                values the detector would refuse.
        """
        data = bytes(data)
        if len(data) > MAX_PROFILE_BYTES:
            raise ProfileError("profile is too large")
        if len(data) < len(MAGIC) + 6 or not data.startswith(MAGIC):
            raise ProfileError("not an edgeguard detector profile")
        version, header_len = struct.unpack_from("<HI", data, len(MAGIC))
        if version != VERSION:
            raise ProfileError(f"unsupported profile version {version}")
        start = len(MAGIC) + 6
        try:
            header = json.loads(data[start : start + header_len].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProfileError("malformed profile header") from None
        if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
            raise ProfileError("profile header has missing or unknown fields")
        try:
            dim, k = _count(header["dim"]), _count(header["sketch_dim"])
            sizes = {"mean": dim, "components": dim * k, "sketch_center": k, "sketch_scale": k,
                     "lo": dim, "hi": dim}
            offset, arrays = start + header_len, {}
            if len(data) != offset + 4 * sum(sizes.values()):
                raise ProfileError("profile arrays have the wrong length")
            for name in _ARRAYS:
                arrays[name] = np.frombuffer(data, "<f4", sizes[name], offset).astype(np.float32)
                offset += 4 * sizes[name]
            arrays["components"] = arrays["components"].reshape(k, dim)
            thresholds = tuple(math.inf if t is None else _number(t) for t in header["thresholds"])
            if not isinstance(header["calibration"], dict):
                raise ProfileError("calibration must be an object")
            if header["input_name"] is not None and not isinstance(header["input_name"], str):
                raise ProfileError("input_name must be a string or null")
            profile = cls(
                dim=dim, sketch_dim=k, classes=_count(header["classes"]),
                input_shape=tuple(_count(s) for s in header["input_shape"]),
                mahal_ref=_number(header["mahal_ref"]), resid_ref=_number(header["resid_ref"]),
                novelty_slack=_number(header["novelty_slack"]),
                novelty_cap=_number(header["novelty_cap"]), near_dist=_number(header["near_dist"]),
                low_margin=_number(header["low_margin"]), thresholds=thresholds,
                window=_count(header["window"]), reservoir=_count(header["reservoir"]),
                input_name=header["input_name"], output_index=_count(header["output_index"]),
                calibration=header["calibration"], **arrays,
            )
        except (TypeError, ValueError, OverflowError):
            raise ProfileError("profile header has values of the wrong type") from None
        if profile.to_bytes() != data:
            raise ProfileError("profile encoding is not canonical")
        return profile

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Writes :meth:`to_bytes` to ``path`` (mode 0o644) through edgeguard's atomic writer: the
        file appears complete or not at all, and without ``overwrite`` an existing file is never
        replaced.

        Raises:
            FileExistsError: ``path`` exists and overwrite is False.
            OSError: the file cannot be written (nothing is left behind).
        """
        write_file(path, self.to_bytes(), overwrite=overwrite, mode=0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        """Reads a profile written by :meth:`save`.

        Raises:
            OSError: the file cannot be read.
            ProfileError: the contents are not a valid profile.
        """
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
        return cls.from_bytes(data)

    def native_args(self, max_clients: int) -> dict[str, Any]:
        """Keyword arguments for the native ``_core.Detector`` built from this profile."""
        return dict(
            dim=self.dim, sketch_dim=self.sketch_dim, classes=self.classes, mean=self.mean,
            components=self.components, sketch_center=self.sketch_center,
            sketch_scale=self.sketch_scale, lo=self.lo, hi=self.hi, mahal_ref=self.mahal_ref,
            resid_ref=self.resid_ref, novelty_slack=self.novelty_slack, novelty_cap=self.novelty_cap, near_dist=self.near_dist,
            low_margin=self.low_margin, thresholds=list(self.thresholds), window=self.window,
            reservoir=self.reservoir, max_clients=max_clients,
        )


def _count(v: object) -> int:
    if type(v) is not int or v < 0:
        raise ProfileError("expected a non-negative integer in the profile header")
    return v


def _number(v: object) -> float:
    if (type(v) is int or type(v) is float) and math.isfinite(v):
        return float(v)
    raise ProfileError("expected a finite number in the profile header")


def _predict(
    predict: Callable[[np.ndarray], np.ndarray], x: npt.NDArray[np.float32], shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    y = np.asarray(predict(x.reshape((len(x), *shape))), dtype=np.float32)
    if y.ndim != 2 or y.shape[0] != len(x) or y.shape[1] < 2 or not np.isfinite(y).all():
        raise ProfileError("predict must return finite class scores shaped (n, classes >= 2)")
    return y


def _novelty_parts(
    x: npt.NDArray[np.floating[Any]],
    mean: npt.NDArray[np.floating[Any]],
    components: npt.NDArray[np.floating[Any]],
    center: npt.NDArray[np.floating[Any]],
    scale: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-row robust Mahalanobis distance inside the sketch and residual norm outside it."""
    z = (x - mean) @ components.T
    mahal = np.sqrt((((z - center) / scale) ** 2).mean(axis=1))
    resid = np.sqrt(np.maximum(((x - mean) ** 2).sum(axis=1) - (z**2).sum(axis=1), 0))
    return mahal, resid


def _near_distance(z: npt.NDArray[np.float64], reservoir: int, rng: np.random.Generator) -> float:
    """A fraction of the median nearest-neighbour sketch distance within history-sized benign samples.

    The median is stable across calibration subsets where low quantiles are not (digits subsets
    differ 2-3x in how many near-twins they hold); small-perturbation chains sit well inside it.
    """
    samples = []
    for _ in range(32):
        s = z[rng.choice(len(z), size=min(reservoir + 1, len(z)), replace=False)]
        d = ((s[:, None, :] - s[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        d[d == 0] = np.inf  # identical calibration samples are resubmits, not neighbours
        samples.append(np.sqrt(d.min(axis=1)))
    nearest = np.concatenate(samples)
    return _NEAR_FRACTION * float(np.median(nearest[np.isfinite(nearest)]))


def _replay_benign_streams(
    profile: Profile,
    held: npt.NDArray[np.float32],
    predict: Callable[[np.ndarray], np.ndarray] | None,
    rng: np.random.Generator,
    streams: int,
    length: int,
    noise_sigma: float,
    resubmit_rate: float,
) -> npt.NDArray[np.float32]:
    """Runs simulated benign clients through the native detector with every signal disarmed.

    Returns the per-query statistics, shaped (streams, length, signals).
    """
    det = _core.Detector(**profile.native_args(max_clients=streams))  # type: ignore[attr-defined]  # not in the stub
    z = (held - profile.mean) @ profile.components.T
    out = np.empty((streams, length, len(SIGNALS)), np.float32)
    for s in range(streams):
        behaviour = s % 4
        if behaviour == 3:  # focused: most queries from the region around one anchor
            near = np.argsort(((z - z[rng.integers(len(z))]) ** 2).sum(1))[: max(8, len(z) // 5)]
            pick = np.where(rng.random(length) < _SKEW_FOCUS, rng.choice(near, length),
                            rng.integers(len(held), size=length))
        else:  # benign clients mostly send new inputs: walk the pool, reshuffled each pass
            pick = np.concatenate([rng.permutation(len(held)) for _ in range(-(-length // len(held)))])[:length]
        pool = held
        if behaviour == 1:  # noise belongs to a capture: resending that capture repeats it exactly
            pool = held + rng.normal(0, noise_sigma, held.shape).astype(np.float32)
        x = pool[pick]
        if behaviour == 2:
            again = np.flatnonzero(rng.random(length) < resubmit_rate)
            again = again[again > 0]
            x[again] = x[rng.integers(0, again)]
        x = np.ascontiguousarray(x, np.float32)
        y = _predict(predict, x, profile.input_shape) if predict is not None else None
        out[s] = det.observe_batch(f"calibration-{s}", x, y)[:, : len(SIGNALS)]
    return out


def _thresholds(
    stats: npt.NDArray[np.float32],
    target_fpr: float,
    volume_budget: int | None,
    has_outputs: bool,
    novelty_floor: float,
    coverage_armed: bool,
) -> tuple[float, ...]:
    """Per-signal thresholds so that at most target_fpr of benign streams ever cross any of them.

    No threshold is below its floor: the novelty CUSUM needs at least two maximally novel queries,
    the chain count four near-copies and the other counts two events, so a single odd benign
    query never alerts. Coverage is armed
    only when the calibration pool has at least a stream's worth of distinct inputs: with fewer, the
    replayed streams cannot reach the coverage of a real client sending new inputs.
    """
    worst = stats.max(axis=1)  # (streams, signals): each stream's worst moment
    armed = ["novelty", "chain", "combined"] + (["low_margin"] if has_outputs else [])
    if coverage_armed:
        armed.append("coverage")
    q = 1 - target_fpr / len(armed)
    t = dict.fromkeys(SIGNALS, math.inf)
    t["invalid"] = _INVALID_ALERT_COUNT
    floors = dict(_FLOORS, novelty=novelty_floor)
    for name in ("novelty", "chain", "low_margin", "coverage"):
        if name in armed:
            level = _THRESHOLD_MARGIN * float(np.quantile(worst[:, SIGNALS.index(name)], q))
            if name != "novelty":  # counts: a finite calibration pool understates their tail by a step
                level = math.ceil(level) + 1
            t[name] = max(floors[name], level)
    # The combined score is the sum of the window signals' ratios, so it is calibrated after them.
    idx = [SIGNALS.index(n) for n in ("novelty", "chain", "low_margin")]
    ratios = sum((stats[:, :, j] / t[SIGNALS[j]] for j in idx), np.zeros_like(stats[:, :, 0]))
    t["combined"] = max(_COMBINED_FLOOR, _THRESHOLD_MARGIN * float(np.quantile(ratios.max(axis=1), q)))
    if volume_budget is not None:
        t["volume"] = float(volume_budget)
    return tuple(_f32(t[n]) if math.isfinite(t[n]) else math.inf for n in SIGNALS)
