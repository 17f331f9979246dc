"""glibc malloc told to keep freed memory for the next batch instead of handing it back to the kernel.

Every batch allocates its columns, temporaries and outputs afresh: 4 MB of outputs alone for a
gradient at 10^5 points. With glibc's defaults a block that size is mmap'ed, or trimmed off the heap
when freed, so the next batch takes a page fault for every 4 KiB it touches again: 1.7 ms of a
3.5 ms gradient at 10^5 points (bench/PROFILE.md). Raising the mmap and trim thresholds keeps up to
`keep_bytes` of freed memory at the top of the heap for reuse; the resident size then stays at
the high-water mark of concurrent batches (bounded by the admission limits) instead of falling
back between requests. One arena for all threads, so a batch reuses what the last one freed
whichever compute thread runs it (with one arena per thread, each thread's first big batch
faulted its memory in again: 28 to 41 ms instead of 16 at 10^6 points); Python allocates under
the GIL, so threads seldom wait for that arena's lock.

Blocks of 32 MiB or more (glibc caps the mmap threshold there: a 10^6-point gradient's 40 MB reply,
a 48 MB request) are mmapped afresh, and page-faulted in, only when the heap has no room for them:
glibc carves any block from the heap's free memory first. So the heap also grows `keep_bytes` at a
time (`M_TOP_PAD`, address space; pages become resident as they are used) and trims back to that
much, which leaves room for the big blocks too: joining a 40 MB reply took 15 to 40 ms of page
faults each call, and no fault after the first (bench/PROFILE.md).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# glibc refuses mmap thresholds above half its 64 MiB per-thread heap.
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_INT_MAX = 2**31 - 1


def keep_freed_memory(keep_bytes: int) -> bool:
    """Set glibc's trim threshold and top pad to `keep_bytes` (mmap threshold up to 32 MiB), one arena.

    False if this is not glibc. 0 leaves the allocator's defaults alone. Process-wide and for the
    life of the process; call it before threads start allocating (they keep the arena they got).
    """
    if keep_bytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0 and changes nothing.
    applied = bool(mallopt(M_MMAP_THRESHOLD, min(keep_bytes, MMAP_THRESHOLD_MAX)))
    applied = applied and bool(mallopt(M_TRIM_THRESHOLD, min(keep_bytes, _INT_MAX)))
    applied = applied and bool(mallopt(M_TOP_PAD, min(keep_bytes, _INT_MAX)))
    applied = applied and bool(mallopt(M_ARENA_MAX, 1))
    if not applied:
        log.info("malloc thresholds not changed: this C library has no glibc mallopt")
        return False
    _grow_heap(ctypes.CDLL(None))
    return True


def _grow_heap(libc: ctypes.CDLL) -> None:
    """Make the heap grow now, by `M_TOP_PAD` (address space: nothing becomes resident), so that the
    first blocks over the mmap cap find room in it. Until a block below the cap made it grow,
    every reply of 32 MiB or more was mmapped afresh: the 40 MB a 10^6-point gradient's reply is
    allocated as took 16,000 page faults a call. Blocks just under the cap come from the heap, and
    two of them are more than its free top can hold at start-up."""
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    blocks = [libc.malloc(MMAP_THRESHOLD_MAX - 4096) for _ in range(2)]
    for block in blocks:
        libc.free(block)
