"""The stage table as doit tasks.

Task creators only wire paths and settings; the work is in each stage module's `run`. Every task
uses md5 `file_dep`, `targets` and `config_changed` over the normalised settings of *that* stage
(plus the plugin version), so a change re-runs exactly the chain below it. Nothing heavy is
imported here: this module is the no-op path.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Callable

from doit.exceptions import TaskError
from doit.tools import config_changed

from .config import ConfigError, Model, Project, VariantSettings, load
from .util import PLUGIN_VERSION, TinyMLError, sha256_text

STAGES = ("dataset", "train", "compress", "convert", "evaluate", "analyze", "header", "aot", "firmware")


# --------------------------------------------------------------------------- paths (one place)
@dataclasses.dataclass(frozen=True)
class Layout:
    build: Path

    def model(self, m: Model) -> Path:
        return self.build / m.name

    def dataset(self, m: Model) -> tuple[Path, Path]:
        return self.model(m) / "dataset.npz", self.model(m) / "dataset.json"

    def trained(self, m: Model) -> Path:
        return self.model(m) / "trained.keras"

    def variant(self, m: Model, v: VariantSettings) -> Path:
        return self.model(m) / v.name

    def compressed(self, m: Model, v: VariantSettings) -> Path:
        return self.variant(m, v) / "compressed.keras"

    def keras_for(self, m: Model, v: VariantSettings) -> Path:
        """The model the variant converts: its compressed model, or the trained one."""
        return self.compressed(m, v) if v.steps else self.trained(m)

    def tflite(self, m: Model, v: VariantSettings) -> Path:
        return self.variant(m, v) / "model.tflite"

    def firmware(self, m: Model, v: VariantSettings, board: str, runtime: str) -> Path:
        return self.variant(m, v) / (board if runtime == "tflm" else f"{board}.{runtime}")

    def core_dir(self) -> Path:
        return self.build / ".platformio"

    def log(self, m: Model, name: str) -> Path:
        return self.model(m) / "logs" / f"{name}.log"


def _settings(*parts) -> str:
    """Normalised JSON of a stage's settings, for config_changed."""
    def norm(o):
        if dataclasses.is_dataclass(o):
            return {k: norm(v) for k, v in dataclasses.asdict(o).items()}
        if isinstance(o, dict):
            return {str(k): norm(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [norm(v) for v in o]
        if isinstance(o, Path):
            return str(o)
        return o
    return json.dumps({"plugin": PLUGIN_VERSION, "settings": norm(parts)}, sort_keys=True)


def _action(func: Callable, *args, log: Path | None = None, **kwargs):
    """A doit python-action around a stage function.

    * A user mistake (TinyMLError) becomes a one-line failure with exit status 2 and no traceback;
      anything else is our bug and keeps its traceback.
    * The outcome is recorded for `doit report`: a failure leaves `build/.tinyml/failed/<task>.json`
      (which stage, why), a success removes it.
    * A success returns the size, mtime and md5 of every target as the task's saved values, so the
      next `doit` notices a target damaged or edited by hand (`targets_intact`) and rebuilds it.
    """
    def action(task):
        from .util import native_output_to

        try:
            if log is not None:
                with native_output_to(log):
                    func(*args, **kwargs)
            else:
                func(*args, **kwargs)
        except TinyMLError as e:
            message = str(e).strip()
            record_failure(task.name, message)
            return TaskError(message)
        except BaseException as e:
            record_failure(task.name, f"{type(e).__name__}: {e} (a doit-tinyml bug: see the traceback above)")
            raise
        clear_failure(task.name)
        return {"targets": {str(t): file_state(t) for t in task.targets}}
    action.__name__ = getattr(func, "__qualname__", "action")
    return (action, [], {})


def file_state(path) -> list:
    """[size, mtime_ns, md5] of a file (what `targets_intact` compares)."""
    import hashlib

    st = os.stat(path)
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return [st.st_size, st.st_mtime_ns, h.hexdigest()]


def targets_intact(task, values) -> bool:
    """doit uptodate check: every target still holds the bytes its task wrote.

    Cheap: a target whose size and mtime are unchanged is trusted; otherwise its md5 decides. A
    truncated .tflite, a hand-edited header or a swapped model re-runs the task that owns it.
    """
    recorded = (values or {}).get("targets")
    if not recorded:
        return True  # nothing recorded yet (first run): doit's other checks decide
    for target in task.targets:
        rec = recorded.get(str(target))
        try:
            st = os.stat(target)
        except OSError:
            return False
        if rec is None:
            return False
        if [st.st_size, st.st_mtime_ns] == list(rec[:2]):
            continue
        if st.st_size != rec[0] or file_state(target)[2] != rec[2]:
            return False
    return True


# --------------------------------------------------------------------------- failure records
FAILED_DIR = Path(".tinyml") / "failed"
_failed_root: Path | None = None


def _failure_path(task_name: str) -> Path | None:
    if _failed_root is None:
        return None
    from urllib.parse import quote

    return _failed_root / (quote(task_name, safe="") + ".json")


def record_failure(task_name: str, message: str) -> None:
    path = _failure_path(task_name)
    if path is not None:
        from .util import write_json

        write_json(path, {"task": task_name, "stage": task_name.split(":", 1)[0], "message": message})


def clear_failure(task_name: str) -> None:
    path = _failure_path(task_name)
    if path is not None:
        path.unlink(missing_ok=True)


def _lazy(module: str, name: str) -> Callable:
    """Import a stage function only when its task runs."""
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"tasks.{module}"), name)(*args, **kwargs)
    call.__qualname__ = f"{module}.{name}"
    return call


