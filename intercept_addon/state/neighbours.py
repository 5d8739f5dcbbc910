"""Which proxies share a SQLite state file: a lock file beside it, held shared by every store
that has the database open (see sqlite.py's write-behind)."""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # Windows: no flock, so a store never knows it is alone
    fcntl = None  # type: ignore[assignment]


class Neighbours:
    """Does another store have this database open? Each holds a shared lock on a file beside it;
    an exclusive lock granted at once means no one else does. Only a hint for batching: the
    database's own write lock is what keeps counts exact."""

    def __init__(self, db_path: str) -> None:
        self._fd: int | None = None
        if db_path == ":memory:" or fcntl is None:
            return  # no one else can open it / no flock: always commit at once
        self._fd = os.open(db_path + "-proxies", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def alone(self) -> bool:
        if self._fd is None:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except OSError:
            alone = False
        # Back to shared (a failed conversion may have dropped it): waits at most for another
        # store's probe, which holds the exclusive lock for two system calls.
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        return alone

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
