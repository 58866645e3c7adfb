"""Training fixtures."""

from __future__ import annotations

import pytest
from training_helpers import PhotoPairs


@pytest.fixture(scope="session")
def photo_pairs():
    return PhotoPairs()
