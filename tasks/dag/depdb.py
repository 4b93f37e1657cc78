"""doit's dependency database, committed task by task, so finished work survives any stop.

doit's own backends (json, dbm, sqlite3) keep every task's record in memory and write them all
when the run ends: a build stopped by SIGTERM, SIGKILL or a power cut forgets every task it
finished, and the next `doit` re-trains and re-converts everything. `TaskDB` is doit's sqlite3
backend with one change: each task's record is written and committed as soon as doit has saved
it (doit writes the `deps:` key last in `Dependency.save_success`), in one transaction, so a record
is either whole or absent. The database runs in WAL mode with `synchronous=NORMAL`: a commit is a
small append, not an fsync, and survives the death of the process (only a power cut may lose the
last few commits, which then re-run).

It is registered with doit as the backend `tinyml` (entry point group `doit.BACKEND` in
pyproject.toml) and selected by `load_project`'s DOIT_CONFIG.
"""
from __future__ import annotations

from doit.dependency import SqliteDB

# the key doit's Dependency.save_success writes last for every task; `ignore:` is a whole record too
_LAST_KEYS = ("deps:", "ignore:")


class TaskDB(SqliteDB):
    """sqlite3 backend that commits each task's record when doit has finished saving it."""

    desc = "sqlite3, committed per task (doit-tinyml)"

    def _sqlite3(self, name):
        conn = super()._sqlite3(name)
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma synchronous=normal")
        conn.commit()
        return conn

    def set(self, task_id, dependency, value):
        super().set(task_id, dependency, value)
        if dependency in _LAST_KEYS:
            self._commit(task_id)

    def _commit(self, task_id):
        self._conn.execute("insert or replace into doit values (?,?)",
                           (task_id, self.codec.encode(self._cache[task_id])))
        self._conn.commit()
        self._dirty.discard(task_id)

    def remove(self, task_id):
        super().remove(task_id)
        self._conn.commit()

    def remove_all(self):
        super().remove_all()
        self._conn.commit()
