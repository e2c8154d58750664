import platform
import re
from pathlib import Path

import pytest
import torch

from transferlab import runtime


def resident_mib() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_full_size_tensors_stay_with_the_process_for_the_next_evaluation():
    runtime.reuse_freed_blocks()
    before = resident_mib()
    block = torch.ones(64 * 2**20 // 4)  # above glibc's largest mmap threshold (32 MiB)
    del block
    # Without the setting glibc unmaps the block at once and the next one page-faults it in again.
    assert resident_mib() - before > 48
    grown = []
    for _ in range(20):  # an optimization allocates and frees the same sizes again and again
        block = torch.ones(64 * 2**20 // 4)
        del block
        grown.append(resident_mib() - before)
    assert grown[-1] == grown[-10], "the heap should stop growing once freed blocks are reused"
