"""The `measure` stage: the variant's firmware measured on the board on the desk; `measure.json`.

Opt-in per board: a port in `[boards.<id>] port`, or the sketch environment's own `monitor_port` /
`upload_port`. Runs after `firmware`, for boards built through the sketch's own PlatformIO
environment (`envs`), which is what the user flashes:

1. builds doit's harness (engine/measure_port/tinyml_measure.cpp) in that environment instead of
   the sketch's sources, with the variant's model and K test inputs from the test split;
2. uploads it with PlatformIO's own upload (`pio run -t upload -e <env>`);
3. reads the harness's report on the serial port: cycles of N inferences (DWT CYCCNT, or SysTick),
   the arena actually used, the stack high-water mark, and the outputs for the K inputs, which are
   compared with the tflite-micro Python interpreter's;
4. writes measure.json, keyed to the firmware it stands for (the sha256 of firmware.elf) and the
   harness it ran (its own sha256), with the board, port and date.

`doit report` then shows the measured time instead of the estimate (`latency_basis.kind`). The task
re-runs when the firmware changes or on `doit forget measure:...`; a stale measure.json (its firmware
hash differs from the firmware's) is never shown as current.
"""
from __future__ import annotations

import datetime
import os
import secrets
import shutil
from pathlib import Path

from .engine import artifacts
from .engine.boards import Board
from .engine.errors import TinyMLError
from .engine import elf as elfsize
from .engine.io import locked, sha256_text


