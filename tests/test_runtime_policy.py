"""Load policies: the signed validity window (injectable clock) and the anti-rollback version store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import edgeguard
from edgeguard.errors import ExpiredError, NotYetValidError, PolicyError, RollbackError
from edgeguard.policy import VersionStore
from runtime_support import Keys, make_keys, make_mlp, seal

T0 = 1_800_000_000


@pytest.fixture(scope="module")
def policy_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys, Path]:
    tmp = tmp_path_factory.mktemp("policy")
    return make_mlp(tmp / "clf.onnx", widths=(8, 16, 4)), make_keys(tmp), tmp


def _load(path: Path, keys: Keys, **kwargs: object) -> edgeguard.InferenceSession:
    return edgeguard.InferenceSession(path, identity=keys.identity_path, trust=keys.trust, **kwargs)  # type: ignore[arg-type]


def test_validity_window_is_enforced_with_the_injected_clock(policy_env: tuple[Path, Keys, Path]) -> None:
    model, keys, tmp = policy_env
    sealed = seal(model, tmp / "window.sealed", keys, not_before=T0, not_after=T0 + 3600)
    with pytest.raises(NotYetValidError, match="not valid before 2027-01-15T08:00:00Z"):
        _load(sealed, keys, clock=lambda: T0 - 1)
    with _load(sealed, keys, clock=lambda: T0) as sess:
        assert sess.run(None, {"x": np.ones((1, 8), np.float32)})[0].shape == (1, 4)
    _load(sealed, keys, clock=lambda: T0 + 3600).close()  # not_after itself is still valid
    with pytest.raises(ExpiredError, match="'clf' v1 expired"):
        _load(sealed, keys, clock=lambda: T0 + 3601)
    with pytest.raises(ExpiredError):
        edgeguard.open_sealed(sealed, identity=keys.identity_path, trust=keys.trust, clock=lambda: T0 + 10**6)
    assert issubclass(ExpiredError, PolicyError) and issubclass(NotYetValidError, PolicyError)


def test_version_store_refuses_rollback_per_model_name(policy_env: tuple[Path, Keys, Path]) -> None:
    model, keys, tmp = policy_env
    v1 = seal(model, tmp / "v1.sealed", keys, version=1)
    v2 = seal(model, tmp / "v2.sealed", keys, version=2)
    other_v1 = seal(model, tmp / "other.sealed", keys, version=1, name="other")
    store_path = tmp / "state" / "versions.json"
    store_path.parent.mkdir()
    _load(v1, keys, version_store=store_path).close()
    _load(v2, keys, version_store=store_path).close()
    with pytest.raises(RollbackError, match="'clf' v1 is older than v2"):
        _load(v1, keys, version_store=store_path)
    _load(v2, keys, version_store=store_path).close()  # the same version again is fine
    _load(other_v1, keys, version_store=VersionStore(store_path)).close()  # versions are per name
    assert json.loads(store_path.read_text()) == {"models": {"clf": 2, "other": 1}}
    assert store_path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in store_path.parent.iterdir()) == ["versions.json", "versions.json.lock"]
    _load(v1, keys).close()  # without a store there is no anti-rollback (documented)


def test_corrupt_version_store_fails_closed(policy_env: tuple[Path, Keys, Path], tmp_path: Path) -> None:
    model, keys, tmp = policy_env
    sealed = seal(model, tmp_path / "m.sealed", keys)
    store_path = tmp_path / "versions.json"
    for damaged in (b"{not json", b'{"models": {"clf": "2"}}', b"[]"):
        store_path.write_bytes(damaged)
        with pytest.raises(PolicyError, match="corrupt"):
            _load(sealed, keys, version_store=store_path)
    store_path.unlink()
    store = VersionStore(store_path)
    assert store.highest("clf") is None
    store.check_and_record("clf", 5)
    assert store.highest("clf") == 5 and os.path.exists(store_path)
