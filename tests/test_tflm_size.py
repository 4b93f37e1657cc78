"""The interpreter size table (engine/tflm_size.py, engine/data/tflm_size_table.json), per TFLM generation.

Fast (no TFLM build): every generation says where it comes from; the estimate is never below a real link the
table holds, and the error it states covers every one of them; the generation follows the user's tree, and
without one it is the larger interpreter. Slow (`-m slow`, needs TINYML_TFLM_DIR): a tiny project built by doit
with the real library, against the same project without it.

This module also holds the driver that measures the table's real links of models through the firmware stage
(a stage: the engine cannot import it):

    .venv/bin/python tests/test_tflm_size.py --library <tree> [--reference-kernels <tflite-micro>] \\
        --kernels cmsis_nn --board nano33ble --variants <variant folders...> --out rows.json
    .venv/bin/python -m doit_tinyml.engine.tflm_size links --generation <g> --rows rows.json

A variant folder holds model.tflite, analysis.json and model_data.h/.cc as the analyze and header stages write
them (any project's build/<model>/<variant>/).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from doit_tinyml.engine import boards, tflm_size

ROOT = Path(__file__).resolve().parent.parent
TFLM_DIR = os.environ.get("TINYML_TFLM_DIR", "").strip()


def every_config():
    for g, gen in tflm_size.table()["generations"].items():
        for key, cfg in gen["configs"].items():
            yield g, key, cfg


def rows_of(cfg: dict) -> list[dict]:
    return (cfg.get("validation") or []) + (cfg.get("links") or [])


# ----------------------------------------------------------------------------------------- the table itself
def test_every_generation_says_where_it_comes_from():
    gens = tflm_size.table()["generations"]
    assert {"arduino-2023-12", "upstream-2026"} <= set(gens)
    for g, gen in gens.items():
        src = gen["source"]
        for field in ("library", "layout", "commit", "date", "tree", "compiler", "measured", "command", "probe"):
            assert src.get(field), f"{g}: source.{field} is missing"
        assert set(gen["match"]) == {"layout", "debuglog_api", "per_channel_fc"}
        assert gen["configs"] and gen["error"]["n_links"] > 0
    # the two generations are told apart by what tflm_link.find_tree reads from a tree
    assert gens["arduino-2023-12"]["match"] != gens["upstream-2026"]["match"]


def test_every_configuration_was_checked_against_real_models():
    for g, key, cfg in every_config():
        assert len(cfg["validation"]) >= 5, f"{key}@{g}: probe validation links"
        assert cfg["links"], f"{key}@{g}: no real model linked through the firmware stage"
        assert all(r["archive_key"] == cfg["library_key"] for r in cfg["links"]), f"{key}@{g}: links of another build"
        assert cfg["error"]["n_links"] == len(rows_of(cfg)) and cfg["error"]["n_models"] == len(cfg["links"])
    m4f = {(g, k) for g, k, _ in every_config() if k.startswith("cortex-m4f/")}
    assert {("arduino-2023-12", "cortex-m4f/cmsis_nn"), ("upstream-2026", "cortex-m4f/cmsis_nn")} <= m4f


def test_the_estimate_never_understates_a_real_link():
    for g, key, cfg in every_config():
        for r in rows_of(cfg):
            ops = list(dict.fromkeys(r["ops"]))
            f, ram, unmeasured = tflm_size._config_estimate(cfg, ops)
            assert not unmeasured
            assert f >= r["interpreter_flash"], f"{key}@{g} {r['model']}: flash {f} < real {r['interpreter_flash']}"
            assert ram >= r["interpreter_ram"], f"{key}@{g} {r['model']}: RAM {ram} < real {r['interpreter_ram']}"
            assert (f, ram) == (r["estimate"], r["estimate_ram"])  # the file holds what the code computes
            # through the public function, for the configuration's own core and kernels
            core, kernels = key.split("/")
            est = tflm_size.estimate(core, kernels, ops, generation=g)
            assert (est["flash"], est["ram"], est["config"]) == (f, ram, f"{key}@{g}")


def test_the_stated_error_covers_every_real_link():
    for g, key, cfg in every_config():
        e = cfg["error"]
        errs = [r["error_pct"] for r in rows_of(cfg)]
        assert e["flash_pct"] == [min(errs), max(errs)] and e["flash_pct"][0] >= 0
        assert e["ram_pct"][0] >= 0
        core, kernels = key.split("/")
        est = tflm_size.estimate(core, kernels, cfg["links"][0]["ops"], generation=g)
        assert est["error_pct"] >= e["flash_pct"][1]
        assert f"at most {e['flash_pct'][1]} % above" in est["basis"] and "never below" in est["basis"]
        for r in rows_of(cfg):  # the error is the estimate's distance above the link, in % of the link
            assert abs(r["error_pct"] - 100 * (r["estimate"] - r["interpreter_flash"]) / r["interpreter_flash"]) < 0.01
        # measured, not padded: the margin is what the worst link needs plus the stated safety, and the
        # closest link is within a few percent
        need = max(0, max(r["interpreter_flash"] - (r["estimate"] - cfg["margin"]["flash"]) for r in rows_of(cfg)))
        assert cfg["margin"]["flash"] == need + math.ceil(tflm_size.SAFETY_PCT / 100 * cfg["core"]["flash"])
        assert e["flash_pct"][0] < 1.0 and e["flash_pct"][1] < 5.0


def test_refit_reproduces_the_file():
    t = json.loads(tflm_size.DATA.read_text())
    again = tflm_size.fit(json.loads(tflm_size.DATA.read_text()))
    assert again == t


# ------------------------------------------------------------------------------------- which generation
def tree(**kw):
    base = {"root": Path("/somewhere/tflm"), "layout": "arduino", "debuglog_api": "legacy", "per_channel_fc": False}
    return SimpleNamespace(**{**base, **kw})


def test_the_generation_follows_the_users_tree():
    ops = ["FULLY_CONNECTED", "SOFTMAX"]
    for g, gen in tflm_size.table()["generations"].items():
        t = tree(**gen["match"])
        assert tflm_size.generation_of(t)[0] == g
        est = tflm_size.estimate("cortex-m4f", "cmsis_nn", ops, tree=t)
        assert est["generation"] == g and est["config"] == f"cortex-m4f/cmsis_nn@{g}"
        assert f"the tree {t.root} is {g}" in est["basis"] and gen["source"]["library"] in est["basis"]
        assert est == tflm_size.estimate("cortex-m4f", "cmsis_nn", ops, generation=g) | {"assumed": est["assumed"],
                                                                                        "basis": est["basis"]}


def test_without_a_tree_the_larger_interpreter_is_assumed():
    for ops in (["FULLY_CONNECTED"], ["FULLY_CONNECTED", "SOFTMAX"],
                ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]):
        for core in ("cortex-m4f", "cortex-m0+", "cortex-m7", "cortex-m33", "cortex-m3"):
            each = {g: tflm_size.estimate(core, "cmsis_nn", ops, generation=g) for g in tflm_size.generations()}
            est = tflm_size.estimate(core, "cmsis_nn", ops)
            assert est["flash"] == max(e["flash"] for e in each.values())
            assert est["ram"] == max(e["ram"] for e in each.values())
            assert est["generation"] == max(each, key=lambda g: each[g]["flash"])
            assert "no TFLM tree is known: assumes " + est["generation"] in est["basis"]
            assert est["config"].endswith("@" + est["generation"])
    # a tree that matches no measured generation (an Arduino export with per-channel Dense, say): the larger too
    odd = tree(per_channel_fc=True)
    est = tflm_size.estimate("cortex-m4f", "cmsis_nn", ["FULLY_CONNECTED"], tree=odd)
    assert tflm_size.generation_of(odd)[0] is None and "matches no measured generation" in est["basis"]
    assert est["flash"] == tflm_size.estimate("cortex-m4f", "cmsis_nn", ["FULLY_CONNECTED"])["flash"]


def test_a_real_tree_on_disk_is_recognised(tmp_path):
    from test_firmware_config import fake_arduino_tree

    t = fake_arduino_tree(tmp_path / "tflm")  # the 2023 Arduino export's shape: legacy DebugLog, no per-channel
    assert tflm_size.generation_of(t)[0] == "arduino-2023-12"
    assert tflm_size.generation_of(tmp_path / "nothing")[0] is None


# ------------------------------------------------------------------------------------- cores, kernels, ops
def test_every_cortex_board_gets_an_estimate_that_does_not_undercut_its_stand_in():
    ops = ["CONV_2D", "FULLY_CONNECTED", "SOFTMAX"]
    for b in boards.CATALOGUE.values():
        if not b.core.startswith("cortex-"):
            assert tflm_size.estimate(b.core, "cmsis_nn", ops) is None
            continue
        est = tflm_size.estimate(b.core, "cmsis_nn", ops)
        assert est is not None and est["flash"] > 15_000, b.id
    for core, (stand_ins, extra) in tflm_size.NEAREST.items():
        est = tflm_size.estimate(core, "cmsis_nn", ops)
        for s in stand_ins:
            assert est["flash"] >= tflm_size.estimate(s, "cmsis_nn", ops)["flash"], core
        if extra:
            assert f"{core} was not measured" in est["basis"]


def test_a_core_one_generation_lacks_scales_by_the_ratio_another_measured(monkeypatch):
    """A core measured in one generation only: in the other, the reference core's figure times the ratio the first
    measured, made larger. Held out: each measured core is dropped from each generation in turn, and the scaled
    estimate is checked against that generation's real links of the core (never below them, within the error it
    states)."""
    import copy

    full = tflm_size.table()
    ref = tflm_size.REFERENCE_CORE
    checked = 0
    for g2, gen2 in full["generations"].items():
        for key, cfg in gen2["configs"].items():
            core, kernels = key.split("/")
            if core == ref or kernels != "cmsis_nn":
                continue
            held = copy.deepcopy(full)
            del held["generations"][g2]["configs"][key]
            monkeypatch.setattr(tflm_size, "table", lambda held=held: held)
            for r in rows_of(cfg):
                est = tflm_size.estimate(core, kernels, r["ops"], generation=g2)
                assert f"{core} was not measured in {g2}" in est["basis"] and "measured them" in est["basis"]
                base = tflm_size.estimate(ref, kernels, r["ops"], generation=g2)
                assert est["error_pct"] > base["error_pct"]
                err = 100 * (est["flash"] - r["interpreter_flash"]) / r["interpreter_flash"]
                assert 0 <= err <= est["error_pct"], (g2, key, r["model"], err, est["basis"])
                assert est["ram"] >= r["interpreter_ram"], (g2, key, r["model"])
                checked += 1
            monkeypatch.undo()
    assert checked >= 20


def test_a_kernel_set_the_table_lacks_takes_a_larger_one():
    for g, gen in tflm_size.table()["generations"].items():
        cores = {k.split("/")[0] for k in gen["configs"]}
        for c in cores:
            if f"{c}/reference" in gen["configs"] or f"{c}/cmsis_nn" not in gen["configs"]:
                continue
            est = tflm_size.estimate(c, "reference", ["FULLY_CONNECTED"], generation=g)
            assert est["config"] == f"{c}/cmsis_nn@{g}" and "stands in" in est["basis"]
    # where both were measured, CMSIS-NN is the larger: the stand-in overstates
    for g, key, cfg in every_config():
        if key.endswith("/reference"):
            other = tflm_size.table()["generations"][g]["configs"][key.replace("reference", "cmsis_nn")]
            for r, o in zip(cfg["validation"], other["validation"]):
                assert o["interpreter_flash"] >= r["interpreter_flash"], (g, key, r["model"])


def test_an_unmeasured_op_counts_as_the_largest_and_widens_the_error():
    known = tflm_size.estimate("cortex-m4f", "cmsis_nn", ["FULLY_CONNECTED"], generation="upstream-2026")
    est = tflm_size.estimate("cortex-m4f", "cmsis_nn", ["FULLY_CONNECTED", "SVDF"], generation="upstream-2026")
    cfg = tflm_size.table()["generations"]["upstream-2026"]["configs"]["cortex-m4f/cmsis_nn"]
    assert est["unmeasured_ops"] == ["SVDF"] and "SVDF" in est["basis"]
    assert est["flash"] - known["flash"] == max(v["alone_flash"] for v in cfg["ops"].values())
    assert est["error_pct"] == known["error_pct"] + tflm_size.UNMEASURED_OP_ERROR


def test_an_unknown_generation_is_an_error():
    with pytest.raises(KeyError, match="unknown TFLM generation 'tflm-1999'"):
        tflm_size.estimate("cortex-m4f", "cmsis_nn", ["FULLY_CONNECTED"], generation="tflm-1999")


def test_the_docs_show_the_table_as_measured():
    doc = (ROOT / "docs" / "firmware.md").read_text()
    for g, key, cfg in every_config():
        e = cfg["error"]
        assert f"`{key}@{g}`" in doc
        assert f"+{e['flash_pct'][0]:.2f} to +{e['flash_pct'][1]:.2f} %" in doc, (g, key)


# ------------------------------------------------------------------------------------- the real link (slow)
@pytest.mark.slow
@pytest.mark.skipif(not TFLM_DIR, reason="needs a TFLite Micro tree: set TINYML_TFLM_DIR (e.g. the Arduino library "
                                         "Arduino_TensorFlowLite); none is in this repository")
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc (not installed here)")
def test_doit_real_link_is_never_above_the_estimate(tmp_path):
    """A tiny project built by doit with TINYML_TFLM_DIR (the interpreter linked for real) and the same project
    without it (the interpreter estimated): the estimate is never below the real interpreter, and within the
    error it states for the tree's generation."""
    pytest.importorskip("tensorflow")
    from project import TINY_SINE, doit, make_project

    from doit_tinyml.engine import tflm_link

    t = tflm_link.find_tree(TFLM_DIR, reference_kernels=os.environ.get("TINYML_TFLM_REFERENCE_KERNELS") or None)
    toml = TINY_SINE.replace("{epochs}", "2").replace('boards = ["nano33ble", "adafruit_pybadge_m4"]',
                                                      'boards = ["nano33ble"]')
    toml = toml.replace('[models.sine.variants.int8]\nquantization = "int8"',
                        '[models.sine.variants.int8]\nquantization = "int8"\nper_channel = false')
    real_root = make_project(tmp_path / "real", toml)
    cache = os.environ.get("TINYML_TFLM_CACHE") or str(tmp_path / "tflm-cache")
    env = {"TINYML_TFLM_DIR": str(t.root), "TINYML_TFLM_CACHE": cache}
    if t.reference_kernels:
        env["TINYML_TFLM_REFERENCE_KERNELS"] = str(t.reference_kernels)
    doit(real_root, "firmware", env=env, timeout=3600)
    est_root = make_project(tmp_path / "est", toml)
    doit(est_root, "firmware", env={"TINYML_TFLM_DIR": ""}, timeout=3600)
    generation, _ = tflm_size.generation_of(t)
    for variant in ("int8", "float32"):
        real = json.loads((real_root / "build" / "sine" / variant / "nano33ble" / "size.json").read_text())
        est = json.loads((est_root / "build" / "sine" / variant / "nano33ble" / "size.json").read_text())
        assert real["tflm"]["linked"] and not real["estimate"] and est["estimate"]
        ie = est["interpreter_estimate"]
        interp_flash = real["flash_used"] - ie["measured_without"]["flash_used"]
        interp_ram = real["ram_used"] - ie["measured_without"]["ram_used"]
        # the firmware without a tree assumes the larger generation: never below this tree's real link
        assert ie["flash"] >= interp_flash and ie["ram"] >= interp_ram
        assert est["flash_used"] >= real["flash_used"] and est["ram_used"] >= real["ram_used"]
        # the estimate for this tree's own generation: never below, and within the error it states
        ops = json.loads((est_root / "build" / "sine" / variant / "analysis.json").read_text())["ops"]
        mine = tflm_size.estimate("cortex-m4f", real["tflm"]["kernels"], ops, tree=t)
        err = 100 * (mine["flash"] - interp_flash) / interp_flash
        print(f"{variant}: real interpreter {interp_flash:,} B flash, {interp_ram:,} B RAM; estimate "
              f"[{mine['config']}] {mine['flash']:,} B, {mine['ram']:,} B ({err:+.2f} %, stated at most "
              f"{mine['error_pct']} %); without a tree [{ie['config']}] {ie['flash']:,} B")
        assert mine["flash"] >= interp_flash and mine["ram"] >= interp_ram
        if generation is not None:
            assert err <= mine["error_pct"], mine["basis"]