def _module_file(ref: str) -> list[str]:
    """The source file of a 'pkg.mod:func' reference, so editing it re-runs the stage."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(ref.split(":")[0])
    except (ImportError, ValueError):
        return []
    return [spec.origin] if spec and spec.origin and os.path.exists(spec.origin) else []


def _rel(path: Path, root: Path) -> Path:
    """Paths relative to the project folder (doit runs there), so a built project can be moved."""
    try:
        if Path.cwd().resolve() == root.resolve():
            return Path(os.path.relpath(path, root))
    except OSError:
        pass
    return path


def _sketch_files(sketch: Path) -> list[str]:
    files = []
    for base, dirs, names in os.walk(sketch):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(base, n) for n in sorted(names) if not n.startswith(".")]
    return files


def runtimes_for(m: Model, v: VariantSettings) -> tuple[str, ...]:
    return v.runtime or m.firmware.runtime


# --------------------------------------------------------------------------- task creators
class Tasks:
    def __init__(self, project: Project):
        global _failed_root
        self.p = project
        self.L = Layout(_rel(project.build_dir, project.root))
        _failed_root = project.build_dir.absolute() / FAILED_DIR

    def dataset(self):
        for m in self.p.models:
            npz, meta = self.L.dataset(m)
            ds = m.dataset
            deps = [ds.source] if ds.kind in ("csv", "npz") else _module_file(ds.source) if ds.kind == "callable" else []
            yield {"name": m.name, "doc": f"make {m.name}'s dataset from {Path(ds.source).name}",
                   "actions": [_action(_lazy("dataset", "run"), ds, m.task, self.p.seed, npz, meta)],
                   "file_dep": deps, "targets": [npz, meta], "task_dep": ["tools"],
                   "uptodate": [targets_intact, config_changed(_settings(ds, m.task, self.p.seed))], "clean": True}

    def train(self):
        for m in self.p.models:
            npz, meta = self.L.dataset(m)
            deps = [npz, meta] + (_module_file(m.model.builder) if m.model.builder else [])
            yield {"name": m.name, "doc": f"train {m.name} (seeded, deterministic)",
                   "actions": [_action(_lazy("train", "run"), m.model, m.training, self.p.seed, npz, meta,
                                       self.L.trained(m), self.L.model(m) / "history.json",
                                       log=self.L.log(m, "train"))],
                   "file_dep": deps, "targets": [self.L.trained(m), self.L.model(m) / "history.json"],
                   "uptodate": [targets_intact, config_changed(_settings(m.model, m.training, self.p.seed))], "clean": True}

    def compress(self):
        for m in self.p.models:
            for v in m.variants:
                if not v.steps:
                    continue
                npz, _ = self.L.dataset(m)
                out = self.L.compressed(m, v)
                yield {"name": f"{m.name}/{v.name}", "doc": " -> ".join(s["method"] for s in v.steps),
                       "actions": [_action(_lazy("compress", "run"), self.L.trained(m), npz, v.steps, out,
                                           self.L.variant(m, v) / "compress.json", seed=self.p.seed,
                                           loss=m.training.loss, optimizer=m.training.optimizer,
                                           build_layers=_lazy("train", "build_model"),
                                           log=self.L.log(m, f"compress-{v.name}"))],
                       "file_dep": [self.L.trained(m), npz],
                       "targets": [out, self.L.variant(m, v) / "compress.json"],
                       "uptodate": [targets_intact, config_changed(_settings(v.steps, m.training.loss, m.training.optimizer,
                                                             self.p.seed))], "clean": True}

    def convert(self):
        for m in self.p.models:
            for v in m.variants:
                npz, _ = self.L.dataset(m)
                src = self.L.keras_for(m, v)
                qat = any(s["method"] == "qat" for s in v.steps)
                loader = _lazy("compress", "load_model") if v.steps else None
                yield {"name": f"{m.name}/{v.name}", "doc": f"{v.quantization} .tflite via {v.converter}",
                       "actions": [_action(_lazy("convert", "run"), src, npz, self.L.tflite(m, v),
                                           self.L.variant(m, v) / "convert.json", quantization=v.quantization,
                                           io=v.io, converter=v.converter,
                                           representative_samples=v.representative_samples, qat=qat,
                                           load_model=loader, seed=self.p.seed,
                                           log=self.L.log(m, f"convert-{v.name}"))],
                       "file_dep": [src, npz],
                       "targets": [self.L.tflite(m, v), self.L.variant(m, v) / "convert.json"],
                       "uptodate": [targets_intact, config_changed(_settings(v.quantization, v.io, v.converter,
                                                             v.representative_samples, qat, self.p.seed))],
                       "clean": True}

    def evaluate(self):
        for m in self.p.models:
            for v in m.variants:
                npz, meta = self.L.dataset(m)
                anomaly = dataclasses.asdict(m.anomaly) if m.task == "autoencoder" else None
                yield {"name": f"{m.name}/{v.name}", "doc": "test split through LiteRT and TFLM",
                       "actions": [_action(_lazy("evaluate", "run"), self.L.tflite(m, v), npz, meta,
                                           self.L.variant(m, v) / "metrics.json",
                                           reference_keras=self.L.trained(m), anomaly=anomaly,
                                           log=self.L.log(m, f"evaluate-{v.name}"))],
                       "file_dep": [self.L.tflite(m, v), npz, meta, self.L.trained(m)],
                       "targets": [self.L.variant(m, v) / "metrics.json"],
                       "uptodate": [targets_intact, config_changed(_settings(anomaly))], "clean": True}

    def analyze(self):
        for m in self.p.models:
            for v in m.variants:
                yield {"name": f"{m.name}/{v.name}", "doc": "ops, TFLM compatibility, arena, per-layer table",
                       "actions": [_action(_lazy("analyze", "run"), self.L.tflite(m, v),
                                           self.L.variant(m, v) / "analysis.json",
                                           arena_margin=m.firmware.arena_margin,
                                           log=self.L.log(m, f"analyze-{v.name}"))],
                       "file_dep": [self.L.tflite(m, v)],
                       "targets": [self.L.variant(m, v) / "analysis.json"],
                       "uptodate": [targets_intact, config_changed(_settings(m.firmware.arena_margin))], "clean": True}

    def provenance(self, m: Model, v: VariantSettings) -> dict:
        return {"model": m.name, "variant": v.name,
                "settings_hash": sha256_text(_settings(m.dataset, m.task, m.model, m.training, v, self.p.seed))}

    def header(self):
        for m in self.p.models:
            for v in m.variants:
                vd = self.L.variant(m, v)
                _, meta = self.L.dataset(m)
                prov = self.provenance(m, v)
                yield {"name": f"{m.name}/{v.name}", "doc": "model_data.h/.cc: model array, arena, op resolver",
                       "actions": [_action(_header, self.L.tflite(m, v), vd / "analysis.json", meta,
                                           vd / "model_data.h", vd / "model_data.cc", prov)],
                       "file_dep": [self.L.tflite(m, v), vd / "analysis.json", meta],
                       "targets": [vd / "model_data.h", vd / "model_data.cc"],
                       "uptodate": [targets_intact, config_changed(_settings(prov))], "clean": True}

    def aot(self):
        for m in self.p.models:
            for v in m.variants:
                if "aot" not in runtimes_for(m, v):
                    continue
                vd = self.L.variant(m, v)
                npz, _ = self.L.dataset(m)
                yield {"name": f"{m.name}/{v.name}", "doc": "plain-C inference, checked bit-exact against TFLM",
                       "actions": [_action(_lazy("aot.stage", "run"), self.L.tflite(m, v), npz, vd / "aot",
                                           vd / "aot.json", core_dir=self.L.core_dir(),
                                           log=self.L.log(m, f"aot-{v.name}"))],
                       "file_dep": [self.L.tflite(m, v), npz],
                       "targets": [vd / "aot" / "tinyml_model.c", vd / "aot" / "tinyml_model.h", vd / "aot.json"],
                       "uptodate": [targets_intact, config_changed(_settings("aot"))], "clean": True}

    def firmware(self):
        for m in self.p.models:
            if m.firmware.sketch is None:
                continue
            sketch = _rel(m.firmware.sketch, self.p.root)
            sketch_files = _sketch_files(sketch)
            for v in m.variants:
                vd = self.L.variant(m, v)
                for board_id in m.firmware.boards:
                    board = self.p.boards[board_id]
                    for rt in runtimes_for(m, v):
                        out = self.L.firmware(m, v, board_id, rt)
                        deps = [vd / "model_data.h", vd / "model_data.cc", vd / "analysis.json"] + sketch_files
                        if rt == "aot":
                            deps += [vd / "aot" / "tinyml_model.c", vd / "aot" / "tinyml_model.h", vd / "aot.json"]
                        name = self.firmware_name(m, v, board_id, rt).split(":", 1)[1]
                        yield {"name": name, "doc": f"{rt} firmware for {board.name}",
                               "actions": [_action(_firmware, sketch, vd, board, out,
                                                   self.L.core_dir(), rt, m.firmware.fail_if_too_big,
                                                   f"{m.name}/{v.name}")],
                               # boards that cannot be built here get an estimate: size.json only, no ELF
                               "file_dep": deps, "targets": ([out / "firmware.elf"] if board.buildable_offline
                                                             else []) + [out / "size.json"],
                               "uptodate": [targets_intact, config_changed(_settings(board, rt, m.firmware.fail_if_too_big))],
                               "verbosity": 2, "clean": True}

    @staticmethod
    def firmware_name(m: Model, v: VariantSettings, board_id: str, rt: str) -> str:
        return f"firmware:{m.name}/{v.name}@{board_id}" + ("" if rt == "tflm" else f"+{rt}")

    def chain(self, m: Model, v: VariantSettings) -> list[str]:
        """The tasks a variant's figures come from, in stage order (the report names the first that failed)."""
        mv = f"{m.name}/{v.name}"
        names = ["tools", f"dataset:{m.name}", f"train:{m.name}"] + ([f"compress:{mv}"] if v.steps else [])
        names += [f"convert:{mv}", f"evaluate:{mv}", f"analyze:{mv}", f"header:{mv}"]
        return names + ([f"aot:{mv}"] if "aot" in runtimes_for(m, v) else [])

    def tools(self):
        """Check the compilers and emulator the project needs before any work starts."""
        need = self.needed_tools()
        return {"doc": "check that the compilers and the emulator this project needs are installed",
                "actions": [_action(_check_tools, need)] if need else [],
                "uptodate": [config_changed(_settings(need, _tool_paths(need)))] if need else [True],
                "verbosity": 0}

    def needed_tools(self) -> list[str]:
        need = set()
        for m in self.p.models:
            if m.firmware.sketch is not None and any(self.p.boards[b].buildable_offline for b in m.firmware.boards):
                need.add("arm-none-eabi-gcc")
            if any("aot" in runtimes_for(m, v) for v in m.variants):
                need |= {"gcc", "arm-none-eabi-gcc", "qemu-system-arm"}
        return sorted(need)

    def report_entries(self) -> list[dict]:
        entries = []
        for m in self.p.models:
            for v in m.variants:
                vd = self.L.variant(m, v)
                base = {"model": m.name, "variant": v.name, "required": v.required, "task": m.task,
                        "metrics": vd / "metrics.json", "analysis": vd / "analysis.json",
                        "convert": vd / "convert.json", "compress": vd / "compress.json" if v.steps else None,
                        "aot": vd / "aot.json" if "aot" in runtimes_for(m, v) else None,
                        "header": vd / "model_data.cc", "trained": self.L.trained(m),
                        "chain": self.chain(m, v)}
                boards = m.firmware.boards if m.firmware.sketch else ()
                if not boards:
                    entries.append({**base, "board": None, "runtime": None, "size": None})
                for b in boards:
                    for rt in runtimes_for(m, v):
                        entries.append({**base, "board": b, "runtime": rt,
                                        "size": self.L.firmware(m, v, b, rt) / "size.json",
                                        "chain": base["chain"] + [self.firmware_name(m, v, b, rt)]})
        return entries

    def report(self):
        entries = self.report_entries()
        gates = {"required": sorted({(m.name, v.name) for m in self.p.models for v in m.variants if v.required}),
                 "max_accuracy_drop": self.p.report.max_accuracy_drop}
        # No file_dep: a variant whose chain failed must not stop the report (doit would skip it as an
        # unmet dependency). The report reads what the last `doit` left and names what failed or is missing.
        return {"doc": "print the size table (flash/RAM vs each board, accuracy, fits); write report.*",
                "actions": [_action(_report, entries, self.p.build_dir, self.p.report.headroom, gates,
                                    self.p.build_dir.absolute() / FAILED_DIR)],
                "uptodate": [False], "verbosity": 2}


