"""Where every artifact lives: the one place that turns (model, variant, board, runtime) into paths.

Everything a build writes is under the project's build folder; model, variant and board names are
checked at load (letters, digits, '_', '-') so no name can lead outside it.

    build/
      <model>/dataset.npz, dataset.json, trained.keras, history.json, logs/<task>.log, steps/ (step cache)
      <model>/<variant>/compressed.keras, compress.json, model.tflite, convert.json, metrics.json,
                        analysis.json, model_data.h, model_data.cc, aot/, aot.json
      <model>/<variant>/<board>[.<runtime>]/firmware.elf, firmware.map, size.json, pio/
      report.md, report.json, report.csv, report.html, plots/
      .platformio/ (the offline PlatformIO core), .doit.sqlite, .tinyml/ (failures, code hashes)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Layout:
    build: Path

    # ---- per model
    def model(self, model: str) -> Path:
        return self.build / model

    def dataset(self, model: str) -> Path:
        return self.model(model) / "dataset.npz"

    def dataset_json(self, model: str) -> Path:
        return self.model(model) / "dataset.json"

    def trained(self, model: str) -> Path:
        return self.model(model) / "trained.keras"

    def history(self, model: str) -> Path:
        return self.model(model) / "history.json"

    def step_cache(self, model: str) -> Path:
        """Models after each compression step, by the hash of the steps so far (shared prefixes run once)."""
        return self.model(model) / "steps"

    def log(self, model: str, name: str) -> Path:
        return self.model(model) / "logs" / f"{name}.log"

    # ---- per variant
    def variant(self, model: str, variant: str) -> Path:
        return self.model(model) / variant

    def compressed(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "compressed.keras"

    def compress_json(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "compress.json"

    def tflite(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "model.tflite"

    def convert_json(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "convert.json"

    def metrics(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "metrics.json"

    def analysis(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "analysis.json"

    def header(self, model: str, variant: str) -> tuple[Path, Path]:
        vd = self.variant(model, variant)
        return vd / "model_data.h", vd / "model_data.cc"

    def aot_dir(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "aot"

    def aot_json(self, model: str, variant: str) -> Path:
        return self.variant(model, variant) / "aot.json"

    def aot_sources(self, model: str, variant: str) -> list[Path]:
        d = self.aot_dir(model, variant)
        return [d / "tinyml_model.c", d / "tinyml_model.h"]

    # ---- per board
    def firmware(self, model: str, variant: str, board: str, runtime: str) -> Path:
        return self.variant(model, variant) / (board if runtime == "tflm" else f"{board}.{runtime}")

    def size_json(self, model: str, variant: str, board: str, runtime: str) -> Path:
        return self.firmware(model, variant, board, runtime) / "size.json"

    def elf(self, model: str, variant: str, board: str, runtime: str) -> Path:
        return self.firmware(model, variant, board, runtime) / "firmware.elf"

    # ---- project-wide
    def core_dir(self) -> Path:
        return self.build / ".platformio"

    def dep_file(self) -> Path:
        return self.build / ".doit.sqlite"

    def state(self) -> Path:
        return self.build / ".tinyml"

    def failed_dir(self) -> Path:
        return self.state() / "failed"

    def code_cache(self) -> Path:
        return self.state() / "code.json"
