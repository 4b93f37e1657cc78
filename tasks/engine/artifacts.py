"""The artifact contract, in code: one typed record per JSON artifact, written and read here only.

Each record is a dataclass whose fields (type and one line of documentation) are the contract.
`write(path, record)` adds `"schema": "<kind>/<version>"` and writes strict, deterministic JSON
atomically; `read(path, Record)` checks the schema, the required fields and their types and returns
the record; `read_dict` does the same and returns the plain dict (what the report's tables use).
A file that is missing, damaged, or written by another schema version is a TinyMLError naming it
and the command that rebuilds it. docs/ARTIFACTS.md is generated from these records
(`python -m <package>.engine.artifacts > docs/ARTIFACTS.md`) and a test keeps the two equal.

Nested structures (per-runtime metrics, per-layer rows, the ELF breakdown) are plain dicts and
lists whose shape each field's documentation states.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import TinyMLError
from .io import dumps_json, write_text

SCHEMA_VERSION = 1


def F(doc: str, default: Any = dataclasses.MISSING, **kw):
    """A field with its documentation (optional fields get a default)."""
    if default is dataclasses.MISSING and "default_factory" not in kw:
        return field(metadata={"doc": doc}, **kw)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc}, **kw)
    return field(default=default, metadata={"doc": doc}, **kw)


class Record:
    """Base of every artifact record: KIND names it, FILE and WRITER say where it lives and who writes it."""
    KIND: ClassVar[str] = ""
    FILE: ClassVar[str] = ""
    WRITER: ClassVar[str] = ""
    ABOUT: ClassVar[str] = ""

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"schema": f"{self.KIND}/{SCHEMA_VERSION}", **d}


# --------------------------------------------------------------------------------------------- records
@dataclass
class Dataset(Record):
    KIND, FILE, WRITER = "dataset", "<model>/dataset.json", "dataset"
    ABOUT = ("What the dataset stage made of the source (beside `dataset.npz`: float32 `x_train x_test`, "
             "`y_train y_test` (int32 labels or float32 targets), `norm_a norm_b`, and for an autoencoder "
             "`is_anomaly_test`).")
    task: str = F("regression | binary | multiclass | autoencoder")
    n_classes: int | None = F("number of classes (classifiers), else null")
    class_names: list | None = F("class names in label order, or null")
    input_shape: list = F("shape of one input sample")
    output_shape: list = F("shape of one target (regression, autoencoder)")
    normalize: str = F("none | standard | minmax: x_model = (x - norm_a) / norm_b, per feature")
    norm_a: list = F("per-feature offset")
    norm_b: list = F("per-feature scale")
    counts: dict = F("samples per split: {train, test}")
    source: str = F("where the data came from (file name, generator or callable)")
    split: str = F("how the test part was chosen: random (seeded shuffle) | time (the last samples or windows; "
                   "windows that would straddle the boundary are dropped) | fixed (the data's own test set)", "random")
    test_source: str | None = F("the fixed test file's name (`[dataset] test`), or null", None)
    window: int | None = F("CSV time series: time steps per window, or null", None)
    stride: int | None = F("CSV time series: steps between window starts, or null", None)


@dataclass
class Convert(Record):
    KIND, FILE, WRITER = "convert", "<model>/<variant>/convert.json", "convert"
    ABOUT = "How the .tflite was made (beside `model.tflite`)."
    converter: str = F("keras | saved_model | concrete | auto (as configured)")
    chosen: str = F("the method whose output was kept")
    quantization: str = F("float32 | dynamic | float16 | int8 | int16x8")
    io: str = F("input/output type of the .tflite")
    qat: bool = F("converted from a quantization-aware trained model")
    representative_samples: int = F("samples given to the converter's calibration")
    tflite_bytes: int = F("size of model.tflite")
    keras_bytes: int = F("size of the Keras model file converted")
    methods: dict = F("per method tried: {bytes, max_abs_error_vs_keras, matches}")
    errors: dict = F("per method that failed: the converter's message")
    per_channel: bool | None = F("full-integer weights quantized per channel (true) or per tensor", None)


@dataclass
class Metrics(Record):
    KIND, FILE, WRITER = "metrics", "<model>/<variant>/metrics.json", "evaluate"
    ABOUT = ("The test split through LiteRT, TFLM and the float Keras model. Per runtime: regression `mae rmse`; "
             "classification `accuracy precision recall f1 average confusion_matrix` (rows: the true class, "
             "columns: the prediction); autoencoder the same plus `mode reconstruction_error (mse / mae) threshold "
             "train_error_mean train_error_std k test_error_mean` and `voted` (the figures after voting over "
             "groups, with `vote_window vote_rule vote_k vote_count_threshold vote_min_members vote_fraction "
             "train_group_counts threshold_rule groups dropped_tail_samples`). Every runtime block (and `voted`) "
             "has `distinct_predictions`: how many different decisions (regression: output values) it gave.")
    task: str = F("regression | binary | multiclass | autoencoder")
    counts: dict = F("{test: samples evaluated}")
    tflite_bytes: int = F("size of the .tflite evaluated")
    primary: dict = F("what the report ranks by: {name, value, higher_is_better, runtime}")
    litert: dict = F("figures from LiteRT (desktop TFLite)")
    tflm: dict = F("figures from the TFLite Micro interpreter, or {error} when TFLM cannot run the model")
    keras: dict | None = F("figures from the float Keras model (the reference)")
    agreement: dict | None = F("{runtime, max_abs_error_vs_keras, top1_agreement_vs_keras | "
                               "decision_agreement_vs_keras}")
    anomaly: dict | None = F("the anomaly settings used (autoencoder)", None)


@dataclass
class History(Record):
    KIND, FILE, WRITER = "history", "<model>/history.json", "train"
    ABOUT = ("How training went (beside `trained.keras`). Every other key is a per-epoch curve as Keras names it "
             "(`loss`, `val_loss`, `accuracy`, ...): a list of numbers, one per epoch run: write it with "
             "`write_history` and read it with `read_history`, which check the fields and the curves.")
    epochs_run: int = F("epochs trained (fewer than `epochs` when early stopping ended training)")
    params: int = F("parameters of the trained model")
    epochs: int | None = F("epochs configured", None)
    early_stopped: bool | None = F("early stopping ended training before `epochs`", None)
    best_val_loss: float | None = F("the lowest validation loss of any epoch, or null without validation", None)
    weights_h5_bytes: int | None = F("the weights alone as HDF5 (`save_weights`): the literature's Keras model "
                                     "size, without optimizer state", None)
    weights_h5_gzip_bytes: int | None = F("the same, gzip -9", None)


@dataclass
class Analysis(Record):
    KIND, FILE, WRITER = "analysis", "<model>/<variant>/analysis.json", "analyze"
    ABOUT = "What the .tflite holds and needs, read from the flatbuffer and measured with the real TFLM."
    tflite_bytes: int = F("size of model.tflite")
    tflite_gzip_bytes: int = F("size gzip -9 would make of it")
    flatbuffer: dict = F("{data_bytes (weights and constants), non_data_bytes (graph, metadata)}")
    ops: list = F("distinct operators, in order of first use")
    op_count: int = F("len(ops)")
    n_subgraphs: int = F("subgraphs in the model")
    input: dict = F("{name, shape, dtype, scale, zero_point} of the (first) input")
    output: dict = F("{name, shape, dtype, scale, zero_point} of the (first) output")
    inputs: list = F("every input, as `input`")
    outputs: list = F("every output, as `output`")
    params: int = F("weights and biases")
    macs: int = F("multiply-accumulates per inference")
    hybrid: bool = F("dynamic-range ops (float activations, int8 weights)")
    float16: bool = F("float16 weights dequantized at run time")
    arena: dict | None = F("TFLM tensor arena: {host_bytes, target32_bytes (32-bit, reference kernels), final32_bytes "
                           "(arena_used_bytes()), exact, by_kernels: {reference, cmsis_nn: {target32_bytes (the "
                           "largest over the TFLM generations), final32_bytes, exact, by_tflm: {upstream, arduino: "
                           "{target32_bytes, final32_bytes, exact}}}}, margin, bytes (what the header reserves: the "
                           "largest figure plus the margin), bytes_for (which kernel set and TFLM generation that is), "
                           "split, host_split, method}, or null when TFLM cannot run the model")
    arena_margin: float = F("the margin added to the 32-bit figure")
    tflm_compatible: bool = F("TFLite Micro can run it")
    problems: list = F("[{op | tensor, message, fix, severity}]")
    layers: list = F("per operator: {index, op, inputs, outputs, params, macs, alive_bytes, peak}")
    peak_layer: int | None = F("index of the operator with the most live activation bytes")
    peak_alive_bytes: int = F("live activation bytes at the peak")


@dataclass
class Size(Record):
    KIND, FILE, WRITER = "size", "<model>/<variant>/<board>[.<runtime>]/size.json", "firmware"
    ABOUT = ("The firmware against the board's limits: PlatformIO's own RAM/Flash figures for a build (the sketch's "
             "own environment, or a generated project with the real TFLite Micro linked), or a marked estimate "
             "(a board that cannot be built here; a tflm firmware without the interpreter, which is then added "
             "from the table of real links) (beside `firmware.elf`, `firmware.map`). Time per inference is always "
             "an estimate from a QEMU instruction count (`latency_basis`).")
    board: str = F("board id")
    runtime: str = F("tflm | aot")
    estimate: bool = F("true: flash/RAM are not (all) measured from a build (see estimate_basis)")
    flash_used: int | None = F("bytes of flash the firmware uses (null: nothing was built, see incompatible)")
    flash_limit: int = F("the board's flash for the application (an environment build: PlatformIO's own limit)")
    ram_used: int | None = F("bytes of RAM (data, bss, heap and stack reserves; null: nothing was built)")
    ram_limit: int = F("the board's RAM (an environment build: PlatformIO's own limit)")
    flash_over_by: int | None = F("bytes over the flash limit (0 when it fits)")
    ram_over_by: int | None = F("bytes over the RAM limit (0 when it fits)")
    fits: bool = F("fits both limits and the runtime can run the model")
    breakdown: dict = F("where the bytes go: {flash: {model, inference, application}, "
                        "ram: {arena, stack_heap, application}}")
    estimate_basis: str | None = F("how an estimate was made and how far off it can be", None)
    linker_overflow: dict | None = F("{region: bytes} when the first link overflowed the linker's regions", None)
    incompatible: str | None = F("why the runtime cannot run this variant (then `fits` is false; the build, if "
                                 "any, is for the size comparison only)", None)
    interpreter_estimate: dict | None = F("tflm firmware without the interpreter: {flash, ram, config "
                                          "(`<core>/<kernels>@<generation>`), generation (the TFLM generation "
                                          "assumed: the larger interpreter when no tree is known), error_pct (never "
                                          "below the real links measured, at most this much above), unmeasured_ops, "
                                          "other_generations: {<g>: {flash, ram}}, measured_without: {flash_used, "
                                          "ram_used}}: what was added from engine/data/tflm_size_table.json", None)
    env: dict | None = F("built from the sketch's own platformio.ini: {name, platformio_ini, limits}", None)
    tflm: dict | None = F("the real TFLite Micro linked: {linked, library, layout, version, kernels, archive_key, "
                          "n_sources, per_channel_fully_connected, reference_kernels, framework}", None)
    latency_ms: float | None = F("estimated milliseconds per inference on this board (see latency_basis)", None)
    latency_basis: dict | None = F("{source, instructions, counted_on, core, cpu_mhz, memory, dtype, isa_factor, cpi, "
                                   "memory_factor, band_ms: [low, high], error, formula, note}, or {why_not}", None)
    max_latency_ms: float | None = F("the board's `[boards.<id>] max_latency_ms` (the ship decision skips slower "
                                     "variants)", None)
    firmware_sha256: str | None = F("sha256 of what firmware.elf puts on the board (its allocated sections; "
                                    "engine.elf.content_sha256): a measure.json stands for this firmware only if it "
                                    "names the same hash", None)


@dataclass
class Aot(Record):
    KIND, FILE, WRITER = "aot", "<model>/<variant>/aot.json", "aot"
    ABOUT = ("The ahead-of-time C model (beside `aot/tinyml_model.c/.h`) and its proof: bit-exact against the "
             "real TFLM interpreter on the host, identical on QEMU's Cortex-M4 (DSP kernels) and Cortex-M3 "
             "(portable kernels). A model the compiler cannot take has `supported: false` and the reason only.")
    supported: bool = F("the compiler took the model (false: see reason; no C was written)")
    reason: str | None = F("why the model cannot be compiled", None)
    planned_bytes: int | None = F("the static arena: activations, input, output and kernel scratch", None)
    ram_bytes: int | None = F("RAM the model needs (= planned_bytes: the input and output live in the arena)", None)
    io_in_arena: bool | None = F("the input and output buffers are part of the arena", None)
    io_bytes: int | None = F("bytes of the input and output tensors", None)
    scratch_bytes: int | None = F("kernel scratch (im2col rows, widened inputs) inside the arena", None)
    weights_bytes: int | None = F("constant weights and biases in flash", None)
    tables_bytes: int | None = F("per-channel requantization records in flash", None)
    tflm_arena_bytes: int | None = F("TFLM's minimum arena for the same model on the 64-bit host", None)
    tflm_arena_target32_bytes: int | None = F("TFLM's arena for a 32-bit target (engine.tflm)", None)
    ops: list | None = F("operators in graph order", None)
    kernels: list | None = F("per operator: the kernel and variant (dsp or portable) on each kind of core", None)
    kernel_variants: dict | None = F("what the dsp and portable variants mean", None)
    host_checked: list | None = F("host builds compared with TFLM", None)
    samples: int | None = F("test samples compared with TFLM", None)
    int8_identical_fraction: float | None = F("fraction of int8 outputs identical to TFLM (1.0 when it passes)", None)
    float_max_rel_error: float | None = F("largest relative error against TFLM (float outputs)", None)
    float_max_abs_error: float | None = F("largest absolute error against TFLM (float outputs)", None)
    passed: bool | None = F("every check passed", None)
    target: dict | None = F("the Cortex-M4 run: {board, core, kernels, samples, identical, "
                            "instructions_per_inference, instructions_min/max, flash_used, ram_used, timing}", None)
    targets: dict | None = F("the runs per QEMU target (mps2_an386: Cortex-M4, DSP; mps2_an385: Cortex-M3, portable)",
                             None)
    instructions_per_inference: int | None = F("instructions per inference on QEMU's Cortex-M4", None)
    sources_sha256: dict | None = F("sha256 of each generated C file (the firmware stage depends on this record)", None)


@dataclass
class Compress(Record):
    KIND, FILE, WRITER = "compress", "<model>/<variant>/compress.json", "compress"
    ABOUT = ("What each compression step did (beside `compressed.keras`; see docs/compression.md). A step holds "
             "`method`, `settings` (every default filled in), `params_before/after`, `macs_before/after`, "
             "`keras_bytes`, `keras_gzip_bytes`, `test_loss`, `kernels` (per `<layer>/<kernel>`: shape, size, "
             "sparsity, distinct values) and the method's own figures.")
    steps: list = F("one record per step, in order")
    trained: dict = F("the trained model before the steps: params, macs, format, file sizes, test_loss")
    final: dict = F("the compressed model: params, macs, format, keras and weights-only HDF5 sizes")
    requires_full_integer: bool = F("a qat step: the variant must convert with quantization = \"int8\"")


@dataclass
class Report(Record):
    KIND, FILE, WRITER = "report", "report.json", "report"
    ABOUT = ("Everything `doit report` printed, as data (report.md, report.csv and report.html are rendered from "
             "the same rows; see docs/report.md). `render.terminal(report.json)` reproduces the terminal text.")
    headroom: float = F("fraction of flash and RAM kept free when choosing what to ship")
    rows: list = F("one row per model, variant, board and runtime: every figure of every column")
    ship: list = F("per board and model: the variant to ship and why, or why none")
    diff: list | None = F("changes against the previous report.json, or null without one")
    layers: dict = F("per model/variant: the per-layer table and the activation peak")
    previous_note: str = F("what the comparison was made against")
    gate_failures: list = F("why the CI gate failed (empty: it passed)")
    gates: dict = F("the gate's settings: required variants, max_accuracy_drop")
    warnings: list = F("degenerate figures and what they keep out of the ship decision")


@dataclass
class TflmTarget(Record):
    KIND, FILE, WRITER = "tflm", "<model>/<variant>/tflm.json", "tflm"
    ABOUT = ("The real TFLite Micro (the user's library tree, prebuilt for the Cortex-M4) running the test vectors on "
             "QEMU's mps2-an386 with the variant's model_data.h op resolver: outputs against the tflite-micro Python "
             "interpreter, the arena and the instructions per inference, beside the AOT figures and the analyze "
             "stage's 32-bit arena (beside `tflm/firmware.elf`).")
    board: str = F("the emulated board (mps2_an386)")
    core: str = F("its core (cortex-m4f)")
    kernels: str = F("cmsis_nn | reference")
    library: dict = F("{library, layout, version, kernels, archive_key, n_sources, per_channel_fully_connected, "
                      "reference_kernels}")
    skipped: str | None = F("why nothing was measured (TFLM cannot run this variant); the figures below are then absent",
                            None)
    samples: int | None = F("test vectors run", None)
    outputs_equal: bool | None = F("every output equals the Python interpreter's (int: byte for byte; float32: within "
                                   "1e-4 of the largest output of the same input + 1e-6, float32 rounding)", None)
    tolerance: str | None = F("what float32 outputs were held to (absent for integer outputs)", None)
    bit_identical: bool | None = F("every output byte equal", None)
    n_identical: int | None = F("vectors with byte-identical outputs", None)
    arena_min_bytes: int | None = F("smallest arena (multiple of 16) in which AllocateTensors and Invoke succeed on "
                                    "the target (bisection in the firmware; 16 bytes less fails)", None)
    max_abs_diff: float | int | None = F("largest output difference", None)
    mismatch: str | None = F("the first differing output, when any", None)
    arena_used_bytes: int | None = F("interpreter.arena_used_bytes() after AllocateTensors", None)
    bisection: str | None = F("how arena_min_bytes was found when not by the firmware's own bisection", None)
    instructions_per_inference: int | None = F("mean instructions executed by Invoke() (QEMU -icount, exact)", None)
    instructions_min: int | None = F("fewest over the vectors", None)
    instructions_max: int | None = F("most over the vectors", None)
    allocations: dict | None = F("RecordingMicroAllocator's table on the target: {total, head, tail, categories}", None)
    analyze_arena: dict | None = F("the analyze stage's 32-bit arena for the same model and kernel set: "
                                   "{target32_bytes, bytes_with_margin, error_pct vs arena_min_bytes, kernels, exact, "
                                   "tree_layout (the linked tree's TFLM generation), tree_target32_bytes (its figure)}",
                                   None)
    aot: dict | None = F("the AOT figures of the same variant when it has them: {instructions_per_inference, "
                         "planned_bytes, instructions_ratio_tflm_over_aot}", None)
    profile: dict | None = F("what the inferences executed under QEMU, per translation block (engine/profile.py): "
                             "{version, instructions, inferences, functions, block_fields, blocks}; the time model's "
                             "input (engine/latency.py)", None)
    runner_flash_used: int | None = F("flash of the check firmware (it holds test vectors and a 3 MiB arena: "
                                      "not a product figure)", None)
    runner_ram_used: int | None = F("RAM of the check firmware", None)
    qemu_command: str | None = F("the QEMU command line", None)


@dataclass
class Measure(Record):
    KIND, FILE, WRITER = "measure", "<model>/<variant>/<board>[.<runtime>]/measure.json", "measure"
    ABOUT = ("The firmware measured on the board on the desk (opt-in: a port): doit's harness built in the sketch's own "
             "PlatformIO environment with the variant's model, uploaded with PlatformIO's upload, read over the serial "
             "port (beside `measure/harness.elf`). `doit report` shows `latency_ms` as measured when its `firmware_sha256` "
             "is size.json's (the same firmware), and ignores a stale one.")
    board: str = F("board id")
    runtime: str = F("tflm | aot")
    env: str = F("the sketch's PlatformIO environment the harness was built and uploaded with")
    port: str = F("the serial port read (a device, or a pyserial URL such as socket://127.0.0.1:4555)")
    skipped: str | None = F("why nothing was measured (the runtime cannot run this variant); no figures then", None)
    port_source: str | None = F("where the port came from: tinyml.toml [boards.<id>] port, or the environment's "
                                "monitor_port / upload_port", None)
    baud: int | None = F("serial speed", None)
    measured_at: str | None = F("when (UTC, ISO 8601)", None)
    firmware_sha256: str | None = F("sha256 of what the firmware.elf this measurement stands for puts on the board "
                                    "(engine.elf.content_sha256)", None)
    harness_sha256: str | None = F("the same of the harness that ran on the board", None)
    core: str | None = F("the core the harness reported (SCB->CPUID): cortex-m4, cortex-m0+, ...", None)
    cpuid: str | None = F("SCB->CPUID as hex", None)
    fpu: bool | None = F("the harness was built with the FPU and the core has one", None)
    clock_hz: int | None = F("the clock the cycles are converted with (SystemCoreClock, else F_CPU)", None)
    timer: str | None = F("dwt (the DWT cycle counter) | systick | micros (micros() x the clock)", None)
    runs: int | None = F("timed inferences (after one warm-up)", None)
    cycles: list | None = F("cycles of each timed inference", None)
    cycles_median: float | None = F("median cycles", None)
    cycles_min: int | None = F("fewest cycles", None)
    cycles_max: int | None = F("most cycles", None)
    latency_ms: float | None = F("median milliseconds per inference at clock_hz", None)
    latency_min_ms: float | None = F("fastest", None)
    latency_max_ms: float | None = F("slowest", None)
    arena_used_bytes: int | None = F("arena_used_bytes() on the board (TFLM), or the AOT plan", None)
    arena_size_bytes: int | None = F("the arena the firmware reserves", None)
    stack_used_bytes: int | None = F("deepest stack the inferences used (painted stack), or null when unknown", None)
    stack_method: str | None = F("how the stack was measured", None)
    outputs: dict | None = F("the outputs for the test inputs against the host interpreter: {samples, compared_with, "
                             "outputs_equal, bit_identical, n_identical, max_abs_diff, tolerance, mismatch}", None)
    harness_flash_used: int | None = F("flash of the harness firmware (PlatformIO's figure)", None)
    harness_ram_used: int | None = F("RAM of the harness firmware", None)


RECORDS: tuple[type[Record], ...] = (Dataset, History, Compress, Convert, Metrics, Analysis, Aot, Size, TflmTarget,
                                     Measure, Report)

# the artifacts that are not JSON records: (path, writer, content)
FILES = (
    ("<model>/dataset.npz", "dataset", "the splits as arrays (see the dataset record)"),
    ("<model>/trained.keras", "train", "the trained tf_keras model, byte-deterministic for identical inputs"),
    ("<model>/<variant>/compressed.keras", "compress", "the compressed model, wrappers stripped (HDF5 bytes "
     "after QAT); `compress.json` beside it records each step"),
    ("<model>/<variant>/model.tflite", "convert", "the flatbuffer"),
    ("<model>/<variant>/model_data.h, model_data.cc", "header", "the model as a 16-aligned C array, the arena "
     "size, the op list and resolver, provenance"),
    ("<model>/<variant>/aot/", "aot", "the model as plain C (`tinyml_model.c/.h`); `aot.json` beside it"),
    ("<model>/<variant>/<board>[.<runtime>]/firmware.elf, firmware.map", "firmware", "the linked firmware"),
    ("<model>/<variant>/tflm/firmware.elf", "tflm", "the TFLM target-check firmware run under QEMU"),
    ("<model>/<variant>/<board>[.<runtime>]/measure/harness.elf", "measure", "the measurement harness that ran on "
     "the board"),
    ("report.md, report.json, report.csv, report.html, plots/", "report", "the report"),
)


# --------------------------------------------------------------------------------------------- I/O
def _check_type(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_check_type(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint)


def _hints(cls: type[Record]) -> dict:
    return typing.get_type_hints(cls)


def write(path: str | Path, record: Record) -> None:
    """Write `record` to `path` (strict JSON, sorted keys, atomic), after checking its field types."""
    hints = _hints(type(record))
    for f in dataclasses.fields(record):
        v = getattr(record, f.name)
        if not _check_type(v, hints[f.name]):
            raise TypeError(f"{type(record).__name__}.{f.name} = {v!r} is not {hints[f.name]}")
    write_text(path, dumps_json(record.to_dict(), where=str(path)))


def read_dict(path: str | Path, cls: type[Record], *, stage_hint: str | None = None) -> dict:
    """The artifact at `path` as a dict (schema key removed), checked against `cls`."""
    path = Path(path)
    fix = f"run `doit {stage_hint or cls.WRITER}` (or `doit`) to rebuild it"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TinyMLError(f"{path} is missing: {fix}") from None
    except (OSError, ValueError) as e:
        raise TinyMLError(f"{path} is not readable JSON ({e}): {fix}") from None
    if not isinstance(data, dict):
        raise TinyMLError(f"{path} does not hold a {cls.KIND} record: {fix}")
    schema = data.pop("schema", None)
    if schema != f"{cls.KIND}/{SCHEMA_VERSION}":
        raise TinyMLError(f"{path} holds schema {schema!r}, this doit-tinyml writes "
                          f"'{cls.KIND}/{SCHEMA_VERSION}': {fix}")
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required:
                raise TinyMLError(f"{path} has no {f.name!r} ({cls.KIND} record): {fix}")
            continue
        if not _check_type(data[f.name], hints[f.name]):
            raise TinyMLError(f"{path}: {f.name} = {data[f.name]!r} is not of the recorded type: {fix}")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TinyMLError(f"{path} has fields this doit-tinyml does not know ({', '.join(sorted(unknown))}): {fix}")
    return data


def read_history(path: str | Path) -> dict:
    """<model>/history.json as a dict (schema key removed), checked against `History`.

    The train stage writes it as plain JSON (no schema key); a file with `"schema": "history/1"` is read
    too. Keys beyond History's fields must be per-epoch curves (lists of numbers); NaN is not JSON, so a
    curve holds finite numbers or null.
    """
    path = Path(path)
    fix = "run `doit train` (or `doit`) to rebuild it"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TinyMLError(f"{path} is missing: {fix}") from None
    except (OSError, ValueError) as e:
        raise TinyMLError(f"{path} is not readable JSON ({e}): {fix}") from None
    if not isinstance(data, dict):
        raise TinyMLError(f"{path} does not hold a history record: {fix}")
    schema = data.pop("schema", None)
    if schema not in (None, f"{History.KIND}/{SCHEMA_VERSION}"):
        raise TinyMLError(f"{path} holds schema {schema!r}, this doit-tinyml writes "
                          f"'{History.KIND}/{SCHEMA_VERSION}': {fix}")
    hints = _hints(History)
    names = set()
    for f in dataclasses.fields(History):
        names.add(f.name)
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise TinyMLError(f"{path} has no {f.name!r} (history record): {fix}")
            continue
        if not _check_type(data[f.name], hints[f.name]):
            raise TinyMLError(f"{path}: {f.name} = {data[f.name]!r} is not of the recorded type: {fix}")
    for k, v in data.items():
        if k not in names and not (isinstance(v, list) and all(
                x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v)):
            raise TinyMLError(f"{path}: {k!r} is neither a history field nor a per-epoch curve: {fix}")
    return data


def write_history(path: str | Path, history: dict) -> None:
    """Write <model>/history.json: the History fields plus per-epoch curves (checked like read_history)."""
    hints = _hints(History)
    for f in dataclasses.fields(History):
        required = f.default is dataclasses.MISSING
        if (f.name in history and not _check_type(history[f.name], hints[f.name])) or (required and f.name not in history):
            raise TypeError(f"history {f.name} = {history.get(f.name)!r} is not {hints[f.name]}")
    names = {f.name for f in dataclasses.fields(History)}
    for k, v in history.items():
        if k not in names and not isinstance(v, list):
            raise TypeError(f"history {k!r} is neither a History field nor a per-epoch curve")
    write_text(path, dumps_json({"schema": f"{History.KIND}/{SCHEMA_VERSION}", **history}, where=str(path)))


def read(path: str | Path, cls: type[Record], *, stage_hint: str | None = None):
    """The artifact at `path` as a `cls` record (see read_dict)."""
    return cls(**read_dict(path, cls, stage_hint=stage_hint))


# --------------------------------------------------------------------------------------------- docs
def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "object"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def markdown() -> str:
    """docs/ARTIFACTS.md, generated from the records."""
    out = ["# Artifact contracts (generated from `tasks/engine/artifacts.py`: do not edit)", "",
           "Every JSON artifact a stage writes is one record below, with `\"schema\": \"<kind>/"
           f"{SCHEMA_VERSION}\"`. Stages write and read them through `engine.artifacts` only; a record "
           "that is missing, damaged or of another schema is an error naming the file and the command that "
           "rebuilds it. Paths are relative to the build folder.", ""]
    out += ["| other artifact | written by | content |", "|---|---|---|"]
    out += [f"| `{path}` | {writer} | {what} |" for path, writer, what in FILES] + [""]
    for cls in RECORDS:
        out += [f"## {cls.KIND}: `{cls.FILE}`", "", f"Written by the `{cls.WRITER}` stage. {cls.ABOUT}", "",
                "| field | type | meaning |", "|---|---|---|"]
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            out.append(f"| `{f.name}`{' (optional)' if optional else ''} | {_type_name(hints[f.name])} | "
                       f"{f.metadata.get('doc', '').replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