def _header(tflite, analysis, dataset_json, out_h, out_cc, prov):
    from . import header

    meta = json.loads(Path(dataset_json).read_text())
    provenance = dict(prov, class_names=meta.get("class_names"),
                      norm_a=meta.get("norm_a") if meta.get("normalize") != "none" else None,
                      norm_b=meta.get("norm_b") if meta.get("normalize") != "none" else None)
    header.run(tflite, analysis, out_h, out_cc, provenance=provenance)


def _firmware(sketch, variant_dir, board, out, core_dir, runtime, fail_if_too_big, label):
    from . import firmware

    extra_sources, extra_includes = [], []
    if runtime == "aot":
        from .aot import stage as aot_stage

        extra_sources, extra_includes = aot_stage.firmware_sources(variant_dir / "aot")
    firmware.run(sketch, variant_dir, board, out, core_dir, runtime=runtime, fail_on_overflow=fail_if_too_big,
                 extra_sources=extra_sources, extra_include_dirs=extra_includes, label=label)


def _tool_paths(tools: list[str]) -> dict:
    import shutil

    return {t: shutil.which(t) for t in tools}


def _check_tools(tools: list[str]) -> None:
    """Every tool the project's stages need, before any training: named, with how to install it."""
    import shutil

    if "arm-none-eabi-gcc" in tools:
        from .firmware import _find_toolchain

        _find_toolchain()
    hints = {"gcc": "the host C compiler (the aot stage compiles the generated C on the host): "
                    "sudo apt-get install gcc",
             "qemu-system-arm": "the aot stage proves the generated C on an emulated Cortex-M4: "
                                "sudo apt-get install qemu-system-arm"}
    for tool, hint in hints.items():
        if tool in tools and shutil.which(tool) is None:
            raise TinyMLError(f"{tool} was not found on PATH; {hint} (or remove runtime = \"aot\" from tinyml.toml)")


