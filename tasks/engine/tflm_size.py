"""What the TFLite Micro interpreter adds to a firmware, from a table of real links (data file).

Without a TFLM library, an offline `tflm` firmware holds the model and the arena but not the
interpreter. `estimate(core, kernels, ops)` gives the flash and RAM the interpreter, the kernels
of `ops`, our port and the minimal Arduino API add, from `data/tflm_size_table.json`: per
configuration (core flags x kernel set) of the Arduino library `Arduino_TensorFlowLite` (what a
sketch's lib_deps names), measured from real links by `python -m <package>.engine.tflm_size
measure` (see `measure_table`), with its provenance (library version and commit, compiler,
flags, kernel set, the probe application).

The table is exact-union, not a sum per op: every flash input section (GNU ld map) that a
one-op link adds over the no-op link is assigned to the set of ops whose links add it; sections
with the same op set form one component, so code several kernels share (libgcc's soft-double
used by every quantization multiplier, kernel utilities, CMSIS-NN support functions) is counted
once:

    flash = core.flash + sum(component.flash where component.ops meets the model's ops)
                       + sum(ops[op].extra_flash for op in the model's ops)
    ram   = core.ram + sum(ops[op].ram for op in the model's ops) + (n_ops - 1) x resolver_ram_per_op

The error against real links of multi-op models is measured when the table is made
(`validation` in the file) and again by bench/tflm_vs_aot.py.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "tflm_size_table.json"
_MODULE = (__spec__.name if __spec__ else __name__)  # this module's import name, derived

# board core -> (measured configuration core, extra relative error when it is not the board's own core)
NEAREST = {
    "cortex-m4f": ("cortex-m4f", 0.0), "cortex-m7": ("cortex-m4f", 0.10), "cortex-m7dp": ("cortex-m4f", 0.10),
    "cortex-m33": ("cortex-m4f", 0.10), "cortex-m55": ("cortex-m4f", 0.15), "cortex-m4": ("cortex-m4f", 0.15),
    "cortex-m33nofp": ("cortex-m4f", 0.20), "cortex-m3": ("cortex-m4f", 0.20), "cortex-m0+": ("cortex-m0+", 0.0),
    "cortex-m0": ("cortex-m0+", 0.05),
}
OTHER_CONFIG_ERROR = 0.30  # the nearest core's table is missing: another core's, with this much more error


@functools.lru_cache(maxsize=1)
def table() -> dict:
    return json.loads(DATA.read_text())


def configs() -> list[str]:
    return sorted(table()["configs"])


def estimate(core: str, kernels: str, ops: list[str]) -> dict[str, Any] | None:
    """{flash, ram, config, error_pct, unmeasured_ops, basis} for the interpreter with `ops`, or None."""
    t = table()
    near = NEAREST.get(core)
    if near is None:
        return None
    key = f"{near[0]}/{kernels}"
    cfg = t["configs"].get(key)
    if cfg is None:
        key = next((k for k in t["configs"] if k.startswith(near[0] + "/")), None)
    if key is None:  # no table for this core's family: another core's, said so, with a wider error
        key = next((k for k in sorted(t["configs"]) if k.endswith("/" + kernels)), None) or next(iter(sorted(t["configs"])))
        near = (key.split("/")[0], max(near[1], OTHER_CONFIG_ERROR))
    cfg = t["configs"][key]
    ops = list(dict.fromkeys(ops))
    known = [o for o in ops if o in cfg["ops"]]
    unmeasured = [o for o in ops if o not in cfg["ops"]]
    flash = cfg["core"]["flash"] + sum(c["flash"] for c in cfg["components"] if set(c["ops"]) & set(known))
    flash += _extra(cfg, known)
    ram = cfg["core"]["ram"] + sum(cfg["ops"][o]["ram"] for o in known)
    ram += max(0, len(ops) - 1) * cfg["resolver_ram_per_op"]  # MicroMutableOpResolver<N>: one slot per op
    if unmeasured:  # an op the table has not measured: the median op's own bytes
        alone = sorted(cfg["ops"][o]["alone_flash"] for o in cfg["ops"])
        flash += len(unmeasured) * alone[len(alone) // 2]
    err = float(cfg.get("max_abs_error_pct", 5.0)) + 100 * near[1] + (10.0 if unmeasured else 0.0)
    prov = t.get("provenance", {})
    basis = (f"TFLite Micro interpreter + kernels of {', '.join(ops) or 'no op'} estimated from "
             f"{DATA.name} [{key}] ({prov.get('library', 'Arduino_TensorFlowLite')}, {prov.get('compiler', 'gcc')}, "
             f"-Os, measured from real links; within {cfg.get('max_abs_error_pct', '?')} % on its validation models)"
             + (f"; {core} uses the {near[0]} table (+{100 * near[1]:.0f} % error)" if near[1] else "")
             + (f"; not in the table, counted as a median op: {', '.join(unmeasured)}" if unmeasured else ""))
    return {"flash": int(flash), "ram": int(ram), "config": key, "error_pct": round(err, 1),
            "unmeasured_ops": unmeasured, "basis": basis}


# =============================================================================== measuring the table
# Heavy (PlatformIO builds of the probe application with a real TFLM tree): only for maintainers,
# `python -m <package>.engine.tflm_size measure --library <tree> [--reference-kernels <tflite-micro>]`.

PROBE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
             "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6", "ADD", "MUL",
             "QUANTIZE", "DEQUANTIZE", "CONCATENATION", "PAD", "SUB", "STRIDED_SLICE", "LEAKY_RELU", "TRANSPOSE")
FLASH_OUT = (".isr_vector", ".text", ".ARM.extab", ".ARM.exidx", ".data")


def _map_sections(map_path: Path) -> dict[str, int]:
    """{key: bytes} of the flash input sections of a GNU ld map. COMDAT sections (one copy per link)
    are keyed by name; merged-string sections by each string (the linker keeps one copy)."""
    import subprocess

    text = map_path.read_text(errors="replace")
    text = text[text.find("Linker script and memory map"):]
    res: dict[str, int] = {}
    out = pending = None
    full = re.compile(r"^ (\.\S+|COMMON)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    name_only = re.compile(r"^ (\.\S+|COMMON)\s*$")
    cont = re.compile(r"^\s{16,}0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    strings: dict[tuple[str, str], bytes] = {}

    def section_bytes(obj: str, sec: str) -> bytes:
        import io

        from elftools.elf.elffile import ELFFile

        if (obj, sec) not in strings:
            m = re.match(r"^(.*\.a)\(([^)]+)\)$", obj)
            data = (subprocess.run(["arm-none-eabi-ar", "p", m.group(1), m.group(2)], capture_output=True).stdout
                    if m else Path(obj if Path(obj).is_absolute() else map_path.parent / obj).read_bytes())
            s = ELFFile(io.BytesIO(data)).get_section_by_name(sec)
            strings[(obj, sec)] = s.data() if s is not None else b""
        return strings[(obj, sec)]

    for line in text.splitlines():
        m = re.match(r"^(\.\S+)", line)
        if m:
            out, pending = m.group(1), None
            continue
        if out not in FLASH_OUT:
            continue
        m = full.match(line)
        if m:
            sec, size, obj = m.group(1), int(m.group(3), 16), m.group(4).strip()
        else:
            m = name_only.match(line)
            if m:
                pending = m.group(1)
                continue
            m = cont.match(line) if pending else None
            if not m:
                pending = None
                continue
            sec, size, obj = pending, int(m.group(2), 16), m.group(3).strip()
            pending = None
        if size == 0:
            continue
        ms = re.search(r"\.str1\.(\d+)$", sec)
        if ms:
            align = int(ms.group(1))
            try:
                data = section_bytes(obj, sec)
            except Exception:  # noqa: BLE001 - an object we cannot read: keep the section whole
                data = b""
            if data:
                for st in data.split(b"\0"):
                    if st:
                        res["str:" + st.decode("latin-1")] = -(-(len(st) + 1) // align) * align
                continue
        name = re.sub(r"MicroMutableOpResolverILj\d+EE", "MicroMutableOpResolverILjNEE", sec)
        mo = re.search(r"([^/]+\.a)\(([^)]+)\)", obj)
        o = f"{mo.group(1)}({re.sub(r'^[0-9]+_', '', mo.group(2))})" if mo else Path(obj).name
        if name.startswith((".text._Z", ".rodata._Z", ".data._Z")) and "_GLOBAL__N" not in name \
                and not re.match(r"^\.\w+\._ZL", name):
            key = "comdat:" + name  # C++ inline/template code: one copy however many objects carry it
        else:
            key = f"{name}|{o}"
        res[key] = res.get(key, 0) + size
    return res


def measure_table(library: Path, *, reference_kernels: Path | None, out_json: Path, work: Path, core_dir: Path,
                  cache: Path, configs_wanted: list[str], ops: tuple[str, ...] = PROBE_OPS,
                  validate: dict[str, list[str]] | None = None) -> dict:
    """Build the probe app per configuration: without TFLM, with no op, with each op; write the table."""
    import datetime
    import subprocess

    from . import platformio, tflm_link
    from .boards import CATALOGUE
    from .compat import resolver_method
    from .errors import TinyMLError

    tree = tflm_link.find_tree(library, reference_kernels=reference_kernels)
    boards = {"cortex-m4f": "nano33ble", "cortex-m0+": "pico", "cortex-m3": "bluepill_f103c8",
              "cortex-m7": "nucleo_f746zg"}
    result: dict[str, Any] = {"configs": {}}
    for cfg_key in configs_wanted:
        core, kernels = cfg_key.split("/")
        board = CATALOGUE[boards[core]]
        lib = tflm_link.build_library(tree, kernels, board.gcc_flags, cache, core=board.core)
        app = tflm_link.app_settings(lib)

        def probe(tag: str, op_list: list[str] | None) -> tuple[int, int, dict[str, int]]:
            proj = work / cfg_key.replace("/", "_") / tag
            methods = [resolver_method(o) for o in (op_list or [])]
            if any(m is None for m in methods):
                raise TinyMLError(f"no resolver method for {op_list}")
            reg = " ".join(f"(r).{m}();" for m in methods)
            cfg_dir = proj / "probe_cfg"
            cfg_dir.mkdir(parents=True, exist_ok=True)
            (cfg_dir / "tinyml_probe.h").write_text(
                f"// ops: {', '.join(op_list or []) or '(none)'}\n#define TINYML_PROBE_N {max(1, len(methods))}\n"
                f"#define TINYML_PROBE_REGISTER(r) do {{ {reg} }} while (0)\n")
            sources = {"main.cpp": tflm_link.PORT_DIR / "probe_main.cpp",
                       "probe_model.cc": tflm_link.PORT_DIR / "probe_model.cc"}
            defines: list[str] = []
            incs, links = [cfg_dir], []
            if op_list is not None:
                sources.update(app["sources"])
                incs, links = incs + app["include_dirs"], app["link_flags"]
                defines += app["defines"]
            res = platformio.build(proj, board, core_dir, sources, include_dirs=incs, defines=defines,
                                   link_flags=links, what=f"the size probe {tag} ({cfg_key})")
            return res.flash_used, res.ram_used, _map_sections(res.map)

        base_f, base_r, _ = probe("base", None)
        core_f, core_r, core_s = probe("core", [])
        per: dict[str, Any] = {}
        secs: dict[str, dict[str, int]] = {}
        for op in ops:
            if resolver_method(op) is None:
                continue
            f, r, s = probe(op, [op])
            per[op] = {"flash": f, "ram": r}
            secs[op] = {k: v for k, v in s.items() if k not in core_s}
        owners: dict[str, set] = {}
        sizes: dict[str, int] = {}
        for op, s in secs.items():
            for k, v in s.items():
                owners.setdefault(k, set()).add(op)
                sizes[k] = v
        comps: dict[tuple, int] = {}
        for k, o in owners.items():
            comps[tuple(sorted(o))] = comps.get(tuple(sorted(o)), 0) + sizes[k]
        ops_rec = {}
        for op, v in per.items():
            attributed = sum(sizes[k] for k in secs[op])
            ops_rec[op] = {"alone_flash": v["flash"] - core_f, "extra_flash": v["flash"] - core_f - attributed,
                           "ram": v["ram"] - core_r}
        rec = {"board": board.id, "machine": board.gcc_flags, "kernels": kernels,
               "core": {"flash": core_f - base_f, "ram": core_r - base_r},
               "resolver_ram_per_op": 0, "ops": ops_rec,
               "components": [{"ops": list(k), "flash": v} for k, v in sorted(comps.items(), key=lambda kv: (-kv[1], kv[0]))],
               "library_key": lib.key, "base_flash": base_f, "base_ram": base_r}
        # the resolver's slots: MicroMutableOpResolver<N> grows with N (measured: N=1 vs N=2)
        f2, r2, _ = probe("two_slots", ["RESHAPE", "RESHAPE"]) if "RESHAPE" in per else (0, core_r, {})
        rec["resolver_ram_per_op"] = max(0, r2 - per.get("RESHAPE", {"ram": core_r})["ram"])
        result["configs"][cfg_key] = rec
        if validate:
            rows = []
            for name, op_list in validate.items():
                f, r, _ = probe(f"validate_{name}", op_list)
                result_table = {"configs": {cfg_key: rec}}
                est = _estimate_with(result_table, cfg_key, op_list)
                est_ram = rec["core"]["ram"] + sum(ops_rec[o]["ram"] for o in dict.fromkeys(op_list) if o in ops_rec) \
                    + max(0, len(dict.fromkeys(op_list)) - 1) * rec["resolver_ram_per_op"]
                rows.append({"model": name, "ops": op_list, "interpreter_flash": f - base_f,
                             "estimate": est, "error_pct": round(100 * (est - (f - base_f)) / (f - base_f), 2),
                             "firmware_flash": f, "firmware_error_pct": round(100 * (est + base_f - f) / f, 2),
                             "interpreter_ram": r - base_r, "estimate_ram": est_ram})
            rec["validation"] = rows
            rec["max_abs_error_pct"] = max(abs(x["error_pct"]) for x in rows)
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    result["provenance"] = {
        "library": tree.version or tree.layout, "library_path": str(tree.root), "layout": tree.layout,
        "library_commit": _commit(tree.root), "reference_kernels": str(tree.reference_kernels or ""),
        "reference_kernels_commit": _commit(tree.reference_kernels) if tree.reference_kernels else "",
        "compiler": gcc, "flags": tflm_link.platform_flags(), "defines": tflm_link.defines(tree, "cmsis_nn"),
        "probe": "tasks/engine/tflm_port/probe_main.cpp: the examples' sketch shape (setup/loop, Serial, one "
                 "interpreter, AllocateTensors, Invoke) with doit's minimal Arduino API, against the same file "
                 "without TFLM (model and arena only)",
        "measured": datetime.date.today().isoformat(),
        "command": f"python -m {_MODULE} measure --library <tree> [--reference-kernels <tflite-micro>] "
                   "[--validate ops.json]",
    }
    fit_extra(result)
    result["_about"] = __doc__.split("\n\n")[0]
    result["formula"] = ("flash = core.flash + sum(component.flash for components whose ops meet the model's ops) + "
                         "sum(ops[op].extra_flash); ram = core.ram + sum(ops[op].ram)")
    out_json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def _extra(cfg: dict, ops: list[str]) -> int:
    """Bytes a set of ops adds beyond its sections: the resolver's Add methods, registrations, alignment.

    Fitted over the validation links as shared + per_op x n (a one-op link's extra is mostly shared:
    the resolver and parser code the first op pulls in); the per-op figures when there is no fit.
    """
    ex = cfg.get("extra")
    if ex and ops:
        return int(round(ex["shared"] + ex["per_op"] * len(ops)))
    return sum(cfg["ops"][o]["extra_flash"] for o in ops if o in cfg["ops"])


def _estimate_with(t: dict, key: str, ops: list[str]) -> int:
    cfg = t["configs"][key]
    ops = list(dict.fromkeys(ops))
    f = cfg["core"]["flash"] + sum(c["flash"] for c in cfg["components"] if set(c["ops"]) & set(ops))
    return f + _extra(cfg, [o for o in ops if o in cfg["ops"]])


def fit_extra(table: dict) -> dict:
    """Fit each configuration's extra bytes (shared + per_op x n_ops) to its validation links; recheck them."""
    for key, cfg in table["configs"].items():
        rows = cfg.get("validation") or []
        if len(rows) < 2:
            continue
        pts = []
        for r in rows:
            ops = [o for o in dict.fromkeys(r["ops"]) if o in cfg["ops"]]
            comps = sum(c["flash"] for c in cfg["components"] if set(c["ops"]) & set(ops))
            pts.append((len(ops), r["interpreter_flash"] - cfg["core"]["flash"] - comps))
        n = len(pts)
        mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
        sxx = sum((p[0] - mx) ** 2 for p in pts)
        b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else 0.0
        cfg["extra"] = {"shared": round(my - b * mx, 1), "per_op": round(b, 1),
                        "fit": "least squares over the validation links: interpreter - core - components = "
                               "shared + per_op x operators"}
        for r in rows:
            est = _estimate_with({"configs": {key: cfg}}, key, r["ops"])
            r["estimate"] = est
            r["error_pct"] = round(100 * (est - r["interpreter_flash"]) / r["interpreter_flash"], 2)
            r["firmware_error_pct"] = round(100 * (est + cfg["base_flash"] - r["firmware_flash"]) / r["firmware_flash"], 2)
        cfg["max_abs_error_pct"] = max(abs(r["error_pct"]) for r in rows)
    return table


