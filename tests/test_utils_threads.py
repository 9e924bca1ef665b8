import torch
from threadpoolctl import threadpool_info

from neurodecode._utils.threads import set_threads, threads


def test_threads_are_limited_and_restored():
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.get_num_threads() == before


def test_set_threads_rejects_zero():
    import pytest
    with pytest.raises(ValueError, match="at least 1"):
        set_threads(0)
