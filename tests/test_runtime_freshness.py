"""Freshness: the signed validity window (injectable clock) and the anti-rollback version store, both checked before any key is unwrapped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import edgeguard
from edgeguard.errors import ExpiredError, LoadRefusedError, NotYetValidError, RollbackError
from edgeguard.freshness import VersionStore
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
    assert issubclass(ExpiredError, LoadRefusedError) and issubclass(NotYetValidError, LoadRefusedError)


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
    model, keys, _tmp = policy_env
    sealed = seal(model, tmp_path / "m.sealed", keys)
    store_path = tmp_path / "versions.json"
    for damaged in (b"{not json", b'{"models": {"clf": "2"}}', b"[]"):
        store_path.write_bytes(damaged)
        with pytest.raises(LoadRefusedError, match="corrupt"):
            _load(sealed, keys, version_store=store_path)
    store_path.unlink()
    store = VersionStore(store_path)
    assert store.highest("clf") is None
    store.check_and_record("clf", 5)
    assert store.highest("clf") == 5 and os.path.exists(store_path)


class _SpyIdentity:
    """A real device identity that records whether anyone asked it to unwrap a key."""

    def __init__(self, keys: Keys) -> None:
        from edgeguard.recipients import load_identity

        self._inner = load_identity(keys.identity_path)
        self.calls = 0

    def unwrap(self, stanzas: object, file_salt: bytes) -> bytes | None:
        self.calls += 1
        return self._inner.unwrap(stanzas, file_salt)  # type: ignore[arg-type]


def test_freshness_is_checked_before_any_key_is_unwrapped(policy_env: tuple[Path, Keys, Path], tmp_path: Path) -> None:
    model, keys, _tmp = policy_env
    expired = seal(model, tmp_path / "expired.sealed", keys, not_after=T0)
    spy = _SpyIdentity(keys)
    with pytest.raises(ExpiredError):
        edgeguard.InferenceSession(expired, identity=spy, trust=keys.trust, clock=lambda: T0 + 1)
    assert spy.calls == 0
    store = VersionStore(tmp_path / "versions.json")
    store.check_and_record("clf", 5)
    old = seal(model, tmp_path / "v4.sealed", keys, version=4)
    with pytest.raises(RollbackError):
        edgeguard.open_sealed(old, identity=spy, trust=keys.trust, version_store=store)
    assert spy.calls == 0
    edgeguard.InferenceSession(expired, identity=spy, trust=keys.trust, clock=lambda: T0).close()
    assert spy.calls == 1


def test_a_version_is_recorded_only_once_the_whole_file_verified(policy_env: tuple[Path, Keys, Path], tmp_path: Path) -> None:
    from edgeguard.errors import IntegrityError

    model, keys, _tmp = policy_env
    v9 = seal(model, tmp_path / "v9.sealed", keys, version=9)
    data = bytearray(v9.read_bytes())
    data[-1] ^= 1  # the last chunk's tag: the signed header (and its version) is intact
    v9.write_bytes(bytes(data))
    store = VersionStore(tmp_path / "versions.json")
    with pytest.raises(IntegrityError):
        _load(v9, keys, version_store=store)
    assert store.highest("clf") is None
    _load(seal(model, tmp_path / "v2.sealed", keys, version=2), keys, version_store=store).close()
    assert store.highest("clf") == 2


def test_old_names_still_work_for_one_release_with_a_warning() -> None:
    import importlib
    import sys

    from edgeguard import errors, unseal

    with pytest.warns(DeprecationWarning, match="use LoadRefusedError"):
        assert errors.PolicyError is LoadRefusedError
    with pytest.warns(DeprecationWarning, match="use LoadRefusedError"):
        assert edgeguard.PolicyError is LoadRefusedError
    with pytest.warns(DeprecationWarning, match="use decrypt_file"):
        assert unseal.open_sealed_file is unseal.decrypt_file
    sys.modules.pop("edgeguard.policy", None)
    with pytest.warns(DeprecationWarning, match="use edgeguard.freshness"):
        old = importlib.import_module("edgeguard.policy")
    assert old.VersionStore is VersionStore
