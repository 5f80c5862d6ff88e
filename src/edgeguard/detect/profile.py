"""The benign reference profile: what normal traffic looks like, and the calibrated thresholds.

A profile is built once, at seal time, from benign calibration inputs (and, when a model is at
hand, its answers to them). Inputs larger than ``max_features`` are average-pooled first. Half of
the inputs fit a linear sketch (the top principal directions) and its robust statistics; the other
half, each input also re-captured under the declared sensor noise, replays simulated benign client
sessions through the very detector that runs on the device, and each signal's threshold is set so
that at most ``target_fpr`` of those sessions would ever alert.

Serialised form (``to_bytes``), version 2, all integers little-endian::

    b"EGDPROF\\0" | u16 version | u32 header_len | header | arrays

``header`` is UTF-8 JSON with sorted keys, no whitespace and no NaN/Infinity (a disabled threshold
is ``null``); ``arrays`` are float32 little-endian, in this order: mean[pooled],
components[sketch_dim*pooled], sketch_center[sketch_dim], sketch_scale[sketch_dim], where
``pooled`` is the number of features after pooling. The encoding is canonical: ``from_bytes``
rejects any input that ``to_bytes`` would not produce. Version 1 profiles (window counts and a
recent-query ring) are refused with a message saying to rebuild them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from .. import _core
from .._files import write_file
from ..errors import ProfileError
from .events import SIGNALS

MAGIC = b"EGDPROF\0"
VERSION = 2
MAX_PROFILE_BYTES = 64 << 20
OUTPUT_KINDS = ("probabilities", "logits")

_ARRAYS = ("mean", "components", "sketch_center", "sketch_scale")
_HEADER_KEYS = {
    "dim", "input_shape", "pool", "sketch_dim", "classes", "output_kind", "input_name", "output_index",
    "lo", "hi", "mahal_ref", "resid_ref", "novelty_slack", "novelty_cap", "repeat_dist", "near_dist",
    "chain_slack", "chain_weight_cap", "low_margin", "margin_slack", "invalid_decay", "salt",
    "thresholds", "fleet_thresholds", "memory", "bloom_bits", "fleet_memory", "fleet_bloom_bits",
    "calibration",
}
_INVALID_ALERT = 2.0     # out-of-domain evidence before alerting; one stray is not an attack
_INVALID_DECAY = 1 / 32  # one in-domain query takes this much off the invalid evidence
# Floors: the calibration pool is half the benign inputs, so its sessions hold fewer near-twins
# and odd answers than clients drawing on a larger world. The harness's first full run (digits,
# 300 clients of 1,000 queries per variant, ten at a time on one guard) found benign low-margin
# evidence up to 6 and fleet chain evidence up to 11 (60,000 noisy digits from 400 per fleet); the
# floors sit above them.
_FLOORS = {"chain": 4.0, "low_margin": 8.0, "coverage": 8.0}
_FLEET_FLOORS = {"chain": 16.0, "low_margin": 12.0}
_NEAR_FRACTION = 0.4     # chain radius, as a fraction of the median benign nearest-neighbour distance
_NEAR_SAMPLE = 97        # inputs per sample when measuring benign nearest-neighbour distances
_REPEAT_QUANTILE = 0.999  # re-capture radius: this quantile of distances between noisy re-captures...
_REPEAT_MARGIN = 1.15     # ...times this
_COMBINED_FLOOR = 1.5   # the combined score needs two signals well up, not one just under its threshold
_THRESHOLD_MARGIN = 1.2  # headroom above the worst calibration session, for unseen benign clients
_SKEW_FOCUS = 0.7        # share of a focused (class-skewed) client's queries drawn from its favourite region
_RECAPTURE_SHARE = 0.5   # share of a re-capturing client's queries that re-capture an earlier object
_COVERAGE_BITS = 12      # the native core hashes the first 12 sketch coordinates into cells
_SLACK_QUANTILE = 0.9    # novelty above the benign 90th percentile accumulates as evidence
_NOVELTY_CAP = 4.0       # no single query adds more than (cap - slack) to the novelty CUSUM
_NOISE_TAILS = 6.0       # unclipped sensor noise widens the accepted value range by this many sigmas
_CHAIN_SLACK = (0.03, 0.12)  # the chain CUSUM's drift: 2.5x the benign step rate, within these bounds
_MARGIN_SLACK_MIN = 0.05
_FLEET_GROUP = 8         # calibration sessions interleaved into one simulated fleet
_BANK_SIZE = 4096        # noisy re-captures simulated for calibration (at least 4 per input)...
_BANK_FEATURES = 1 << 26  # ...and fewer for large inputs: each costs a model answer and d noise draws
BEHAVIOURS = ("clean", "noisy", "resubmit", "skewed", "recapture")


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
    lo: float
    hi: float
    mahal_ref: float
    resid_ref: float
    novelty_slack: float
    novelty_cap: float
    near_dist: float
    low_margin: float
    thresholds: tuple[float, ...]
    fleet_thresholds: tuple[float, ...] = (math.inf,) * len(SIGNALS)
    pool: tuple[int, ...] | None = None  # per-axis average-pooling factors; None: no pooling
    repeat_dist: float = 0.0
    chain_slack: float = 0.05
    chain_weight_cap: float = 1.0  # > 1 weights steps found in a thinned memory (off: see docs)
    margin_slack: float = 0.2
    invalid_decay: float = _INVALID_DECAY
    salt: int = 0
    memory: int = 320
    bloom_bits: int = 8192
    fleet_memory: int = 2048
    fleet_bloom_bits: int = 1 << 16
    output_kind: str | None = None  # "probabilities" or "logits" when classes > 0
    input_name: str | None = None
    output_index: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _ARRAYS:  # private read-only copies: a profile cannot change under a guard
            arr = np.array(getattr(self, name), dtype=np.float32)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        pool = (1,) * len(self.input_shape) if self.pool is None else tuple(int(p) for p in self.pool)
        object.__setattr__(self, "pool", pool)
        if math.prod(self.input_shape) != self.dim:
            raise ProfileError("input_shape does not match dim")
        if len(self.thresholds) != len(SIGNALS) or len(self.fleet_thresholds) != len(SIGNALS):
            raise ProfileError(f"thresholds must have {len(SIGNALS)} entries")
        if (self.classes > 0) != (self.output_kind is not None) or self.output_kind not in (None, *OUTPUT_KINDS):
            raise ProfileError("output_kind must be 'probabilities' or 'logits' exactly when classes > 0")
        if not 0 <= self.salt < 1 << 64:
            raise ProfileError("salt must be a 64-bit unsigned integer")
        try:
            _core.Detector(**self.native_args(max_clients=1))
        except (ValueError, TypeError, OverflowError) as e:
            raise ProfileError(f"inconsistent profile: {e}") from None

    @property
    def pooled_dim(self) -> int:
        """Features after pooling: what the sketch is fitted on."""
        assert self.pool is not None
        return math.prod(-(-s // p) for s, p in zip(self.input_shape, self.pool, strict=True))

    # ----------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        benign: np.ndarray,
        *,
        predict: Callable[[np.ndarray], np.ndarray] | str | os.PathLike[str] | None = None,
        target_fpr: float = 0.01,
        sketch_dim: int = 32,
        domain: tuple[float, float] | None = None,
        domain_margin: float = 0.25,
        noise_sigma: float = 0.02,
        noise_clip: bool = True,
        resubmit_rate: float = 0.05,
        streams: int = 200,
        stream_length: int = 1000,
        memory: int = 320,
        fleet_memory: int = 2048,
        max_features: int = 1024,
        pool: tuple[int, ...] | None = None,
        volume_budget: int | None = None,
        input_name: str | None = None,
        output_index: int = 0,
        seed: int = 0,
        progress: bool | None = None,
    ) -> Profile:
        """Fits the sketch on half of ``benign`` and calibrates thresholds on the other half.

        ``benign`` is (n, *input_shape) real-valued benign inputs (cast to float32), n >= 64.
        ``predict`` maps a batch of inputs to the model's class scores (probabilities or logits;
        which one is recorded and enforced by the guard), or is the path of an ONNX model; it
        enables the low-margin signal. ``domain`` is the model's declared value range; by default
        the calibration range, widened by ``domain_margin`` of its width either way.

        The declared sensor noise model: each capture carries Gaussian noise ``noise_sigma`` (in
        input units), clipped to the domain when ``noise_clip`` (otherwise the accepted range
        widens by six sigmas). Re-captures of one object under fresh noise are told apart from
        perturbation steps by their distance, so perturbations smaller than the noise cannot be
        seen as chains (``calibration["chain_blind"]`` says when the noise swallows the whole
        chain radius).

        Calibration sessions (``streams`` of ``stream_length`` queries, five behaviours: clean new
        inputs, noisy new captures, ``resubmit_rate`` exact resubmits, class-skewed, and
        re-capturing the same objects under fresh noise) run through the native detector; groups
        of eight interleaved sessions calibrate the fleet view. Inputs with more than
        ``max_features`` features are average-pooled (``pool``: explicit per-axis factors).
        ``memory`` / ``fleet_memory`` size the near-duplicate memories (entries). ``volume_budget``
        (queries per client) arms the volume signal; None leaves it off. ``progress`` shows a
        progress bar on stderr (None: only when stderr is a terminal).

        Raises:
            ProfileError: bad arguments, too few, non-finite or non-numeric inputs, an unusable
                model, or predict output of the wrong shape.
        """
        bar = _Progress(progress)
        try:
            return cls._build(benign, predict, target_fpr, sketch_dim, domain, domain_margin, noise_sigma,
                              noise_clip, resubmit_rate, streams, stream_length, memory, fleet_memory,
                              max_features, pool, volume_budget, input_name, output_index, seed, bar)
        finally:
            bar.close()

    @classmethod
    def _build(cls, benign: Any, predict: Any, target_fpr: float, sketch_dim: int,
               domain: tuple[float, float] | None, domain_margin: float, noise_sigma: float, noise_clip: bool,
               resubmit_rate: float, streams: int, stream_length: int, memory: int, fleet_memory: int,
               max_features: int, pool: tuple[int, ...] | None, volume_budget: int | None,
               input_name: str | None, output_index: int, seed: int, bar: _Progress) -> Profile:
        started = time.monotonic()
        x = np.asarray(benign)
        if x.dtype.kind not in "fiu":
            raise ProfileError(f"benign inputs must be real numbers, got {x.dtype}")
        if x.ndim < 2 or x.shape[0] < 64:
            raise ProfileError("need at least 64 benign inputs, shaped (n, *input_shape)")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise ProfileError("benign inputs must be finite")
        if not 0 < target_fpr < 1:
            raise ProfileError("target_fpr must be in (0, 1)")
        if not (noise_sigma >= 0 and 0 <= resubmit_rate < 1 and domain_margin >= 0):
            raise ProfileError("noise_sigma, resubmit_rate and domain_margin must be non-negative")
        if streams < 8 or stream_length < 32:
            raise ProfileError("need at least 8 calibration streams of at least 32 queries")
        if volume_budget is not None and volume_budget < 1:
            raise ProfileError("volume_budget must be positive")
        if max_features < _COVERAGE_BITS:
            raise ProfileError(f"max_features must be at least {_COVERAGE_BITS}")
        if isinstance(predict, (str, os.PathLike)):
            from .model import onnx_predict

            predict, name = onnx_predict(predict, output_index)
            input_name = name if input_name is None else input_name
        input_shape = tuple(int(s) for s in x.shape[1:])
        dim = math.prod(input_shape)
        factors = _pool_factors(input_shape, max_features) if pool is None else tuple(int(p) for p in pool)
        if len(factors) != len(input_shape) or any(not 1 <= p <= s for p, s in zip(factors, input_shape, strict=True)):
            raise ProfileError("pool needs one factor per input axis, each in 1..axis length")
        pooled = _pooler(input_shape, factors)
        if domain is None:
            low, high = float(x.min()), float(x.max())
        else:
            low, high = (float(v) for v in domain)
            if not low < high:
                raise ProfileError("domain must be (low, high) with low < high")
        pad = domain_margin * (high - low) + (0.0 if noise_clip else _NOISE_TAILS * noise_sigma)
        lo, hi = _f32(low - pad), _f32(high + pad)

        # Independent streams per purpose, so changing one step never reshuffles another.
        split_rng, noise_rng, near_rng, replay_rng, salt_rng = (np.random.default_rng([seed, i]) for i in range(5))
        order = split_rng.permutation(len(x))
        fit_idx, held_idx = order[: len(x) // 2], order[len(x) // 2 :]
        bar.stage("fitting the sketch", 1)
        fit = pooled(x[fit_idx]).astype(np.float64)
        k = sketch_dim
        if not _COVERAGE_BITS <= k <= min(256, fit.shape[1], len(fit)):
            raise ProfileError(f"sketch_dim must be in {_COVERAGE_BITS}..{min(256, fit.shape[1], len(fit))}")
        mean = fit.mean(axis=0)
        _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
        components = vt[:k]
        z_fit = (fit - mean) @ components.T
        center = np.median(z_fit, axis=0)
        scale = np.maximum(1.4826 * np.median(np.abs(z_fit - center), axis=0), 1e-6)
        parts = _novelty_parts(fit, mean, components, center, scale)
        mahal_ref, resid_ref = (max(float(np.median(v)), 1e-6) for v in parts)
        bar.advance()

        classes, low_margin, kind = 0, 0.0, None
        margins_fit = None
        if predict is not None:
            y_fit = _predict(predict, x[fit_idx], input_shape)
            classes = y_fit.shape[1]
            kind = _output_kind(y_fit)
            margins_fit = _margins(y_fit)
            low_margin = float(np.quantile(margins_fit, 0.1))

        # The held-out half, each input clean and re-captured under the declared noise: what
        # calibration sessions are made of. Computed in chunks, so memory stays bounded whatever
        # the input size.
        held = x[held_idx]
        replicas = max(4, min(32, _BANK_SIZE // len(held), _BANK_FEATURES // (len(held) * dim)))
        bank = _Bank(len(held), replicas + 1, k)
        chunk = max(1, (1 << 24) // (dim * (replicas + 1)))
        bar.stage("noisy re-captures", -(-len(held) // chunk))
        for start in range(0, len(held), chunk):
            part = held[start : start + chunk]
            noise = noise_rng.normal(0, noise_sigma, (len(part), replicas, dim)).astype(np.float32)
            caps = np.concatenate([part.reshape(len(part), 1, dim), part.reshape(len(part), 1, dim) + noise], axis=1)
            if noise_clip:
                np.clip(caps, low, high, out=caps)
            caps = caps.reshape(-1, dim)
            u = pooled(caps.reshape((-1, *input_shape))).astype(np.float64)
            mahal, resid = _novelty_parts(u, mean, components, center, scale)
            rows = slice(start * (replicas + 1), (start + len(part)) * (replicas + 1))
            bank.z[rows] = ((u - mean) @ components.T).astype(np.float32)
            bank.novelty[rows] = (0.5 * mahal / mahal_ref + 0.5 * resid / resid_ref).astype(np.float32)
            bank.valid[rows] = ((caps >= lo) & (caps <= hi)).all(axis=1)
            if predict is not None:
                bank.margin[rows] = _margins(_predict(predict, caps, input_shape))
            bar.advance()
        noisy = bank.novelty.reshape(len(held), replicas + 1)[:, 1:] if noise_sigma > 0 else \
            bank.novelty.reshape(len(held), replicas + 1)[:, :1]
        slack = float(np.quantile(noisy, _SLACK_QUANTILE))
        # Re-captures of one object differ by the noise alone: their distances bound the radius
        # within which a query counts as a re-capture rather than a step.
        zr = bank.z.reshape(len(held), replicas + 1, k)[:, 1:]
        pair = np.linalg.norm(zr[:, 1:] - zr[:, :1], axis=2) if noise_sigma > 0 else np.zeros(1)
        repeat_dist = _REPEAT_MARGIN * float(np.quantile(pair, _REPEAT_QUANTILE))
        near_dist = _near_distance(z_fit, near_rng)
        chain_blind = near_dist <= repeat_dist

        draft = cls(
            dim=dim, sketch_dim=k, classes=classes, input_shape=input_shape, pool=factors,
            mean=mean.astype(np.float32), components=components.astype(np.float32),
            sketch_center=center.astype(np.float32), sketch_scale=scale.astype(np.float32),
            lo=lo, hi=hi, mahal_ref=_f32(mahal_ref), resid_ref=_f32(resid_ref), novelty_slack=_f32(slack),
            novelty_cap=_NOVELTY_CAP, near_dist=_f32(near_dist), repeat_dist=_f32(repeat_dist),
            low_margin=_f32(low_margin), thresholds=(math.inf,) * len(SIGNALS),
            salt=int(salt_rng.integers(0, 1 << 63)) * 2 + 1, memory=memory, fleet_memory=fleet_memory,
            output_kind=kind, input_name=input_name, output_index=output_index,
        )
        sessions = _sessions(bank, replay_rng, streams, stream_length, resubmit_rate, noise_sigma > 0)
        bar.stage("replaying benign sessions", 2)
        # Pass 1 measures how often benign sessions step within the chain radius and answer with a
        # low margin; the slacks (CUSUM drifts) sit above those rates. Pass 2 sets the thresholds.
        first = _replay(draft, bank, sessions, low_margin)
        steps = float((first.client[:, :, _EVENT] == 1).mean())
        chain_slack = min(max(2.5 * steps, _CHAIN_SLACK[0]), _CHAIN_SLACK[1])
        margin_rate = float(bank.margin_flags(low_margin).mean()) if predict is not None else 0.0
        margin_slack = max(_MARGIN_SLACK_MIN, 2.0 * margin_rate)
        draft = replace(draft, chain_slack=_f32(chain_slack), margin_slack=_f32(margin_slack))
        bar.advance()
        final = _replay(draft, bank, sessions, low_margin)
        bar.advance()
        thresholds = _thresholds(final.client[:, :, : len(SIGNALS)], target_fpr, volume_budget, classes > 0,
                                 novelty_floor=2 * (_NOVELTY_CAP - slack),
                                 coverage_armed=len(held) >= stream_length, floors=_FLOORS)
        fleet = _thresholds(final.fleet, target_fpr, None, classes > 0, novelty_floor=4 * (_NOVELTY_CAP - slack),
                            coverage_armed=False, floors=_FLEET_FLOORS, fleet=True)
        calibration = {
            "target_fpr": target_fpr, "benign_inputs": len(x), "streams": streams,
            "stream_length": stream_length, "noise_sigma": noise_sigma, "noise_clip": bool(noise_clip),
            "domain": [low, high], "resubmit_rate": resubmit_rate, "seed": seed,
            "behaviours": list(BEHAVIOURS), "noise_replicas": replicas,
            "benign_step_rate": round(steps, 6), "chain_blind": bool(chain_blind),
            "seconds": round(time.monotonic() - started, 1),
        }
        return replace(draft, thresholds=thresholds, fleet_thresholds=fleet, calibration=calibration)

    # ------------------------------------------------------------ serialisation

    def _header(self) -> dict[str, Any]:
        def limit(t: float) -> float | None:
            return None if math.isinf(t) else t

        return {
            "dim": self.dim, "input_shape": list(self.input_shape), "pool": list(self.pool or ()),
            "sketch_dim": self.sketch_dim, "classes": self.classes, "output_kind": self.output_kind,
            "input_name": self.input_name, "output_index": self.output_index, "lo": self.lo, "hi": self.hi,
            "mahal_ref": self.mahal_ref, "resid_ref": self.resid_ref, "novelty_slack": self.novelty_slack,
            "novelty_cap": self.novelty_cap, "repeat_dist": self.repeat_dist, "near_dist": self.near_dist,
            "chain_slack": self.chain_slack, "chain_weight_cap": self.chain_weight_cap,
            "low_margin": self.low_margin, "margin_slack": self.margin_slack,
            "invalid_decay": self.invalid_decay, "salt": self.salt,
            "thresholds": [limit(t) for t in self.thresholds],
            "fleet_thresholds": [limit(t) for t in self.fleet_thresholds],
            "memory": self.memory, "bloom_bits": self.bloom_bits, "fleet_memory": self.fleet_memory,
            "fleet_bloom_bits": self.fleet_bloom_bits, "calibration": self.calibration,
        }

    def to_bytes(self) -> bytes:
        """The canonical, versioned encoding (see the module docstring)."""
        text = json.dumps(self._header(), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        arrays = b"".join(np.ascontiguousarray(getattr(self, a), "<f4").tobytes() for a in _ARRAYS)
        return MAGIC + struct.pack("<HI", VERSION, len(text)) + text + arrays

    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_bytes`: what state snapshots are bound to."""
        return hashlib.sha256(self.to_bytes()).digest()

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
        if version == 1:
            raise ProfileError("profile version 1 (window counts, recent-query history) is no longer supported: "
                               "rebuild the profile with `edgeguard profile`")
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
            shape = tuple(_count(s) for s in header["input_shape"])
            pool = tuple(_count(s) for s in header["pool"])
            if len(pool) != len(shape) or not all(1 <= p <= s for p, s in zip(pool, shape, strict=True)):
                raise ProfileError("profile pool factors do not fit its input shape")
            dim, k = _count(header["dim"]), _count(header["sketch_dim"])
            pooled = math.prod(-(-s // p) for s, p in zip(shape, pool, strict=True))
            if pooled > 1 << 16:
                raise ProfileError("profile pooled input is too large")
            sizes = {"mean": pooled, "components": pooled * k, "sketch_center": k, "sketch_scale": k}
            offset, arrays = start + header_len, {}
            if len(data) != offset + 4 * sum(sizes.values()):
                raise ProfileError("profile arrays have the wrong length")
            for name in _ARRAYS:
                arrays[name] = np.frombuffer(data, "<f4", sizes[name], offset).astype(np.float32)
                offset += 4 * sizes[name]
            arrays["components"] = arrays["components"].reshape(k, pooled)

            def limits(key: str) -> tuple[float, ...]:
                return tuple(math.inf if t is None else _number(t) for t in header[key])

            if not isinstance(header["calibration"], dict):
                raise ProfileError("calibration must be an object")
            for key in ("input_name", "output_kind"):
                if header[key] is not None and not isinstance(header[key], str):
                    raise ProfileError(f"{key} must be a string or null")
            profile = cls(
                dim=dim, sketch_dim=k, classes=_count(header["classes"]), input_shape=shape, pool=pool,
                lo=_number(header["lo"]), hi=_number(header["hi"]),
                mahal_ref=_number(header["mahal_ref"]), resid_ref=_number(header["resid_ref"]),
                novelty_slack=_number(header["novelty_slack"]), novelty_cap=_number(header["novelty_cap"]),
                repeat_dist=_number(header["repeat_dist"]), near_dist=_number(header["near_dist"]),
                chain_slack=_number(header["chain_slack"]), chain_weight_cap=_number(header["chain_weight_cap"]),
                low_margin=_number(header["low_margin"]), margin_slack=_number(header["margin_slack"]),
                invalid_decay=_number(header["invalid_decay"]), salt=_count(header["salt"]),
                thresholds=limits("thresholds"), fleet_thresholds=limits("fleet_thresholds"),
                memory=_count(header["memory"]), bloom_bits=_count(header["bloom_bits"]),
                fleet_memory=_count(header["fleet_memory"]), fleet_bloom_bits=_count(header["fleet_bloom_bits"]),
                output_kind=header["output_kind"], input_name=header["input_name"],
                output_index=_count(header["output_index"]), calibration=header["calibration"], **arrays,
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

    def native_args(self, max_clients: int, fleet: bool = True) -> dict[str, Any]:
        """Keyword arguments for the native ``_core.Detector`` built from this profile."""
        return dict(
            dim=self.dim, input_shape=list(self.input_shape), pool=list(self.pool or ()),
            sketch_dim=self.sketch_dim, classes=self.classes, output_kind=_KIND_CODES[self.output_kind],
            mean=self.mean, components=self.components,
            sketch_center=self.sketch_center, sketch_scale=self.sketch_scale, lo=self.lo, hi=self.hi,
            mahal_ref=self.mahal_ref, resid_ref=self.resid_ref, novelty_slack=self.novelty_slack,
            novelty_cap=self.novelty_cap, repeat_dist=self.repeat_dist, near_dist=self.near_dist,
            chain_slack=self.chain_slack, chain_weight_cap=self.chain_weight_cap, low_margin=self.low_margin,
            margin_slack=self.margin_slack, invalid_decay=self.invalid_decay, salt=self.salt,
            thresholds=list(self.thresholds), fleet_thresholds=list(self.fleet_thresholds),
            memory=self.memory, bloom_bits=self.bloom_bits, fleet_memory=self.fleet_memory if fleet else 0,
            fleet_bloom_bits=self.fleet_bloom_bits, max_clients=max_clients,
        )


# ------------------------------------------------------------------------ helpers

_EVENT = len(SIGNALS) + 3  # column of the memory event in the native batch table
_KIND_CODES = {None: 0, "probabilities": 1, "logits": 2}


def _count(v: object) -> int:
    if type(v) is not int or v < 0:
        raise ProfileError("expected a non-negative integer in the profile header")
    return v


def _number(v: object) -> float:
    if (type(v) is int or type(v) is float) and math.isfinite(v):
        return float(v)
    raise ProfileError("expected a finite number in the profile header")


class _Progress:
    """A one-line progress bar on stderr, shown only on a terminal (or when asked)."""

    def __init__(self, enabled: bool | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else bool(enabled)
        self.label, self.total, self.done = "", 1, 0
        self.shown = False

    def stage(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(1, total), 0
        self._draw()

    def advance(self) -> None:
        self.done = min(self.total, self.done + 1)
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        width = 24
        filled = width * self.done // self.total
        self.stream.write(f"\rprofile: [{'#' * filled}{'.' * (width - filled)}] {self.label:<28}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _pool_factors(shape: tuple[int, ...], max_features: int) -> tuple[int, ...]:
    """Per-axis pooling factors bringing the input to at most max_features: the last two (spatial)
    axes first, the longest pooled side halved at each step."""
    factors = [1] * len(shape)

    def size() -> int:
        return math.prod(-(-s // f) for s, f in zip(shape, factors, strict=True))

    for axes in (list(range(max(0, len(shape) - 2), len(shape))), list(range(len(shape)))):
        while size() > max_features:
            sides = [(-(-shape[a] // factors[a]), a) for a in axes if factors[a] < shape[a]]
            if not sides:
                break
            _, a = max(sides, key=lambda t: (t[0], -t[1]))
            factors[a] = min(shape[a], factors[a] * 2)
    return tuple(factors)


def _pooler(shape: tuple[int, ...], factors: tuple[int, ...]) -> Callable[[np.ndarray], npt.NDArray[np.float32]]:
    """Average-pools (n, *shape) inputs by factors (partial edge blocks average what they hold),
    flattened to (n, pooled): the native detector's reduction, in numpy."""
    if all(f == 1 for f in factors):
        return lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
    padded = [-(-s // f) * f for s, f in zip(shape, factors, strict=True)]
    counts = np.zeros(padded, np.float32)
    counts[tuple(slice(0, s) for s in shape)] = 1
    split = [v for p, f in zip(padded, factors, strict=True) for v in (p // f, f)]
    members = counts.reshape(split).sum(axis=tuple(range(1, 2 * len(shape), 2)))

    def pool(x: np.ndarray) -> npt.NDArray[np.float32]:
        x = np.asarray(x, np.float32).reshape(-1, *shape)
        out = np.zeros((len(x), *padded), np.float32)
        index = (slice(None), *(slice(0, s) for s in shape))
        out[index] = x
        sums = out.reshape(len(x), *split).sum(axis=tuple(range(2, 2 * len(shape) + 1, 2)))
        pooled: npt.NDArray[np.float32] = (sums / members).reshape(len(x), -1).astype(np.float32, copy=False)
        return pooled

    return pool


def _predict(
    predict: Callable[[np.ndarray], np.ndarray], x: npt.NDArray[np.float32], shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    y = np.asarray(predict(x.reshape((len(x), *shape))), dtype=np.float32)
    if y.ndim != 2 or y.shape[0] != len(x) or y.shape[1] < 2 or not np.isfinite(y).all():
        raise ProfileError("predict must return finite class scores shaped (n, classes >= 2)")
    return y


def _output_kind(y: npt.NDArray[np.float32]) -> str:
    """Probabilities when every row is a distribution; logits otherwise."""
    if (y >= -1e-4).all() and (y <= 1 + 1e-4).all() and np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def _margins(y: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    top = np.sort(y, axis=1)
    return (top[:, -1] - top[:, -2]).astype(np.float32)


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


def _near_distance(z: npt.NDArray[np.float64], rng: np.random.Generator) -> float:
    """A fraction of the median nearest-neighbour sketch distance within small benign samples.

    The median is stable across calibration subsets where low quantiles are not (digits subsets
    differ 2-3x in how many near-twins they hold); small-perturbation chains sit well inside it.
    """
    samples = []
    for _ in range(32):
        s = z[rng.choice(len(z), size=min(_NEAR_SAMPLE, len(z)), replace=False)]
        d = ((s[:, None, :] - s[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        d[d == 0] = np.inf  # identical calibration samples are resubmits, not neighbours
        samples.append(np.sqrt(d.min(axis=1)))
    nearest = np.concatenate(samples)
    return _NEAR_FRACTION * float(np.median(nearest[np.isfinite(nearest)]))


class _Bank:
    """Held-out inputs as the detector sees them: for object i, row i*R is the clean capture and
    rows i*R+1.. its noisy re-captures."""

    def __init__(self, objects: int, per_object: int, k: int) -> None:
        n = objects * per_object
        self.objects, self.per_object = objects, per_object
        self.z = np.zeros((n, k), np.float32)
        self.novelty = np.zeros(n, np.float32)
        self.valid = np.ones(n, np.uint8)
        self.margin = np.full(n, np.inf, np.float32)

    def margin_flags(self, low_margin: float) -> npt.NDArray[np.uint8]:
        return (self.margin < low_margin).astype(np.uint8)


def _sessions(bank: _Bank, rng: np.random.Generator, streams: int, length: int, resubmit_rate: float,
              noisy: bool) -> list[npt.NDArray[np.int64]]:
    """Bank rows of each simulated benign session, one behaviour per session in turn."""
    n, r = bank.objects, bank.per_object
    z = bank.z[:: r]
    out = []
    for s in range(streams):
        behaviour = BEHAVIOURS[s % len(BEHAVIOURS)]
        walk = np.concatenate([rng.permutation(n) for _ in range(-(-length // n))])[:length]
        replica = np.zeros(length, np.int64)
        if behaviour == "skewed":  # most queries from the region around one anchor
            near = np.argsort(((z - z[rng.integers(n)]) ** 2).sum(1))[: max(8, n // 5)]
            walk = np.where(rng.random(length) < _SKEW_FOCUS, rng.choice(near, length), rng.integers(n, size=length))
        elif behaviour == "recapture":  # re-capture objects already captured, each time under fresh noise
            seen: list[int] = []
            for t in range(length):
                if seen and rng.random() < _RECAPTURE_SHARE:
                    walk[t] = seen[int(rng.integers(len(seen)))]
                else:
                    seen.append(int(walk[t]))
        if noisy and behaviour in ("noisy", "recapture"):
            replica = rng.integers(1, r, size=length)
        rows = walk * r + replica
        if behaviour == "resubmit":
            again = np.flatnonzero(rng.random(length) < resubmit_rate)
            again = again[again > 0]
            rows[again] = rows[rng.integers(0, again)]
        out.append(rows)
    return out


@dataclass
class _Replay:
    client: npt.NDArray[np.float32]  # (streams, length, columns)
    fleet: npt.NDArray[np.float32]   # (groups, length * group, signals)


def _replay(profile: Profile, bank: _Bank, sessions: list[npt.NDArray[np.int64]], low_margin: float) -> _Replay:
    """Runs the sessions through the native detector with every signal disarmed, in groups of
    interleaved sessions that share one fleet state (blocks of 8 queries per session in turn)."""
    streams, length = len(sessions), len(sessions[0])
    client = np.empty((streams, length, _core.DETECTOR_COLUMNS), np.float32)
    groups = -(-streams // _FLEET_GROUP)
    fleet = np.empty((groups, _FLEET_GROUP * length, len(SIGNALS)), np.float32)
    flags = bank.margin_flags(low_margin) if profile.classes else None
    block = 8
    for g in range(groups):
        members = range(g * _FLEET_GROUP, min(streams, (g + 1) * _FLEET_GROUP))
        det = _core.Detector(**profile.native_args(max_clients=len(members)))
        rows = []
        for start in range(0, length, block):
            for s in members:
                idx = sessions[s][start : start + block]
                t = det.observe_features(f"calibration-{s}", bank.z[idx], bank.novelty[idx], bank.valid[idx],
                                         None if flags is None else flags[idx])
                client[s, start : start + len(idx)] = t
                rows.append(t[:, -len(SIGNALS):])
        table = np.concatenate(rows)
        fleet[g, : len(table)] = table
        fleet[g, len(table):] = table[-1]
    return _Replay(client, fleet)


def _thresholds(
    stats: npt.NDArray[np.float32],
    target_fpr: float,
    volume_budget: int | None,
    has_outputs: bool,
    novelty_floor: float,
    coverage_armed: bool,
    floors: dict[str, float],
    fleet: bool = False,
) -> tuple[float, ...]:
    """Per-signal thresholds so that at most target_fpr of benign sessions ever cross any of them.

    No threshold is below its floor: the novelty CUSUM needs at least two maximally novel queries,
    the chain CUSUM four steps in a row and the other counts two events, so a single odd benign
    query never alerts. Coverage is armed only when the calibration pool has at least a session's
    worth of distinct inputs: with fewer, the replayed sessions cannot reach the coverage of a real
    client sending new inputs. The fleet view arms novelty, chain, low margin and combined only.
    """
    worst = stats.max(axis=1)  # (sessions, signals): each session's worst moment
    armed = ["novelty", "chain", "combined"] + (["low_margin"] if has_outputs else [])
    if coverage_armed:
        armed.append("coverage")
    q = 1 - target_fpr / len(armed)
    t = dict.fromkeys(SIGNALS, math.inf)
    if not fleet:
        t["invalid"] = _INVALID_ALERT
    floors = dict(floors, novelty=novelty_floor)
    for name in ("novelty", "chain", "low_margin", "coverage"):
        if name in armed:
            level = _THRESHOLD_MARGIN * float(np.quantile(worst[:, SIGNALS.index(name)], q))
            if name != "novelty":  # a finite calibration pool understates the tail by a step
                level += 1
            t[name] = max(floors[name], level)
    # The combined score is the sum of the evidence signals' ratios, so it is calibrated after them.
    idx = [SIGNALS.index(n) for n in ("novelty", "chain", "low_margin")]
    ratios = sum((stats[:, :, j] / t[SIGNALS[j]] for j in idx), np.zeros_like(stats[:, :, 0]))
    t["combined"] = max(_COMBINED_FLOOR, _THRESHOLD_MARGIN * float(np.quantile(ratios.max(axis=1), q)))
    if volume_budget is not None:
        t["volume"] = float(volume_budget)
    return tuple(_f32(t[n]) if math.isfinite(t[n]) else math.inf for n in SIGNALS)
