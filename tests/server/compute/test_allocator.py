"""allocator.keep_freed_memory: freed batch-sized blocks stay in the process for the next batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from chainrule.server.compute import allocator

# In a fresh interpreter: RSS (pages) before and after freeing a 16 MB array it has touched.
_PROBE = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from chainrule.server.compute import allocator
    applied = allocator.keep_freed_memory(int(sys.argv[1]))
    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    block = np.ones(2_000_000)
    held = resident()
    del block
    print(applied, held - resident())
    """
)


def _freed_and_returned(keep_bytes: int) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(keep_bytes)], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_batch_memory_stays_resident_only_when_asked() -> None:
    applied, returned = _freed_and_returned(0)
    assert not applied
    assert returned >= 15_000_000  # glibc's defaults: the 16 MB block goes back to the kernel
    applied, returned = _freed_and_returned(256 * 1024 * 1024)
    if not applied:
        pytest.skip("not glibc")
    assert returned < 1_000_000


def test_nothing_changes_for_zero() -> None:
    assert allocator.keep_freed_memory(0) is False


# In a fresh interpreter: page faults of filling a 40 MB bytes object (over glibc's 32 MiB mmap cap,
# like a reply's) the third time, with nothing allocated before it that made the heap grow. Not
# numpy: it asks for huge pages for big arrays, which hides the faults.
_BIG_PROBE = textwrap.dedent(
    """
    import resource, sys
    from chainrule.server.compute import allocator
    allocator.keep_freed_memory(int(sys.argv[1]))
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        big = b"x" * 40_000_000
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del big
    print(faults)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_blocks_over_the_mmap_cap_reuse_kept_memory() -> None:
    def faults(keep_bytes: int) -> int:
        command = [sys.executable, "-c", _BIG_PROBE, str(keep_bytes)]
        return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    assert faults(0) >= 9_000  # mmapped afresh: a fault for each of its 9,766 pages
    assert faults(256 * 1024 * 1024) < 1_000
