"""Device resolution (one contract for every caller) and the autocast context of a precision."""

import pytest
import torch

from selfstudy.core.device import autocast, autocast_dtype, check_precision, resolve_device
from selfstudy.core.distributed import DistInfo
from selfstudy.errors import UserError


def test_auto_picks_cuda_only_when_one_is_visible():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("asked", ["cpu", torch.device("cpu"), "cpu:0"])
def test_cpu_as_asked(asked):
    assert resolve_device(asked).type == "cpu"


@pytest.mark.parametrize("asked", ["tpu", "vulkan", "cuda:x", "", "mps"])
def test_unknown_devices_name_what_is_allowed(asked):
    with pytest.raises(UserError, match=r"unknown device .*allowed: auto, cpu, cuda, cuda:N"):
        resolve_device(asked)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_a_user_error():
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        resolve_device("cuda:1")


def test_under_torchrun_each_process_takes_its_own_device():
    assert resolve_device("cuda", DistInfo(rank=1, world=2, local_rank=1, device="cpu")) == torch.device("cpu")
    assert resolve_device("cpu", DistInfo()) == torch.device("cpu")  # one process: as asked


def test_precisions():
    assert check_precision("bf16") == "bf16"
    with pytest.raises(UserError, match="unknown precision 'fp8'; allowed: fp32, bf16, fp16"):
        check_precision("fp8")
    assert autocast_dtype("fp32") is None and autocast_dtype("fp16") is torch.float16


def test_autocast_runs_a_matmul_in_bf16_and_fp32_leaves_it_alone():
    a = torch.randn(4, 4)
    with autocast("bf16", a.device):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32
