"""Benchmark: the real TFLite Micro (reference and CMSIS-NN kernels) against the AOT C model, per example model.

    .venv/bin/python bench/tflm_vs_aot.py [--library <TFLM tree>]... [--reference-kernels <tflite-micro>]
        [--examples cancer_mlp,digits_cnn,...] [--variants int8,float32] [--board nano33ble]
        [--work build/bench-tflm] [--json out.json]

For every model of the example projects (examples/*/tinyml.toml, the variants named in --variants), in one
run, with ratios against the AOT runtime measured in the same run:

* flash and RAM of the example's own sketch built for --board (PlatformIO, the local platform): TFLM linked
  from each --library and each kernel set it can build, against the AOT firmware of the same variant;
* instructions per inference under QEMU's Cortex-M4 (mps2-an386, -icount): TFLM (engine.tflm_target, the
  variant's model_data.h op resolver, its test split) against aot.json's count, and whether TFLM's outputs
  equal the tflite-micro Python interpreter's;
* the analyze stage's 32-bit arena against the minimum bisected on the target, as an error in percent
  (exact and never below for the TFLM generation of the Python interpreter, i.e. an upstream tree);
* the interpreter estimate (no library: model + arena + the table of real links) against the real link of
  the same sketch, as an error in percent (the table is for the Arduino library: target within 5 %).

Without a library (none given, TINYML_TFLM_DIR unset) it says so and measures what it can: AOT
instructions, AOT and estimated TFLM flash/RAM. The examples are built first (`doit header aot`, in
copies under --work) when their artifacts are missing; that trains their models (minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def build_example(name: str, work: Path) -> Path:
    dst = work / "examples" / name
    if not dst.exists():
        shutil.copytree(EXAMPLES / name, dst, ignore=shutil.ignore_patterns("build"))
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "doit", "header", "aot"], cwd=dst, capture_output=True, text=True,
                       env={**os.environ, "TINYML_TFLM_DIR": ""})
    if p.returncode != 0:
        print(f"  {name}: `doit header aot` failed (some variants may be missing):\n{p.stdout[-1500:]}{p.stderr[-1500:]}")
    print(f"  {name}: artifacts ready ({time.time() - t0:.0f} s)", flush=True)
    return dst


def fmt(v, f="{:,}"):
    return "-" if v is None else f.format(v)


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def bench_variant(proj, m, v, vd: Path, board, libs: list, work: Path, core: Path, cache: Path) -> dict:
    from doit_tinyml import firmware, tflm_check
    from doit_tinyml.engine import artifacts
    from doit_tinyml.engine.io import read_json

    sketch = m.firmware.sketch
    out: dict = {"model": m.name, "variant": v.name}
    a = artifacts.read_dict(vd / "analysis.json", artifacts.Analysis)
    out["analyze_target32_bytes"] = (a.get("arena") or {}).get("target32_bytes")
    out["analyze_exact"] = (a.get("arena") or {}).get("exact")
    if not a["tflm_compatible"]:
        out["skipped"] = "TFLM cannot run it"
        return out
    aot = read_json(vd / "aot.json") if (vd / "aot.json").is_file() else {}
    out["aot_instructions"] = aot.get("instructions_per_inference")
    fw = work / "fw" / m.name / v.name
    if (vd / "aot" / "tinyml_model.c").is_file():
        r = firmware.run(sketch, vd, board, fw / "aot", core, runtime="aot", quiet=True)
        out["aot_flash"], out["aot_ram"] = r["flash_used"], r["ram_used"]
    est = firmware.run(sketch, vd, board, fw / "estimate", core, runtime="tflm", tflm={"kernels": "cmsis_nn"},
                       quiet=True)
    out["estimate_flash"], out["estimate_ram"] = est["flash_used"], est["ram_used"]
    out["tflm"] = []
    for lib in libs:
        for kernels in lib["tree"].kernel_sets:
            tag = f"{lib['tree'].layout}/{kernels}"
            tflm = {"library": str(lib["tree"].root), "kernels": kernels,
                    "reference_kernels": str(lib["tree"].reference_kernels) if lib["tree"].reference_kernels else None}
            row: dict = {"library": tag, "version": lib["tree"].version}
            try:
                real = firmware.run(sketch, vd, board, fw / tag.replace("/", "_"), core, runtime="tflm", tflm=tflm,
                                    tflm_cache=cache, quiet=True)
                row.update(flash=real["flash_used"], ram=real["ram_used"], incompatible=real.get("incompatible"))
                row["flash_vs_aot"] = ratio(real["flash_used"], out.get("aot_flash"))
                row["ram_vs_aot"] = ratio(real["ram_used"], out.get("aot_ram"))
                if kernels == "cmsis_nn" or "cmsis_nn" not in lib["tree"].kernel_sets:
                    row["estimate_error_pct"] = round(100 * (est["flash_used"] - real["flash_used"]) / real["flash_used"], 2)
                t = tflm_check.run(vd, vd.parent / "dataset.npz", fw / tag.replace("/", "_") / "tflm.json", tflm=tflm,
                                   core_dir=core, cache=cache, label=f"{m.name}/{v.name}")
                row.update(outputs_equal=t["outputs_equal"], instructions=t["instructions_per_inference"],
                           arena_min=t["arena_min_bytes"], arena_used=t["arena_used_bytes"],
                           instructions_vs_aot=ratio(t["instructions_per_inference"], out.get("aot_instructions")))
                if t.get("analyze_arena"):  # the analyze figure for this kernel set against the target's minimum
                    row["arena_error_pct"] = t["analyze_arena"]["error_pct"]
            except Exception as e:  # noqa: BLE001 - a benchmark row says what failed and goes on
                row["error"] = str(e).splitlines()[0][:300]
            out["tflm"].append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", action="append", default=[], help="a TFLite Micro tree (repeat for several)")
    ap.add_argument("--reference-kernels", help="tflite-micro checkout completing an Arduino export's reference kernels")
    ap.add_argument("--examples", default="sine_sweep,cancer_mlp,digits_cnn,tapping_anomaly,waveform_cnn")
    ap.add_argument("--variants", default="int8,float32")
    ap.add_argument("--board", default="nano33ble")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-tflm")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    from doit_tinyml.config import load
    from doit_tinyml.engine import platformio, tflm_link
    from doit_tinyml.engine.boards import CATALOGUE

    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    core = work / ".platformio"
    platformio.ensure_core(core)
    cache = tflm_link.default_cache(work)
    paths = a.library or ([os.environ["TINYML_TFLM_DIR"]] if os.environ.get("TINYML_TFLM_DIR") else [])
    libs = []
    for p in paths:
        libs.append({"tree": tflm_link.find_tree(p, reference_kernels=a.reference_kernels if "arduino" in p.lower()
                                                  or tflm_link.find_tree(p).layout == "arduino" else None)})
    if not libs:
        print("No TFLite Micro library given (--library or TINYML_TFLM_DIR): measuring AOT and the interpreter "
              "estimate only; TFLM flash/RAM/instructions and the arena check need a library.")
    board = CATALOGUE[a.board]
    wanted = set(a.variants.split(","))
    results = []
    t0 = time.time()
    for ex in a.examples.split(","):
        proj_dir = build_example(ex, work)
        proj = load(proj_dir / "tinyml.toml")
        for m in proj.models:
            for v in m.variants:
                if v.name not in wanted:
                    continue
                vd = proj.build_dir / m.name / v.name
                if not (vd / "analysis.json").is_file():
                    results.append({"model": m.name, "variant": v.name, "skipped": "not built"})
                    continue
                r = bench_variant(proj, m, v, vd, board, libs, work, core, cache)
                results.append(r)
                line = (f"{m.name}/{v.name}: AOT {fmt(r.get('aot_instructions'))} instr, flash {fmt(r.get('aot_flash'))}; "
                        f"TFLM estimate flash {fmt(r.get('estimate_flash'))}")
                for t in r.get("tflm", []):
                    line += (f" | {t['library']}: " + (f"ERROR {t['error']}" if "error" in t else
                             f"flash {fmt(t.get('flash'))} (x{t.get('flash_vs_aot')}), instr {fmt(t.get('instructions'))} "
                             f"(x{t.get('instructions_vs_aot')}), arena min {fmt(t.get('arena_min'))} (analyze "
                             f"{fmt(t.get('arena_error_pct'), '{:+.2f}')} %), est {fmt(t.get('estimate_error_pct'), '{:+.2f}')} %"
                             + ("" if t.get("outputs_equal") else " OUTPUTS DIFFER")))
                print(line, flush=True)
    # summary
    print("\nsummary")
    for tag in sorted({t["library"] for r in results for t in r.get("tflm", [])}):
        rows = [t for r in results for t in r.get("tflm", []) if t["library"] == tag and "error" not in t]
        if not rows:
            continue
        def span(key):
            vals = [t[key] for t in rows if t.get(key) is not None]
            return f"{min(vals):+.2f} .. {max(vals):+.2f}" if vals else "-"
        def rspan(key):
            vals = [t[key] for t in rows if t.get(key) is not None]
            return f"{min(vals):.2f} .. {max(vals):.2f}" if vals else "-"
        print(f"  {tag}: {len(rows)} variants; flash TFLM/AOT {rspan('flash_vs_aot')}, instructions TFLM/AOT "
              f"{rspan('instructions_vs_aot')}; analyze arena error {span('arena_error_pct')} %; interpreter "
              f"estimate error {span('estimate_error_pct')} %; outputs equal {sum(1 for t in rows if t.get('outputs_equal'))}"
              f"/{len(rows)}")
    print(f"({time.time() - t0:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps({"board": a.board, "libraries": [str(x["tree"].root) for x in libs],
                                      "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
