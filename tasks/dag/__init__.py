"""The stage table as doit tasks: the task creators wire paths (layout) and settings (config); the
work is in each stage module's `run`, imported only when its task runs.

Every task uses md5 `file_dep`, `targets`, and an `uptodate` made of `targets_intact` (the targets
still hold the bytes their task wrote) and `config_changed` over the normalised settings of *that*
stage plus the hash of the code its work depends on (codehash), so a change of settings, data or
plugin code re-runs exactly the chain below it. Nothing heavy is imported here: this is the no-op
path (`python -X importtime -m doit` shows no numpy, TensorFlow or PlatformIO).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Callable

from doit.exceptions import TaskError
from doit.task import clean_targets
from doit.tools import config_changed

from ..config import ConfigError, Model, Project, VariantSettings, load
from ..engine.errors import TinyMLError
from ..engine.io import sha256_text
from ..layout import Layout
from . import codehash

STAGES = ("dataset", "train", "compress", "convert", "evaluate", "analyze", "header", "aot", "tflm", "firmware",
          "measure")
_ROOT = __name__.rsplit(".", 1)[0]  # the plugin's import name (doit_tinyml), derived


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
    return json.dumps({"settings": norm(parts)}, sort_keys=True)


def _action(func: Callable, *args, failed: Path, log: Path | None = None, **kwargs):
    """A doit python-action around a stage function.

    * A user mistake (TinyMLError) becomes a one-line failure with exit status 2 and no traceback;
      anything else is our bug and keeps its traceback.
    * The outcome is recorded for `doit report`: a failure leaves `build/.tinyml/failed/<task>.json`
      (which stage, why), a success removes it.
    * A success returns the size, mtime and md5 of every target as the task's saved values, so the
      next `doit` notices a target damaged or edited by hand (`targets_intact`) and rebuilds it.
    """
    def action(task):
        from ..engine.io import native_output_to

        try:
            if log is not None:
                with native_output_to(log):
                    func(*args, **kwargs)
            else:
                func(*args, **kwargs)
        except TinyMLError as e:
            message = str(e).strip()
            record_failure(failed, task.name, message)
            return TaskError(message)
        except BaseException as e:
            record_failure(failed, task.name, f"{type(e).__name__}: {e} (a doit-tinyml bug: see the traceback above)")
            raise
        clear_failure(failed, task.name)
        return {"targets": {str(t): file_state(t) for t in task.targets if os.path.exists(t)}}
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
def _failure_path(failed_dir: Path, task_name: str) -> Path:
    from urllib.parse import quote

    return Path(failed_dir) / (quote(task_name, safe="") + ".json")


def record_failure(failed_dir: Path, task_name: str, message: str) -> None:
    """`build/.tinyml/failed/<task>.json`: which stage failed and why, for `doit report`."""
    from ..engine.io import write_json

    write_json(_failure_path(failed_dir, task_name),
               {"task": task_name, "stage": task_name.split(":", 1)[0], "message": message})


def clear_failure(failed_dir: Path, task_name: str) -> None:
    _failure_path(failed_dir, task_name).unlink(missing_ok=True)


def _lazy(module: str, name: str) -> Callable:
    """A stage (or engine) function, imported only when its task runs."""
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f".{module}", _ROOT), name)(*args, **kwargs)
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
    """One method per stage: a generator of doit task dicts (the dict is the contract)."""

    def __init__(self, project: Project):
        self.p = project
        self.L = Layout(_rel(project.build_dir, project.root))
        self.failed = Layout(project.build_dir.absolute()).failed_dir()
        self.code = codehash.stage_hashes(Layout(project.build_dir).code_cache())
        self._tflm_fp: dict = {}

    def action(self, func: Callable, *args, **kwargs):
        return _action(func, *args, failed=self.failed, **kwargs)

    def uptodate(self, stage: str, *settings) -> list:
        """targets_intact + config_changed(settings of the stage, hash of the stage's code)."""
        return [targets_intact, config_changed(_settings(*settings) + "|code:" + self.code[stage])]

    def keras_for(self, m: Model, v: VariantSettings) -> Path:
        """The model a variant converts: its compressed model, or the trained one."""
        return self.L.compressed(m.name, v.name) if v.steps else self.L.trained(m.name)

    def tools(self):
        """Check the compilers and emulator the project needs before any work starts."""
        need = self.needed_tools()
        return {"doc": "check that the compilers and the emulator this project needs are installed",
                "actions": [self.action(_check_tools, need)] if need else [],
                "uptodate": [config_changed(_settings(need, _tool_paths(need)))] if need else [True],
                "verbosity": 0}

    def needed_tools(self) -> list[str]:
        need = set()
        for m in self.p.models:
            if m.firmware.sketch is not None and any(self.p.boards[b].buildable_offline for b in m.firmware.boards):
                need.add("arm-none-eabi-gcc")
            if any("aot" in runtimes_for(m, v) for v in m.variants):
                need |= {"gcc", "arm-none-eabi-gcc", "qemu-system-arm"}
            if self.links_tflm(m) and any("tflm" in runtimes_for(m, v) for v in m.variants):
                need |= {"arm-none-eabi-gcc", "qemu-system-arm"}
        return sorted(need)

    # ---- the real TFLite Micro (engine.tflm_link): the library a model links, if any
    @staticmethod
    def links_tflm(m: Model) -> bool:
        return m.firmware.sketch is not None and m.firmware.tflm.library is not None

    def tflm_settings(self, m: Model) -> dict | None:
        """{library, kernels, reference_kernels, fingerprint} of the model's TFLM tree, or None."""
        t = m.firmware.tflm
        if t.library is None:
            return None
        key = (str(t.library), str(t.reference_kernels))
        if key not in self._tflm_fp:
            from ..engine.tflm_link import find_tree, fingerprint

            try:
                self._tflm_fp[key] = fingerprint(find_tree(t.library, reference_kernels=t.reference_kernels))
            except TinyMLError:
                self._tflm_fp[key] = "unreadable"
        return {"library": str(t.library), "kernels": t.kernels,
                "reference_kernels": str(t.reference_kernels) if t.reference_kernels else None,
                "source": t.source, "fingerprint": self._tflm_fp[key]}

    def tflm_cache(self) -> Path:
        from ..engine.tflm_link import default_cache

        return default_cache(self.p.build_dir)

    def dataset(self):
        for m in self.p.models:
            L, ds = self.L, m.dataset
            deps = list(ds.deps)  # the data files (source, fixed test set) or a callable's own source files
            yield {"name": m.name, "doc": f"make {m.name}'s dataset from {Path(ds.source).name}",
                   "actions": [self.action(_lazy("dataset", "run"), ds, m.task, self.p.seed, L.dataset(m.name),
                                           L.dataset_json(m.name))],
                   "file_dep": deps, "targets": [L.dataset(m.name), L.dataset_json(m.name)], "task_dep": ["tools"],
                   "uptodate": self.uptodate("dataset", ds, m.task, self.p.seed), "clean": True}

    def train(self):
        for m in self.p.models:
            L = self.L
            deps = [L.dataset(m.name), L.dataset_json(m.name)] + (
                _module_file(m.model.builder) if m.model.builder else [])
            yield {"name": m.name, "doc": f"train {m.name} (seeded, deterministic)",
                   "actions": [self.action(_lazy("train", "run"), m.model, m.training, self.p.seed, L.dataset(m.name),
                                           L.dataset_json(m.name), L.trained(m.name), L.history(m.name),
                                           log=L.log(m.name, "train"))],
                   "file_dep": deps, "targets": [L.trained(m.name), L.history(m.name)],
                   "uptodate": self.uptodate("train", m.model, m.training, self.p.seed), "clean": True}

    def compress(self):
        for m in self.p.models:
            for v in m.variants:
                if not v.steps:
                    continue
                L = self.L
                out, rec = L.compressed(m.name, v.name), L.compress_json(m.name, v.name)
                yield {"name": f"{m.name}/{v.name}", "doc": " -> ".join(s["method"] for s in v.steps),
                       "actions": [self.action(_lazy("compress", "run"), L.trained(m.name), L.dataset(m.name), v.steps,
                                               out, rec, seed=self.p.seed, loss=m.training.loss,
                                               optimizer=m.training.optimizer, cache_dir=L.step_cache(m.name),
                                               cache_salt=self.code["compress"],
                                               log=L.log(m.name, f"compress-{v.name}"))],
                       "file_dep": [L.trained(m.name), L.dataset(m.name)], "targets": [out, rec],
                       "uptodate": self.uptodate("compress", v.steps, m.training.loss, m.training.optimizer,
                                                 self.p.seed), "clean": True}

    def convert(self):
        for m in self.p.models:
            for v in m.variants:
                L = self.L
                src = self.keras_for(m, v)
                qat = any(s["method"] == "qat" for s in v.steps)
                yield {"name": f"{m.name}/{v.name}", "doc": f"{v.quantization} .tflite via {v.converter}",
                       "actions": [self.action(_lazy("convert", "run"), src, L.dataset(m.name), L.tflite(m.name, v.name),
                                               L.convert_json(m.name, v.name), quantization=v.quantization, io=v.io,
                                               converter=v.converter, representative_samples=v.representative_samples,
                                               qat=qat, seed=self.p.seed, per_channel=v.per_channel,
                                               log=L.log(m.name, f"convert-{v.name}"))],
                       "file_dep": [src, L.dataset(m.name)],
                       "targets": [L.tflite(m.name, v.name), L.convert_json(m.name, v.name)],
                       "uptodate": self.uptodate("convert", v.quantization, v.io, v.converter,
                                                 v.representative_samples, qat, self.p.seed, v.per_channel),
                       "clean": True}

    def evaluate(self):
        for m in self.p.models:
            for v in m.variants:
                L = self.L
                anomaly = dataclasses.asdict(m.anomaly) if m.task == "autoencoder" else None
                yield {"name": f"{m.name}/{v.name}", "doc": "test split through LiteRT and TFLM",
                       "actions": [self.action(_lazy("evaluate", "run"), L.tflite(m.name, v.name), L.dataset(m.name),
                                               L.dataset_json(m.name), L.metrics(m.name, v.name),
                                               reference_keras=L.trained(m.name), anomaly=anomaly,
                                               log=L.log(m.name, f"evaluate-{v.name}"))],
                       "file_dep": [L.tflite(m.name, v.name), L.dataset(m.name), L.dataset_json(m.name),
                                    L.trained(m.name)],
                       "targets": [L.metrics(m.name, v.name)],
                       "uptodate": self.uptodate("evaluate", anomaly), "clean": True}

    def analyze(self):
        for m in self.p.models:
            for v in m.variants:
                L = self.L
                yield {"name": f"{m.name}/{v.name}", "doc": "ops, TFLM compatibility, arena, per-layer table",
                       "actions": [self.action(_lazy("analyze", "run"), L.tflite(m.name, v.name),
                                               L.analysis(m.name, v.name), arena_margin=m.firmware.arena_margin,
                                               log=L.log(m.name, f"analyze-{v.name}"))],
                       "file_dep": [L.tflite(m.name, v.name)], "targets": [L.analysis(m.name, v.name)],
                       "uptodate": self.uptodate("analyze", m.firmware.arena_margin), "clean": True}

    def provenance(self, m: Model, v: VariantSettings) -> dict:
        """What the header states about where the model came from; report-only settings excluded."""
        built = dataclasses.replace(v, required=False, description="", sweep=None)
        return {"model": m.name, "variant": v.name,
                "settings_hash": sha256_text(_settings(m.dataset, m.task, m.model, m.training, built, self.p.seed))}

    def header(self):
        for m in self.p.models:
            for v in m.variants:
                L = self.L
                h, cc = L.header(m.name, v.name)
                prov = self.provenance(m, v)
                yield {"name": f"{m.name}/{v.name}", "doc": "model_data.h/.cc: model array, arena, op resolver",
                       "actions": [self.action(_lazy("header", "run"), L.tflite(m.name, v.name),
                                               L.analysis(m.name, v.name), L.dataset_json(m.name), h, cc,
                                               provenance=prov)],
                       "file_dep": [L.tflite(m.name, v.name), L.analysis(m.name, v.name), L.dataset_json(m.name)],
                       "targets": [h, cc], "uptodate": self.uptodate("header", prov), "clean": True}

    def aot(self):
        for m in self.p.models:
            for v in m.variants:
                if "aot" not in runtimes_for(m, v):
                    continue
                L = self.L
                yield {"name": f"{m.name}/{v.name}", "doc": "plain-C inference, checked bit-exact against TFLM",
                       "actions": [self.action(_lazy("aot.stage", "run"), L.tflite(m.name, v.name), L.dataset(m.name),
                                               L.aot_dir(m.name, v.name), L.aot_json(m.name, v.name),
                                               core_dir=L.core_dir(), log=L.log(m.name, f"aot-{v.name}"))],
                       "file_dep": [L.tflite(m.name, v.name), L.dataset(m.name)],
                       # aot.json alone: it records the sha256 of the C it wrote, or why there is none
                       "targets": [L.aot_json(m.name, v.name)],
                       "uptodate": self.uptodate("aot", _tool_paths(["qemu-system-arm"])),
                       "clean": [clean_targets, (_remove, [L.aot_sources(m.name, v.name)])]}

    def tflm(self):
        """The real TFLite Micro on the emulated Cortex-M4, for variants with the tflm runtime and a TFLM library."""
        for m in self.p.models:
            t = self.tflm_settings(m) if self.links_tflm(m) else None
            if t is None:
                continue
            for v in m.variants:
                if "tflm" not in runtimes_for(m, v):
                    continue
                L = self.L
                vd = L.variant(m.name, v.name)
                deps = [L.tflite(m.name, v.name), L.analysis(m.name, v.name), L.dataset(m.name),
                        *L.header(m.name, v.name)] + ([L.aot_json(m.name, v.name)] if "aot" in runtimes_for(m, v) else [])
                yield {"name": f"{m.name}/{v.name}",
                       "doc": f"real TFLite Micro ({t['kernels']}) under QEMU: outputs, arena, instructions",
                       "actions": [self.action(_lazy("tflm_check", "run"), vd, L.dataset(m.name), vd / "tflm.json",
                                               tflm=t, core_dir=L.core_dir(), cache=self.tflm_cache(),
                                               label=f"{m.name}/{v.name}", log=L.log(m.name, f"tflm-{v.name}"))],
                       "file_dep": deps, "targets": [vd / "tflm.json"],
                       "uptodate": self.uptodate("tflm", t, _tool_paths(["qemu-system-arm"])), "clean": True}

    @staticmethod
    def firmware_name(m: Model, v: VariantSettings, board_id: str, rt: str) -> str:
        return f"firmware:{m.name}/{v.name}@{board_id}" + ("" if rt == "tflm" else f"+{rt}")

    def firmware(self):
        for m in self.p.models:
            if m.firmware.sketch is None:
                continue
            sketch = _rel(m.firmware.sketch, self.p.root)
            sketch_files = _sketch_files(sketch)
            tflm = self.tflm_settings(m) if self.links_tflm(m) else None
            for v in m.variants:
                L = self.L
                vd = L.variant(m.name, v.name)
                for board_id in m.firmware.boards:
                    board = self.p.boards[board_id]
                    env = m.firmware.env_for(board_id)
                    for rt in runtimes_for(m, v):
                        out = L.firmware(m.name, v.name, board_id, rt)
                        if rt == "aot":
                            deps = [L.aot_json(m.name, v.name)]
                        else:
                            deps = list(L.header(m.name, v.name)) + [L.analysis(m.name, v.name), L.tflite(m.name, v.name)]
                        # the real TFLM (if any) is linked into the generated projects of the tflm runtime; its
                        # target check (tflm.json) gives the instruction count for the time per inference
                        fw_tflm = (tflm or {"kernels": m.firmware.tflm.kernels}) if rt == "tflm" else None
                        if rt == "tflm" and tflm is not None:
                            deps.append(vd / "tflm.json")
                        built = self.builds_elf(m, v, board_id, rt)
                        targets = ([L.elf(m.name, v.name, board_id, rt)] if built else []) + [
                            L.size_json(m.name, v.name, board_id, rt)]
                        how = f"environment {env!r} of the sketch" if env else (
                            "with the real TFLite Micro" if tflm and rt == "tflm" and built else "")
                        yield {"name": self.firmware_name(m, v, board_id, rt).split(":", 1)[1],
                               "doc": f"{rt} firmware for {board.name}" + (f" ({how})" if how else ""),
                               "actions": [self.action(_lazy("firmware", "run"), sketch, vd, board, out, L.core_dir(),
                                                       runtime=rt, fail_on_overflow=m.firmware.fail_if_too_big,
                                                       label=f"{m.name}/{v.name}", env=env, tflm=fw_tflm,
                                                       tflm_cache=self.tflm_cache())],
                               "file_dep": deps + sketch_files, "targets": targets,
                               "uptodate": self.uptodate("firmware", board, rt, m.firmware.fail_if_too_big, env,
                                                         fw_tflm),
                               "verbosity": 2, "clean": True}

    def builds_elf(self, m: Model, v: VariantSettings, board_id: str, rt: str) -> bool:
        """Whether the firmware task links an ELF: boards that cannot be built here get an estimate (size.json only),
        and so does a variant the AOT compiler refused (its aot stage left aot.json and no C)."""
        if not (self.p.boards[board_id].buildable_offline or m.firmware.env_for(board_id) is not None):
            return False
        if rt == "aot" and self.L.aot_json(m.name, v.name).is_file():
            return self.L.aot_sources(m.name, v.name)[0].is_file()
        return True

    def measure_port(self, m: Model, board_id: str) -> dict | None:
        """Where the board is, if it is on the desk: [boards.<id>] port, else the environment's own monitor_port or
        upload_port; None (never measured) otherwise. {port, baud, source, upload_port, env}."""
        env = m.firmware.env_for(board_id)
        if env is None or m.firmware.sketch is None:
            return None
        from ..engine.pio_ini import read_envs

        ini = m.firmware.sketch / "platformio.ini"
        opts = read_envs(ini).get(env, {}) if ini.is_file() else {}
        own_upload = opts.get("upload_port", "").strip() or None
        baud = opts.get("monitor_speed", "").strip()
        set_ = self.p.ports.get(board_id)
        if set_ is not None:
            return {"port": set_.port, "baud": set_.baud, "source": set_.source, "env": env,
                    "upload_port": None if own_upload else set_.port}
        for key in ("monitor_port", "upload_port"):
            val = opts.get(key, "").strip()
            if val and "${" not in val:
                # upload to the board it then listens to: without an upload_port of its own PlatformIO would pick
                # one itself (another board, when two are plugged in)
                return {"port": val, "baud": int(baud) if baud.isdigit() else 115200, "env": env,
                        "source": f"{ini.name} [env:{env}] {key}", "upload_port": None if own_upload else val}
        return None

    def measure(self):
        """The variant's firmware measured on the board on the desk (boards with a port only)."""
        for m in self.p.models:
            for board_id in m.firmware.boards:
                where = self.measure_port(m, board_id)
                if where is None:
                    continue
                board = self.p.boards[board_id]
                sketch = _rel(m.firmware.sketch, self.p.root)
                tflm = self.tflm_settings(m) if self.links_tflm(m) else None
                for v in m.variants:
                    L = self.L
                    vd = L.variant(m.name, v.name)
                    for rt in runtimes_for(m, v):
                        fw = L.firmware(m.name, v.name, board_id, rt)
                        deps = [L.size_json(m.name, v.name, board_id, rt), L.dataset(m.name), L.tflite(m.name, v.name),
                                L.analysis(m.name, v.name)]
                        if self.builds_elf(m, v, board_id, rt):
                            deps.append(L.elf(m.name, v.name, board_id, rt))
                        settings = {k: where[k] for k in ("port", "baud", "env", "upload_port")}
                        yield {"name": self.firmware_name(m, v, board_id, rt).split(":", 1)[1],
                               "doc": f"measure the {rt} firmware on the {board.name} at {where['port']}",
                               "actions": [self.action(_lazy("measure", "run"), sketch, vd, board, fw,
                                                       fw / "measure.json", L.core_dir(), runtime=rt, env=where["env"],
                                                       port=where["port"], port_source=where["source"],
                                                       baud=where["baud"], upload_port=where["upload_port"],
                                                       dataset_npz=L.dataset(m.name),
                                                       tflm=tflm if rt == "tflm" else None,
                                                       tflm_cache=self.tflm_cache(), label=f"{m.name}/{v.name}")],
                               "file_dep": deps, "targets": [fw / "measure.json"],
                               "uptodate": self.uptodate("measure", board, rt, settings, tflm if rt == "tflm" else None),
                               "verbosity": 2, "clean": True}

    def chain(self, m: Model, v: VariantSettings, runtime: str | None = None) -> list[str]:
        """The tasks a variant's figures come from, in stage order (the report names the first that failed).

        With a runtime, only the tasks that runtime's rows depend on: an aot row never waits for the tflm stage
        (a TFLM that cannot run the model does not make the AOT rows fail); a tflm row includes the aot stage
        when its tflm task reads aot.json (doit runs it first)."""
        mv = f"{m.name}/{v.name}"
        rts = runtimes_for(m, v)
        tflm = self.links_tflm(m) and "tflm" in rts
        names = ["tools", f"dataset:{m.name}", f"train:{m.name}"] + ([f"compress:{mv}"] if v.steps else [])
        names += [f"convert:{mv}", f"evaluate:{mv}", f"analyze:{mv}", f"header:{mv}"]
        if "aot" in rts and (runtime in (None, "aot") or (runtime == "tflm" and tflm)):
            names.append(f"aot:{mv}")
        return names + ([f"tflm:{mv}"] if tflm and runtime in (None, "tflm") else [])

    def report_entries(self) -> list[dict]:
        entries = []
        L = self.L
        for m in self.p.models:
            for v in m.variants:
                base = {"model": m.name, "variant": v.name, "required": v.required, "task": m.task,
                        "metrics": L.metrics(m.name, v.name), "analysis": L.analysis(m.name, v.name),
                        "convert": L.convert_json(m.name, v.name),
                        "compress": L.compress_json(m.name, v.name) if v.steps else None,
                        "aot": L.aot_json(m.name, v.name) if "aot" in runtimes_for(m, v) else None,
                        "header": L.header(m.name, v.name)[1], "trained": L.trained(m.name),
                        "history": L.history(m.name), "chain": self.chain(m, v),
                        "sweep": _sweep_entry(m, v)}
                boards = m.firmware.boards if m.firmware.sketch else ()
                if not boards:
                    entries.append({**base, "board": None, "runtime": None, "size": None})
                for b in boards:
                    measured = self.measure_port(m, b) is not None
                    for rt in runtimes_for(m, v):
                        entries.append({**base, "board": b, "runtime": rt, "size": L.size_json(m.name, v.name, b, rt),
                                        "measure": L.firmware(m.name, v.name, b, rt) / "measure.json" if measured
                                        else None,
                                        "measure_task": ("measure:" + self.firmware_name(m, v, b, rt).split(":", 1)[1])
                                        if measured else None,
                                        "chain": self.chain(m, v, rt) + [self.firmware_name(m, v, b, rt)]})
        return entries

    def report(self):
        gates = {"required": sorted({(m.name, v.name) for m in self.p.models for v in m.variants if v.required}),
                 "max_accuracy_drop": self.p.report.max_accuracy_drop}
        # No file_dep: a variant whose chain failed must not stop the report (doit would skip it as an
        # unmet dependency). The report reads what the last `doit` left and names what failed or is missing.
        return {"doc": "print the size table (flash/RAM vs each board, accuracy, fits); write report.*",
                "actions": [self.action(_report, self.report_entries(), self.p.build_dir, self.p.report.headroom,
                                        gates, self.failed)],
                "uptodate": [False], "verbosity": 2}


def _sweep_entry(m: Model, v: VariantSettings) -> dict | None:
    """What the report's sweep view needs: the group and the swept values of the point (model or variant)."""
    if m.sweep is None and v.sweep is None:
        return None
    values, keys = {}, {}
    for s in (m.sweep, v.sweep):
        if s:
            values.update(s["values"])
            keys.update(s["keys"])
    kind = "model" if m.sweep else "variant"
    group = m.sweep["group"] if m.sweep else f"{m.name}/{v.sweep['group']}"
    return {"group": group, "kind": kind, "values": values, "keys": keys,
            "variant_group": v.sweep["group"] if v.sweep else v.name}


def _remove(paths) -> None:
    for p in paths:
        Path(p).unlink(missing_ok=True)


def _tool_paths(tools: list[str]) -> dict:
    import shutil

    return {t: shutil.which(t) for t in tools}


def _check_tools(tools: list[str]) -> None:
    """Every tool the project's stages need, before any training: named, with how to install it."""
    import shutil

    if "arm-none-eabi-gcc" in tools:
        from ..engine.platformio import find_toolchain

        find_toolchain()
    hints = {"gcc": "the host C compiler (the aot stage compiles the generated C on the host): "
                    "sudo apt-get install gcc",
             "qemu-system-arm": "the aot stage proves the generated C on an emulated Cortex-M4: "
                                "sudo apt-get install qemu-system-arm"}
    for tool, hint in hints.items():
        if tool in tools and shutil.which(tool) is None:
            raise TinyMLError(f"{tool} was not found on PATH; {hint} (or remove runtime = \"aot\" from tinyml.toml)")


def _report(entries, build_dir, headroom, gates, failed_dir):
    from .. import report

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
    except (ConfigError, TinyMLError) as e:
        print(f"doit-tinyml: {e}", file=sys.stderr)
        raise SystemExit(2)
    project.build_dir.mkdir(parents=True, exist_ok=True)
    t = Tasks(project)
    namespace = {
        "DOIT_CONFIG": {
            "default_tasks": ["tools", *STAGES],
            "dep_file": str(Layout(project.build_dir).dep_file()),
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
        eps = metadata.distribution(_ROOT.replace("_", "-")).entry_points
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
           "tflm": "the real TFLite Micro on QEMU's Cortex-M4: outputs, arena, instructions",
           "firmware": "PlatformIO firmware per variant and board; flash/RAM vs limits",
           "measure": "upload and measure on the board at a port: time, arena, stack, outputs",
           "report": "the size table: every variant on every board"}[stage]

    def task_creator():
        return method()  # a dict (tools, report) or a generator of subtasks
    task_creator.__doc__ = doc
    task_creator.__name__ = f"task_{stage}"
    return task_creator
