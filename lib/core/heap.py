"""A long-running process leaves what it loaded at start out of the garbage collector's full collections."""

from __future__ import annotations

import gc
import threading


def freeze_startup_heap() -> int:
    """Collect, then leave everything loaded so far out of every later collection (gc.freeze); returns how many
    objects that is. Only the first call in a process freezes anything.

    A worker process calls it once started, the app process once its embedding model is loaded: their modules,
    settings, clients and model are hundreds of thousands of objects (millions with torch) that live as long as the
    process, and each full collection walked them all while holding the GIL: ~0.2 s in a worker (measured with
    gc.callbacks; one landed at the start of most batch runs and held up every call of the process), more in the
    app, where every session waits for it. Reference counting still frees frozen objects; only reference cycles
    among them are never collected.
    """
    global _frozen
    with _lock:
        if not _frozen:  # once per process: what it loads at start, not whatever is alive at a later call
            _frozen = True
            gc.collect()
            gc.freeze()
    return gc.get_freeze_count()


_lock = threading.Lock()
_frozen = False
