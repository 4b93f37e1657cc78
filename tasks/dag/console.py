"""What `doit` prints for a doit-tinyml project: doit's console reporter, made readable.

* A stage that fails on a user mistake (a TinyMLError: bad data, a model that does not fit when
  asked to fail, a missing tool) prints one line, `doit-tinyml: <task> failed: <why>`, with no
  traceback and no dump of the task's captured output. A bug of ours keeps doit's full report.
* Tasks skipped because a task they need failed are counted in one line, not listed one by one
  (`doit report` shows which variant stopped where).
* The `report` and `tools` tasks print no doit status line: `doit report` prints only the report.
"""
from __future__ import annotations

from doit.exceptions import UnmetDependency
from doit.reporter import ConsoleReporter

QUIET_TASKS = ("report", "tools")


class Reporter(ConsoleReporter):
    desc = "doit-tinyml console: one line per failed stage"

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.unmet = []

    def execute_task(self, task):
        if task.name not in QUIET_TASKS:
            super().execute_task(task)

    def skip_uptodate(self, task):
        if task.name not in QUIET_TASKS:
            super().skip_uptodate(task)

    def add_failure(self, task, fail):
        if isinstance(fail, UnmetDependency):
            if task.actions:  # group tasks (`firmware` over its subtasks) are not work
                self.unmet.append(task.name)
            return
        if _is_user_mistake(fail):
            self.failures.append({"task": task, "exception": fail, "user": True})
            self.write(f"doit-tinyml: {task.name} failed: {fail.message}\n")
            return
        super().add_failure(task, fail)

    def complete_run(self):
        self.failures = [f for f in self.failures if not f.get("user")]
        super().complete_run()
        if self.unmet:
            n = len(self.unmet)
            self.write(f"doit-tinyml: {n} task{'s' if n != 1 else ''} did not run because a task "
                       f"{'they need' if n != 1 else 'it needs'} failed; `doit report` shows where each "
                       f"variant stopped\n")


def _is_user_mistake(fail) -> bool:
    """A failure that carries our message and no exception (TinyMLError, turned into TaskError by dag)."""
    return getattr(fail, "exception", None) is None and bool(getattr(fail, "message", ""))