def _commit(path: Path | None) -> str:
    if path is None:
        return ""
    for p in (Path(path), *Path(path).parents):
        head = p / ".git" / "HEAD"
        if head.is_file():
            ref = head.read_text().strip()
            if ref.startswith("ref: "):
                f = p / ".git" / ref[5:]
                return f.read_text().strip() if f.is_file() else ref
            return ref
    return ""


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    ap.add_argument("command", choices=("measure", "refit", "merge"))
    ap.add_argument("--library", type=Path)
    ap.add_argument("--tables", nargs="*", type=Path, default=[], help="merge: tables whose configurations to join")
    ap.add_argument("--reference-kernels", type=Path)
    ap.add_argument("--configs", default="cortex-m4f/cmsis_nn,cortex-m4f/reference")
    ap.add_argument("--work", type=Path, default=Path("build/tflm_size"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--validate", type=Path, help="JSON {model: [ops]} of real models to link and check")
    a = ap.parse_args(argv)
    if a.command in ("refit", "merge"):
        base = json.loads((a.tables[0] if a.tables else a.out).read_text())
        for extra in a.tables[1:]:
            base["configs"].update(json.loads(extra.read_text())["configs"])
        a.out.write_text(json.dumps(fit_extra(base), indent=1, sort_keys=True) + "\n")
        return 0
    if a.library is None:
        ap.error("measure needs --library")
    from .tflm_link import default_cache

    work = a.work.resolve()
    cache = a.cache.resolve() if a.cache else default_cache(work)
    validate = json.loads(a.validate.read_text()) if a.validate else None
    measure_table(a.library, reference_kernels=a.reference_kernels, out_json=a.out, work=work,
                  core_dir=work / ".platformio", cache=cache, configs_wanted=a.configs.split(","), validate=validate)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
