"""Benchmark: the time-per-inference estimate against published on-device measurements.

    .venv/bin/python bench/latency_truth.py [--tflm DIR] [--reference-kernels DIR] [--models-dir DIR]
                                            [--mlperf-dir DIR] [--only SUBSTR] [--work DIR] [--json OUT]
                                            [--markdown OUT]

For every figure of bench/published_latency.json (a board, a model, a time measured on that board,
with its source): the model is rebuilt from its published architecture (sudharsan:*, acoustic:*,
sine:*; float timing does not depend on the weights' values) or taken from a public .tflite found
in --models-dir / --mlperf-dir (fetched outside the repository, never committed); the real TFLite
Micro from the user's tree (--tflm or TINYML_TFLM_DIR) runs it on QEMU's Cortex-M4 with the
project's own tflm target check and instruction profile (engine.tflm_target, engine.profile); the
project's time model (engine.latency) turns that profile into milliseconds on the figure's board.

Printed per figure: measured ms, estimated ms and its band, estimate / measured (the ratio to the
reference measured on the board), whether the measurement lies inside the band. Figures whose
software cannot be compared with a count of today's TFLM (the record's `comparable: false` with the
reason) are printed and kept in the docs table, but the targets are held on the others:

* every comparable figure: the estimate within +-20 % of the measured time;
* every comparable figure: the measured time inside the stated band (the figures not comparable are
  counted too, and printed, but not held to it).

Each figure is counted with the kernels it was measured with (`kernels`); a tree without TFLM's
reference kernels (the Arduino library) gets them from --reference-kernels (a tflite-micro checkout
of the matching commit, or TINYML_TFLM_REFERENCE_KERNELS), and where none is given the figure is
counted with the tree's kernels and the row says so (`kernels_counted`).

Issue 16's published table (float32 sine models, 16 to 768 neurons, Arduino Nano 33 BLE) is given
by its ratio to the project's QEMU count ("3.1-3.7 cycles per QEMU instruction"), so its points are
the count times those cycles (`sine:*` figures with `cycles_per_instruction`).
`--markdown` writes the table of docs/latency.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = Path(__file__).resolve().parent / "published_latency.json"
TARGET_ERROR = 0.20

# the datasets of Sudharsan et al. (WF-IoT 2021): input features, classes
SUDHARSAN = {"iris": (4, 3), "wine": (13, 3), "breast_cancer": (30, 2), "digits": (64, 10)}
SUDHARSAN_ARCH = {"fc1x10": [10], "fc10x10": [10] * 10, "fc10+50": [10, 50]}


def build_spec(spec: str, out: Path) -> Path:
    """A .tflite of a published architecture (random weights), cached by name."""
    tfl = out / (spec.replace(":", "_").replace("+", "p") + ".tflite")
    if tfl.is_file():
        return tfl
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    kind, *args = spec.split(":")
    keras.utils.set_random_seed(0)
    rep = None
    if kind == "sudharsan":  # Dense layers without activation (as their .tflite files), then softmax
        n_in, n_out = SUDHARSAN[args[0]]
        layers = [keras.layers.Input((n_in,))] + [keras.layers.Dense(u) for u in SUDHARSAN_ARCH[args[1]]]
        layers += [keras.layers.Dense(n_out), keras.layers.Softmax()]
        model, quant = keras.Sequential(layers), "float32"
    elif kind == "acoustic":  # veysiadn/acustic-emission-models dense_model: 1000 -> 4 (ELU) -> 3 (softmax)
        model = keras.Sequential([keras.layers.Input((1000, 1)), keras.layers.Reshape((1000,)), keras.layers.Dense(4),
                                  keras.layers.ELU(), keras.layers.Dense(3), keras.layers.Softmax()])
        quant = "float32"
    elif kind == "sine":  # the hello_world sine regression, two hidden layers of the given width
        w, quant = int(args[0]), args[1]
        model = keras.Sequential([keras.layers.Input((1,)), keras.layers.Dense(w, activation="relu"),
                                  keras.layers.Dense(w, activation="relu"), keras.layers.Dense(1)])
    else:
        raise SystemExit(f"unknown model spec {spec!r}")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "int8":
        shape = (1,) + tuple(model.input_shape[1:])

        def rep():
            for _ in range(64):
                yield [np.random.default_rng(1).uniform(-3, 3, size=shape).astype(np.float32)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    out.mkdir(parents=True, exist_ok=True)
    tfl.write_bytes(conv.convert())
    return tfl


def measure(tfl: Path, tree, kernels: str, work: Path) -> dict:
    """Instructions and profile of the real TFLM on QEMU's Cortex-M4 (cached by model, tree and kernels)."""
    import numpy as np

    from doit_tinyml.analyze import analyze_bytes
    from doit_tinyml.engine import tflm_link, tflm_target
    from doit_tinyml.engine.boards import CATALOGUE
    from doit_tinyml.header import render

    model = tfl.read_bytes()
    from doit_tinyml.engine.profile import VERSION

    key = hashlib.sha256(model + tflm_link.fingerprint(tree).encode() + f"{kernels}|{VERSION}".encode()).hexdigest()[:16]
    cache = work / "runs" / f"{tfl.stem}-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    d = work / "runs" / f"{tfl.stem}-{key}"
    d.mkdir(parents=True, exist_ok=True)
    a = analyze_bytes(model, arena_margin=0.1, path=tfl)
    h, cc = render(model, a, {"model": tfl.stem, "variant": "bench", "settings_hash": key})
    (d / "model_data.h").write_text(h)
    (d / "model_data.cc").write_text(cc)
    board = CATALOGUE["mps2_an386"]
    lib = tflm_link.build_library(tree, kernels, board.gcc_flags, work / "tflm-lib", core=board.core)
    shape = tuple(a["input"]["shape"][1:])
    x = np.random.default_rng(0).uniform(-1, 1, size=(4,) + shape).astype(np.float32)
    res = tflm_target.measure(model, d, x, a["input"], a["output"], lib, d / "t", work / "pio_core", max_vectors=4,
                              what=tfl.name)
    out = {"instructions": res["instructions_per_inference"], "profile": res["profile"], "macs": a["macs"],
           "dtype": _dtype(a)}
    cache.write_text(json.dumps(out))
    return out


