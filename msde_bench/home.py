"""Where msde-bench keeps what it generates once and reuses: `$MSDE_BENCH_HOME`, else
`$XDG_CACHE_HOME/msde-bench`, else `~/.cache/msde-bench` (synthetic sets under `datasets/`,
distill teachers under `teachers/`)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    env = os.environ.get("MSDE_BENCH_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "msde-bench"
