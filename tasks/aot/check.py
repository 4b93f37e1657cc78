"""Prove the AOT C code bit-exact against the real TFLite Micro interpreter.

* `host_check`: compile the generated model + kernels + a harness with the host gcc
  (-std=c99 -O2 -Wall -Wextra -Werror), run the whole test split, compare with TFLM.
* `target.target_check`: the same inputs on an emulated Cortex-M4 (QEMU
  mps2-an386), outputs required identical to the host's, instructions per inference measured.

int8 outputs must be identical on every sample; float32 outputs within 1e-5 relative.
A mismatch raises TinyMLError naming the first differing sample and output element.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..engine.errors import TinyMLError
from ..engine.io import write_bytes, write_json
from .host import _run, compile_host  # noqa: F401  (callers import them from here too)

FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-7


# --------------------------------------------------------------------------------------------
# inputs and the TFLM reference
# --------------------------------------------------------------------------------------------

def quantize_inputs(x, info: dict):
    """float32 test inputs -> the model input dtype, with the evaluate stage's own function."""
    from ..engine.quant import quantize

    return quantize(x, info["dtype"], float(info.get("scale") or 0.0), int(info.get("zero_point") or 0))


def load_inputs(dataset_npz: Path, info: dict, max_samples: int | None = None):
    import numpy as np

    try:
        with np.load(dataset_npz) as d:
            x = d["x_test"]
    except (OSError, KeyError) as e:
        raise TinyMLError(f"{dataset_npz}: cannot read x_test ({e})") from None
    per = int(np.prod(info["shape"][1:])) if len(info["shape"]) > 1 else 1
    if x.ndim == 0 or int(np.prod(x.shape[1:])) != per:
        raise TinyMLError(f"{dataset_npz}: x_test samples have shape {list(x.shape[1:])}, but the model input "
                          f"is {info['shape']}; rebuild the model or the dataset so they agree")
    if max_samples is not None:
        x = x[:max_samples]
    return quantize_inputs(x.reshape(len(x), *info["shape"][1:]), info)


def tflm_outputs(model_bytes: bytes, xq):
    """Every (already quantized) sample through the real TFLM interpreter (engine.tflm, a child
    process); outputs stacked (N, elements). A model TFLM cannot run is a TinyMLError with its reason."""
    import numpy as np

    from ..engine import tflm

    raw, info = tflm.run(model_bytes, {"x": np.ascontiguousarray(xq)}, quantize_inputs=False)
    if raw is None:
        raise TinyMLError(f"the TFLM interpreter cannot run this model, so the AOT code has no reference: "
                          f"{info.get('error', '')[:400]}")
    out = raw["x"]
    return out.reshape(len(out), -1) if len(out) else np.zeros((0, 0))


def tflm_arena(model_bytes: bytes) -> dict:
    """TFLM's minimum arena for this model, measured by `tasks.arena.measure` (real interpreter,
    bisection in a child process): {"host_bytes", "target32_bytes"}."""
    from ..engine.tflm import measure

    m = measure(model_bytes)
    return {"host_bytes": int(m["host_bytes"]), "target32_bytes": int(m["target32_bytes"])}


