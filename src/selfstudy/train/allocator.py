"""Keep freed memory in the process on a CPU, so that training steps stop paying for page faults.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a large block (above its
*mmap threshold*, 128 KiB rising to at most 32 MiB) with a fresh ``mmap`` and gives it back to the
kernel with ``munmap`` when freed, and it trims the top of its heap once more than a few hundred KiB is
free there. A training step allocates and frees the same activation tensors every step, so every step
maps fresh zero pages and faults on each of them, which costs a CPU step a large share of its time
(docs/RESULTS.md §3). (The GPU has its own caching allocator; this is the CPU's equivalent.)

:func:`retain_freed_memory` turns both off with ``mallopt``: no ``mmap`` for large blocks
(``M_MMAP_MAX = 0``, so they come from the heap and are reused) and no trimming
(``M_TRIM_THRESHOLD`` at its maximum). The process then keeps its peak heap for its lifetime (a
somewhat larger resident size), which is what a training process wants; set ``SELFSTUDY_MALLOC=default`` to keep glibc's defaults. It is a no-op on other C libraries
and platforms. Numbers do not depend on it: only where memory comes from changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from selfstudy.errors import UserError

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_MAX = 2 ** 31 - 1  # mallopt takes an int

_state: dict[str, bool] = {}


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # not glibc (musl has no mallopt tunables of this kind)
    return libc


def allocator_mode() -> str:
    """``$SELFSTUDY_MALLOC``: ``retain`` (the default) or ``default`` (glibc's own behaviour)."""
    mode = os.environ.get("SELFSTUDY_MALLOC", "").strip().lower() or "retain"
    if mode not in ("retain", "default"):
        raise UserError(f"SELFSTUDY_MALLOC={mode!r} is not allowed; it must be 'retain' (keep freed "
                        f"memory for reuse, the default) or 'default' (glibc's behaviour)")
    return mode


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module doc). Returns True when the settings are
    in effect (now or from an earlier call), False on other platforms, other C libraries or when
    ``SELFSTUDY_MALLOC=default``. Safe to call any number of times."""
    if "retain" in _state:
        return _state["retain"]
    if allocator_mode() == "default":
        return False  # not cached: the variable may be changed later in the same process
    libc = _libc()
    ok = False
    if libc is not None:
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_MAX))
    _state["retain"] = ok
    return ok