# ------------------------------------------------------------------------------------- the table's driver
def link_rows(library: str, reference_kernels: str | None, kernels: str, board_id: str, variants: list[Path],
              work: Path, cache: Path) -> list[dict]:
    """Real links of each variant through the firmware stage's generated project: with the library and without it
    (the sketch, model and arena only); the difference is what the interpreter adds."""
    from doit_tinyml import firmware
    from doit_tinyml.engine import platformio, tflm_link

    core = work / ".platformio"
    platformio.ensure_core(core)
    board = boards.CATALOGUE[board_id]
    t = tflm_link.find_tree(library, reference_kernels=reference_kernels)
    rows = []
    for vd in variants:
        out = work / f"{t.layout}-{kernels}-{board_id}" / vd.name
        tflm = {"library": str(t.root), "kernels": kernels, "reference_kernels": reference_kernels}
        real = firmware.run(ROOT / "sketches" / "sine", vd, board, out / "real", core, runtime="tflm", tflm=tflm,
                            tflm_cache=cache, quiet=True)
        est = firmware.run(ROOT / "sketches" / "sine", vd, board, out / "without", core, runtime="tflm",
                           tflm={"kernels": kernels}, quiet=True)
        without = est["interpreter_estimate"]["measured_without"]
        rows.append({"model": vd.name, "ops": json.loads((vd / "analysis.json").read_text())["ops"],
                     "board": board_id, "core": board.core, "kernels": kernels,
                     "firmware_flash": real["flash_used"], "firmware_ram": real["ram_used"],
                     "interpreter_flash": real["flash_used"] - without["flash_used"],
                     "interpreter_ram": real["ram_used"] - without["ram_used"],
                     "archive_key": real["tflm"]["archive_key"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="tests/test_tflm_size.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", required=True)
    ap.add_argument("--reference-kernels")
    ap.add_argument("--kernels", default="cmsis_nn")
    ap.add_argument("--board", default="nano33ble")
    ap.add_argument("--variants", nargs="+", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("build/tflm_size_links"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    from doit_tinyml.engine.tflm_link import default_cache

    work = a.work.resolve()
    rows = link_rows(a.library, a.reference_kernels, a.kernels, a.board, a.variants, work,
                     a.cache.resolve() if a.cache else default_cache(work))
    a.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))
