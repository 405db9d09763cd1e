import pytest
import torch


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread: on two shared cores it is many times faster than two when the other core is busy."""
    monkeypatch.setenv("SELFSTUDY_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
