"""Hand memory the process has freed back to the operating system.

A search allocates and frees the same large buffers every round: a training
step's temporaries, the per-weight arrays of pruning, rewinding and resetting
the optimizer.  glibc's ``malloc`` keeps freed blocks smaller than its mmap
threshold (at most 32 MB: most weights of a large model) in its heaps, and
fragmentation there stops the next phase from reusing them, so resident memory
climbs phase after phase although nothing stays alive.  ``malloc_trim(0)``
returns every free page of those heaps to the system.  Elsewhere (macOS,
Windows, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed() -> bool:
    """Return freed heap memory to the system (glibc); whether anything was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