def compare(aot, ref, dtype: str) -> dict:
    """Compare AOT outputs with TFLM's; raise TinyMLError at the first difference."""
    import numpy as np

    aot = np.asarray(aot).reshape(ref.shape)
    if dtype == "int8":
        bad = np.nonzero(np.any(aot != ref, axis=1))[0]
        if len(bad):
            i = int(bad[0])
            j = int(np.nonzero(aot[i] != ref[i])[0][0])
            raise TinyMLError(
                f"AOT output differs from TFLM at sample {i}, output element {j}: AOT {int(aot[i, j])} vs "
                f"TFLM {int(ref[i, j])} ({len(bad)} of {len(ref)} samples differ)")
        return {"int8_identical_fraction": 1.0 if len(ref) else 0.0}
    close = np.isclose(aot, ref, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    denom = np.maximum(np.abs(ref.astype(np.float64)), 1e-30)
    rel = np.abs(aot.astype(np.float64) - ref) / denom
    rel = np.where(np.abs(ref) > 1e-6, rel, 0.0)
    if not close.all():
        i, j = (int(v) for v in np.argwhere(~close)[0])
        n_bad = int(np.any(~close, axis=1).sum())
        raise TinyMLError(
            f"AOT output differs from TFLM at sample {i}, output element {j}: AOT {float(aot[i, j])!r} vs "
            f"TFLM {float(ref[i, j])!r} (relative tolerance {FLOAT_RTOL}; {n_bad} of {len(ref)} samples differ)")
    return {"float_max_rel_error": float(rel.max()) if rel.size else 0.0,
            "float_max_abs_error": float(np.abs(aot.astype(np.float64) - ref).max()) if rel.size else 0.0}


def compare_or_diagnose(aot, ref, info: dict, tflite_path: Path, gen_dir: Path, xq, work_dir: Path, prefix: str,
                        variant: str = "portable") -> dict:
    """compare(); on a mismatch, also name the first operator whose output tensor differs
    (tasks.aot.diagnose: the sample traced through the AOT build and TFLM, operator by operator)."""
    import numpy as np

    try:
        return compare(aot, ref, info["output"]["dtype"])
    except TinyMLError as e:
        aot = np.asarray(aot).reshape(ref.shape)
        if info["output"]["dtype"] == "int8":
            i = int(np.nonzero(np.any(aot != ref, axis=1))[0][0])
        else:
            i = int(np.argwhere(~np.isclose(aot, ref, rtol=FLOAT_RTOL, atol=FLOAT_ATOL))[0][0])
        from .diagnose import describe, first_difference

        try:
            d = describe(first_difference(tflite_path, gen_dir, xq[i], Path(work_dir) / "diagnose", prefix=prefix,
                                          variant=variant, rtol=FLOAT_RTOL, atol=FLOAT_ATOL))
        except TinyMLError as e2:  # pragma: no cover - the diagnosis itself failed
            d = f"(tracing the operators failed: {e2})"
        kern = "" if variant == "portable" else " (DSP kernel code paths)"
        raise TinyMLError(f"{e}{kern}; {d}") from None


def run_host(exe: Path, xq, out_info: dict, work_dir: Path):
    import numpy as np

    work_dir = Path(work_dir)
    fin, fout = work_dir / "inputs.bin", work_dir / "outputs.bin"
    write_bytes(fin, np.ascontiguousarray(xq).tobytes())
    if fout.exists():
        fout.unlink()
    _run([str(exe), str(fin), str(fout)], "AOT host harness")
    dt = np.int8 if out_info["dtype"] == "int8" else np.float32
    return np.frombuffer(fout.read_bytes(), dtype=dt).reshape(len(xq), -1)


def host_check(tflite_path: Path, dataset_npz: Path, out_json: Path, *, work_dir: Path,
               prefix: str = "tinyml", max_samples: int | None = None) -> dict:
    """Generate, compile with host gcc, run the test split and compare with TFLM; write aot.json."""
    from .generate import generate

    tflite_path, work_dir = Path(tflite_path), Path(work_dir)
    gen_dir = work_dir / "gen"
    if gen_dir.exists():
        shutil.rmtree(gen_dir)
    info = generate(tflite_path, gen_dir, prefix=prefix)
    result = check_generated(tflite_path, dataset_npz, gen_dir, info, work_dir=work_dir, prefix=prefix,
                             max_samples=max_samples)
    write_json(out_json, result)
    return result


def check_generated(tflite_path: Path, dataset_npz: Path, gen_dir: Path, info: dict, *, work_dir: Path,
                    prefix: str = "tinyml", max_samples: int | None = None) -> dict:
    """Compile the already generated sources in `gen_dir` and compare them with TFLM (no JSON)."""
    model_bytes = Path(tflite_path).read_bytes()
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    xq = load_inputs(dataset_npz, info["input"], max_samples)
    exe = compile_host(gen_dir, Path(work_dir) / "aot_host", prefix)
    aot = run_host(exe, xq, info["output"], work_dir)
    ref = tflm_outputs(model_bytes, xq)
    stats = compare_or_diagnose(aot, ref, info, tflite_path, gen_dir, xq, work_dir, prefix)
    # the same model with the DSP kernels' code paths (exact C models of the instructions)
    exe_dsp = compile_host(gen_dir, Path(work_dir) / "aot_host_dsp", prefix, variant="dsp")
    aot_dsp = run_host(exe_dsp, xq, info["output"], work_dir)
    compare_or_diagnose(aot_dsp, ref, info, tflite_path, gen_dir, xq, work_dir, prefix, variant="dsp")
    arena = tflm_arena(model_bytes)
    return {
        "planned_bytes": info["planned_bytes"],
        "ram_bytes": info["planned_bytes"],
        "io_in_arena": True,
        "tflm_arena_bytes": arena["host_bytes"],
        "tflm_arena_target32_bytes": arena["target32_bytes"],
        "io_bytes": info["io_bytes"],
        "scratch_bytes": info["scratch_bytes"],
        "weights_bytes": info["weights_bytes"],
        "tables_bytes": info["tables_bytes"],
        "ops": info["ops"],
        "kernels": info["kernels"],
        "kernel_variants": {
            "dsp": "Cortex-M cores with the DSP extension (M4, M7, M33/M35P/M55 with DSP): the ops marked "
                   "dsp_core 'dsp' run DSP-extension inner loops (SMLAD, SXTB16, SMMLAR), the rest portable C",
            "portable": "cores without it (Cortex-M0, M0+, M3, M23, M33 without DSP) and the host: portable C "
                        "for every op",
        },
        "host_checked": ["portable", "dsp (exact C models of the DSP instructions)"],
        "samples": int(len(xq)),
        **stats,
        "passed": True,
    }
