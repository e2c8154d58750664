import json
import os
import platform
import subprocess
import sys

import pytest

from helpers import ROOT

# In a fresh process: the test process's heap may already hold freed blocks from earlier tests.
ALLOCATE_AND_FREE = """
import json, re, sys
from pathlib import Path
import torch
from transferlab import runtime

def resident_mib():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

if sys.argv[1] == "reuse":
    runtime.reuse_freed_blocks()
before = resident_mib()
after_free = []
for _ in range(20):  # an optimization allocates and frees the same sizes again and again
    block = torch.ones(64 * 2**20 // 4)  # above glibc's largest mmap threshold (32 MiB)
    del block
    after_free.append(resident_mib() - before)
print(json.dumps(after_free))
"""


def resident_after_each_free(mode: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", ALLOCATE_AND_FREE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_full_size_tensors_stay_with_the_process_for_the_next_evaluation():
    # glibc's default: each freed 64 MiB block goes back to the system (and is page-faulted in again).
    assert max(resident_after_each_free("default")) < 16
    kept = resident_after_each_free("reuse")
    assert kept[0] > 48
    assert kept[-1] == kept[-10], "the heap should stop growing once freed blocks are reused"