def _report(entries, build_dir, headroom, gates, failed_dir):
    from . import report

    code = report.run(entries, build_dir, headroom=headroom, gates=gates, previous=build_dir / "report.json",
                      failed_dir=failed_dir)
    if code:
        raise TinyMLError(f"report gate failed (exit {code}): see the reasons above")


# --------------------------------------------------------------------------- entry point for dodo.py
def load_project(path: str | os.PathLike = "tinyml.toml") -> dict:
    """What dodo.py puts in its namespace: DOIT_CONFIG and one task_* creator per stage.

    A config mistake prints the message and exits with status 2, without a traceback.
    """
    try:
        project = load(path)
    except ConfigError as e:
        print(f"doit-tinyml: {e}", file=sys.stderr)
        raise SystemExit(2)
    t = Tasks(project)
    project.build_dir.mkdir(parents=True, exist_ok=True)
    namespace = {
        "DOIT_CONFIG": {
            "default_tasks": ["tools", *STAGES],
            "dep_file": str(project.build_dir / ".doit.sqlite"),
            "backend": _backend(),
            "reporter": _reporter(),
            "continue": True,
            "check_file_uptodate": "md5",
            "action_string_formatting": "new",
        },
        "TINYML_PROJECT": project,
    }
    for stage in ("tools",) + STAGES + ("report",):
        namespace[f"task_{stage}"] = _creator(t, stage)
    return namespace


