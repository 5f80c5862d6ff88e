"""Session fixtures for the sealed-format tests (helpers live in helpers.py)."""

from __future__ import annotations

import pytest

from helpers import Keys, new_keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return new_keys()
