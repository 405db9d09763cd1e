"""Fixtures for the method tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_init():
    """Weight initialisation draws from torch's global RNG; seed it so runs repeat."""
    torch.manual_seed(0)