def _backend() -> str:
    """doit's dependency backend: ours (committed per task) when the plugin is installed, else sqlite3."""
    from importlib import metadata

    try:
        eps = metadata.distribution("doit-tinyml").entry_points
    except metadata.PackageNotFoundError:
        return "sqlite3"
    return "tinyml" if any(ep.group == "doit.BACKEND" and ep.name == "tinyml" for ep in eps) else "sqlite3"


def _reporter():
    from .console import Reporter

    return Reporter


def _creator(t: Tasks, stage: str):
    method = getattr(t, stage)
    doc = {"tools": "check the compilers and the emulator the project needs",
           "dataset": "source -> dataset.npz (split, normalisation)", "train": "dataset -> trained.keras",
           "compress": "trained -> compressed.keras (prune, cluster, QAT, remove, distill)",
           "convert": "model -> model.tflite (PTQ: float16, dynamic, int8, 16x8)",
           "evaluate": "metrics of each .tflite on the test split (LiteRT and TFLM)",
           "analyze": "ops, TFLM compatibility, exact arena, per-layer table",
           "header": "C header: model array, arena size, op resolver, provenance",
           "aot": "ahead-of-time C inference, bit-exact against TFLM",
           "firmware": "PlatformIO firmware per variant and board; flash/RAM vs limits",
           "report": "the size table: every variant on every board"}[stage]

    def task_creator():
        return method()  # a dict (report) or a generator of subtasks
    task_creator.__doc__ = doc
    task_creator.__name__ = f"task_{stage}"
    return task_creator