def _dtype(a: dict) -> str:
    for layer in a.get("layers") or []:
        if layer.get("op") in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(str(t.get("dtype", "")).lower() == "float32" for t in layer.get("outputs") or []):
            return "float32"
    return "int8"


def board_of(spec: dict):
    from doit_tinyml.engine import boards

    if "id" in spec:
        return boards.CATALOGUE[spec["id"]]
    bid = "bench_" + "".join(c if c.isalnum() else "_" for c in spec["name"].lower())[:40]
    return boards.resolve(bid, {k: spec[k] for k in ("name", "mcu", "core", "cpu_mhz", "memory") if k in spec}
                          | {"flash": 1 << 20, "ram": 1 << 18})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tflm", default=os.environ.get("TINYML_TFLM_DIR"), help="TFLite Micro tree (TINYML_TFLM_DIR)")
    ap.add_argument("--models-dir", type=Path, help="public .tflite files of the file:* figures")
    ap.add_argument("--reference-kernels", type=Path, help="TFLM's reference kernels for a tree that lacks them "
                    "(a tflite-micro checkout of the tree's commit)")
    ap.add_argument("--mlperf-dir", type=Path, help="the mlcommons/tiny reference .tflite files (mlperf:* figures)")
    ap.add_argument("--only", help="figures whose id contains this")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinyml-latency-truth")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args(argv)
    if not a.tflm:
        print("latency_truth: needs a TFLite Micro tree: --tflm DIR or TINYML_TFLM_DIR", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from doit_tinyml.engine import latency, tflm_link

    tree = tflm_link.find_tree(a.tflm, reference_kernels=a.reference_kernels
                               or os.environ.get("TINYML_TFLM_REFERENCE_KERNELS") or None)
    figures = json.loads(FIGURES.read_text())["figures"]
    if a.only:
        figures = [f for f in figures if a.only in f["id"]]
    t0 = time.time()
    rows = []
    for f in figures:
        kind, name = f["model"].split(":", 1)
        if kind in ("file", "mlperf"):
            base = a.models_dir if kind == "file" else a.mlperf_dir
            tfl = base / name if base else None
            if tfl is None or not tfl.is_file():
                rows.append({**f, "skipped": f"{name} not found (--{'models' if kind == 'file' else 'mlperf'}-dir)"})
                continue
        else:
            tfl = build_spec(f["model"], a.work / "models")
        kernels = f.get("kernels") if f.get("kernels") in tree.kernel_sets else tree.kernel_sets[0]
        run = measure(tfl, tree, kernels, a.work)
        board = board_of(f["board"])
        ms, basis = latency.estimate_from_profile(run["profile"], board, dtype=run["dtype"], source="bench")
        if ms is None:
            rows.append({**f, "skipped": basis.get("why_not")})
            continue
        measured = f["latency_ms"]
        if f.get("cycles_per_instruction"):  # issue 16's table, given by its ratio to the count
            lo, hi = f["cycles_per_instruction"]
            measured = run["instructions"] * (lo + hi) / 2 / (board.cpu_mhz * 1e3)
            measured_range = [run["instructions"] * c / (board.cpu_mhz * 1e3) for c in (lo, hi)]
        else:
            measured_range = [measured, measured]
        low, high = basis["band_ms"]
        rows.append({**f, "board_id": board.id, "kernels_counted": kernels,
                     "instructions": run["instructions"], "macs": run["macs"],
                     "measured_ms": measured, "measured_range_ms": measured_range, "estimate_ms": ms,
                     "band_ms": [low, high], "ratio": ms / measured,
                     "in_band": low <= measured_range[0] and measured_range[1] <= high,
                     "within_20": abs(ms / measured - 1) <= TARGET_ERROR,
                     "cycles_per_instruction_measured": measured * board.cpu_mhz * 1e3 / run["instructions"]})
    print(f"{'figure':58s} {'board':22s} {'measured':>10s} {'estimate':>10s} {'band':>21s} {'est/meas':>8s} in band")
    for r in rows:
        if r.get("skipped"):
            print(f"{r['id'][:58]:58s} skipped: {r['skipped']}")
            continue
        band = f"{latency.fmt_ms(r['band_ms'][0])}-{latency.fmt_ms(r['band_ms'][1])}"
        flag = "" if r.get("comparable", True) else "  (not comparable: " + r.get("why", "") + ")"
        if r.get("kernels") and r["kernels_counted"] != r["kernels"]:
            flag += f"  (measured with {r['kernels']} kernels, counted with {r['kernels_counted']}: the tree lacks them)"
        print(f"{r['id'][:58]:58s} {r['board_id'][:22]:22s} {latency.fmt_ms(r['measured_ms']):>10s} "
              f"{latency.fmt_ms(r['estimate_ms']):>10s} {band:>21s} {r['ratio']:8.2f} {'yes' if r['in_band'] else 'NO'}"
              f"{flag}")
    done = [r for r in rows if not r.get("skipped")]
    comp = [r for r in done if r.get("comparable", True)]
    n20 = sum(r["within_20"] for r in comp)
    nband = sum(r["in_band"] for r in comp)
    print(f"\n{len(done)} figures estimated ({len(rows) - len(done)} skipped) in {time.time() - t0:.0f} s; "
          f"{len(done) - len(comp)} of other software than the one counted (not comparable: reason above), "
          f"{sum(r['in_band'] for r in done) - nband} of them inside the band anyway")
    swapped = [r for r in done if r.get("kernels") and r["kernels_counted"] != r["kernels"]]
    if swapped:
        print(f"{len(swapped)} figures counted with other kernels than they were measured with (the tree lacks "
              f"them: give --reference-kernels)")
    print(f"all {len(done)} figures, comparable or not: {sum(r['in_band'] for r in done)} inside the band")
    for board in sorted({r["board_id"] for r in comp}):
        rs = [r for r in comp if r["board_id"] == board]
        print(f"  {board:40s} {len(rs):3d} figures: estimate / measured {min(r['ratio'] for r in rs):.2f}-"
              f"{max(r['ratio'] for r in rs):.2f}, {sum(r['within_20'] for r in rs)} within +-20 %, "
              f"{sum(r['in_band'] for r in rs)} inside the band")
    print(f"target: estimate within +-20 % of the measured time on every comparable figure: {n20} of {len(comp)} "
          f"-> {'met' if n20 == len(comp) else 'MISSED'}")
    print(f"target: the measured time inside the stated band on every comparable figure: {nband} of {len(comp)} "
          f"-> {'met' if nband == len(comp) else 'MISSED'}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    if a.markdown:
        a.markdown.write_text(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    from doit_tinyml.engine.latency import fmt_ms

    out = ["| figure | board | model | measured ms | estimate ms | band ms | est / meas | in band | source |",
           "|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if r.get("skipped"):
            continue
        note = "" if r.get("comparable", True) else f" (not comparable: {r.get('why')})"
        out.append(f"| {r['id']} | {r['board_id']} | {r['model_name']}{note} | {fmt_ms(r['measured_ms'])} | "
                   f"{fmt_ms(r['estimate_ms'])} | {fmt_ms(r['band_ms'][0])}-{fmt_ms(r['band_ms'][1])} | "
                   f"{r['ratio']:.2f} | {'yes' if r['in_band'] else 'NO'} | {r['source']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