def run(sketch_dir: Path, variant_dir: Path, board: Board, fw_dir: Path, out_json: Path, core_dir: Path, *,
        runtime: str, env: str, port: str, port_source: str, baud: int, dataset_npz: Path,
        tflm: dict | None = None, tflm_cache: Path | None = None, upload_port: str | None = None,
        runs: int | None = None, label: str = "") -> dict:
    import numpy as np

    from . import firmware
    from .engine import measure, platformio, tflm_target

    sketch_dir, variant_dir, fw_dir, out_json = map(Path, (sketch_dir, variant_dir, fw_dir, out_json))
    out_json.unlink(missing_ok=True)  # a failed measurement must not leave the previous one as current
    label = (label or f"{variant_dir.parent.name}/{variant_dir.name}") + ("" if runtime == "tflm" else f" ({runtime})")
    where = f"{label} @ {board.id}"
    size = artifacts.read_dict(fw_dir / "size.json", artifacts.Size)
    elf = fw_dir / "firmware.elf"
    why = size.get("incompatible") or ("no firmware was built" if size.get("flash_used") is None or not elf.is_file()
                                       else None)
    if why is None and runtime == "tflm" and not firmware.has_interpreter(elf):
        why = (f"the firmware of environment {env!r} has no TFLite Micro interpreter (its figures are an estimate): "
               f"add the TFLite Micro library to the environment's lib_deps, or give doit one (TINYML_TFLM_DIR) for an "
               f"environment on doit's local platform")
    if why:
        artifacts.write(out_json, artifacts.Measure(board=board.id, runtime=runtime, env=env, port=port,
                                                    skipped=f"nothing to measure: {why}"))
        print(f"measure: {where}: nothing to measure ({why})", flush=True)
        return {}
    if size.get("flash_over_by"):
        raise TinyMLError(f"{where}: the firmware is {size['flash_over_by']:,} B over the board's flash: it cannot be "
                          f"uploaded to measure it")
    if size.get("ram_over_by"):
        raise TinyMLError(f"{where}: the firmware needs {size['ram_over_by']:,} B more RAM than the board has: it "
                          f"cannot run to be measured")
    if not measure.expected_ready(port):
        raise TinyMLError(f"no board on {port} ({port_source}): the port does not exist; plug {board.name} in, or "
                          f"fix the port")

    # the test inputs and what the host interpreter computes for them
    a = artifacts.read_dict(variant_dir / "analysis.json", artifacts.Analysis)
    model = (variant_dir / "model.tflite").read_bytes()
    try:
        with np.load(dataset_npz) as d:
            x = d["x_test"]
    except (OSError, KeyError) as e:
        raise TinyMLError(f"{dataset_npz}: cannot read x_test ({e}); run `doit dataset`") from None
    xq, expected = tflm_target.test_vectors(model, x, a["input"], measure.MAX_VECTORS, where)
    work = fw_dir / "measure"
    vec_cc = tflm_target.write_vectors(xq, work / "vectors", name="tinyml_measure_vectors", macro="TINYML_MEASURE")

    # the harness, built in the sketch's environment with the variant's model
    files, includes = firmware.model_files(variant_dir, runtime)
    sources = list(files.values()) + [measure.HARNESS, vec_cc]
    n_runs = int(runs or measure.RUNS)
    build_id = secrets.randbits(32)  # this build's identity: a report from any other harness is refused
    defines = [f"TINYML_RUNTIME_{runtime.upper()}", f"TINYML_MEASURE_RUNS={n_runs}", f"TINYML_MEASURE_BAUD={baud}",
               f"TINYML_MEASURE_BUILD=0x{build_id:08x}u"]
    if board.mcu.startswith("cmsdk"):  # the QEMU MPS2 boards: UART0 of the CMSDK
        defines.append("TINYML_MEASURE_UART_CMSDK=0x40004000u")
    link_flags: list[str] = []
    if runtime == "tflm":
        extra = firmware.local_tflm(sketch_dir, env, tflm, board, variant_dir, tflm_cache or fw_dir / "tflm-lib")
        if extra is not None:
            sources += list(extra["sources"].values())
            includes += extra["include_dirs"]
            defines += extra["defines"]
            link_flags = extra["link_flags"]
    overrides = {"upload.maximum_size": board.flash, "upload.maximum_ram_size": board.ram} if board.custom else {}
    res = platformio.build_env(sketch_dir, env, core_dir, work / "env", include_dirs=includes + [work / "vectors"],
                               sources=sources, defines=defines, board_overrides=overrides, model_dir=variant_dir,
                               what=f"the measurement harness for {where}", link_flags=link_flags,
                               replace_sources=True)
    limits = res.limits or {}
    if limits.get("flash") and res.flash_used > limits["flash"]:
        raise TinyMLError(f"{where}: the measurement firmware is {res.flash_used - limits['flash']:,} B over the "
                          f"board's flash ({res.flash_used:,} of {limits['flash']:,} B): too big to upload")
    harness_elf = work / "harness.elf"
    shutil.copyfile(res.elf, harness_elf)

    # upload with PlatformIO's own upload, then read the harness on the serial port: one measurement per board
    # at a time (`doit -n 4` runs tasks in parallel; a board runs one firmware)
    # keyed by the device itself (a symlink such as /dev/serial/by-id/... and its /dev/ttyACM0 are one board)
    port_key = os.path.realpath(port) if port.startswith("/") else port
    port_lock = Path(core_dir).resolve().parent / ".tinyml" / "ports" / (sha256_text(port_key)[:16] + ".lock")
    with locked(port_lock):
        platformio.upload_env(sketch_dir, env, core_dir, work / "env", upload_port=upload_port, model_dir=variant_dir,
                              what=f"the measurement harness for {where}")
        lines = measure.session(port, baud, board_name=board.name)
    parsed = measure.parse(lines)
    clock = measure.check_board(parsed, board, f"the board on {port}")
    if parsed.get("build") != f"{build_id:08x}":
        raise TinyMLError(f"the board on {port} runs another build of the harness (build {parsed.get('build') or 'unknown'}"
                          f", this one is {build_id:08x}): the upload did not reach it (is upload_port the same board "
                          f"as {port}?)")
    if parsed.get("runtime") != runtime:
        raise TinyMLError(f"the board on {port} ran the {parsed.get('runtime')} harness, not {runtime}: another "
                          f"firmware answered")
    timing = measure.summarise(parsed, clock)
    cmp = tflm_target.compare(parsed["outputs"], expected, a["output"]["dtype"])
    record = artifacts.Measure(
        board=board.id, runtime=runtime, env=env, port=port, port_source=port_source, baud=baud,
        measured_at=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        firmware_sha256=elfsize.content_sha256(elf), harness_sha256=elfsize.content_sha256(harness_elf),
        core=parsed["core"], cpuid=parsed["cpuid"], fpu=parsed["fpu"], clock_hz=clock, timer=parsed["timer"],
        **timing,
        arena_used_bytes=parsed["arena_used_bytes"], arena_size_bytes=parsed["arena_size_bytes"],
        stack_used_bytes=parsed.get("stack_used_bytes"), stack_method=parsed["stack_method"],
        outputs={"samples": len(expected), "compared_with": "the tflite-micro Python interpreter on the host",
                 **cmp},
        harness_flash_used=res.flash_used, harness_ram_used=res.ram_used)
    artifacts.write(out_json, record)
    agree = ("outputs agree with the host interpreter" if cmp["outputs_equal"] else
             f"OUTPUTS DIFFER from the host interpreter: {cmp.get('mismatch')}")
    stack = f", stack {parsed['stack_used_bytes']:,} B" if parsed.get("stack_used_bytes") is not None else ""
    from .engine.latency import fmt_ms

    print(f"measure: {where} on {port}: {fmt_ms(timing['latency_ms'])} ms/inference (median of {timing['runs']}, "
          f"{fmt_ms(timing['latency_min_ms'])}-{fmt_ms(timing['latency_max_ms'])}; {parsed['timer']} at "
          f"{clock / 1e6:g} MHz), arena used {parsed['arena_used_bytes']:,} B{stack}; {len(expected)} inputs, {agree}",
          flush=True)
    return record.to_dict()
