"""What the TFLite Micro interpreter adds to a firmware, per TFLM generation, from tables of real links (data file).

Without a TFLM library, an offline `tflm` firmware holds the model and the arena but not the interpreter.
`estimate(core, kernels, ops, tree=...)` gives the flash and RAM that the interpreter, the kernels of `ops`, our
port and the minimal Arduino API add, from `data/tflm_size_table.json`. The table is kept per *generation* of
TFLite Micro, because the code differs by tens of percent between them (the 2023-12 Arduino library
`Arduino_TensorFlowLite` that a sketch's lib_deps names, an upstream tflite-micro tree of 2026 with CMSIS-NN): each
generation records its source (tree, commit, date, how it was measured) and, per configuration (core flags x kernel
set), the error measured against real links of the firmware stage's own generated project.

Which generation a row assumes: the one of the user's tree when one is known (`generation_of`: layout, DebugLog API,
per-channel FULLY_CONNECTED); without a tree, or for a tree that no measured generation matches, the one whose
interpreter is the LARGER for this configuration and these ops, so that the estimate never understates. The result
says which (`generation`, `config` = "<core>/<kernels>@<generation>", `basis`) and the error measured against it.

Per generation and configuration the table is exact-union, not a sum per op: every flash input section (GNU ld map)
that a one-op link adds over the no-op link is assigned to the set of ops whose links add it; sections with the same
op set form one component, so code several kernels share (libgcc's soft-double used by every quantization
multiplier, kernel utilities, CMSIS-NN support functions) is counted once:

    flash = core.flash + sum(component.flash where component.ops meets the model's ops) + extra(n_ops) + margin.flash
    ram   = core.ram + sum(ops[op].ram) + (n_ops - 1) x resolver_ram_per_op + margin.ram

The probe is the demo sketch itself (`--sketch sketches/sine`: setup/loop, Serial, one interpreter, the op resolver
of model_data.h) with a stand-in model_data.h/.cc registering the probed ops, against the same sketch without TFLM.
`extra` is fitted over multi-op probe links (`validation`); `margin` is the largest understatement of the formula
without it over every real link measured (`validation`, and `links`: real models through the firmware stage, the
generated project with the library against the same project without it), plus a safety of SAFETY_PCT: the estimate
is never below a real link measured, and `error` says how far above them it is.
"""
from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "tflm_size_table.json"
_MODULE = (__spec__.name if __spec__ else __name__)  # this module's import name, derived

# board core -> (measured cores whose tables stand in, the largest taken; how much larger the figure is made and
# the error widened when the core itself was not measured)
NEAREST = {
    "cortex-m4f": (("cortex-m4f",), 0.0), "cortex-m0+": (("cortex-m0+",), 0.0), "cortex-m3": (("cortex-m3",), 0.0),
    "cortex-m7": (("cortex-m7",), 0.0), "cortex-m33": (("cortex-m33",), 0.0),
    "cortex-m7dp": (("cortex-m7",), 0.02),         # the double FPU only drops libgcc's soft double: smaller
    "cortex-m0": (("cortex-m0+",), 0.05),
    "cortex-m4": (("cortex-m3", "cortex-m4f"), 0.10),
    "cortex-m33nofp": (("cortex-m3", "cortex-m33"), 0.10),
    "cortex-m55": (("cortex-m33", "cortex-m7", "cortex-m4f"), 0.20),
}
OTHER_CONFIG_ERROR = 0.30  # a generation without a table for the core: the largest core's, this much larger
REFERENCE_CORE = "cortex-m4f"  # the core every generation measures: others scale from it across generations
CROSS_GENERATION_ERROR = 0.10  # the core's size ratio to REFERENCE_CORE taken from another generation: +10 %
STAND_IN_ERROR = 0.05      # a kernel set the core's table lacks: the core's largest kernel set (cmsis_nn), +5 %
SAFETY_PCT = 0.5           # margin over the largest understatement measured, in % of the configuration's core
SAFETY_RAM = 8             # and in RAM: one alignment unit of the linker's .bss
UNMEASURED_OP_ERROR = 10.0 # an op no probe measured: counted as the largest measured op, error widened by this


@functools.lru_cache(maxsize=1)
def table() -> dict:
    return json.loads(DATA.read_text())


def generations() -> list[str]:
    return list(table()["generations"])


def configs() -> list[str]:
    """Every measured configuration, "<core>/<kernels>@<generation>"."""
    return sorted(f"{k}@{g}" for g, gen in table()["generations"].items() for k in gen["configs"])


def generation_of(tree: Any) -> tuple[str | None, str]:
    """(the measured generation a TFLM tree belongs to, or None; why). `tree`: an engine.tflm_link.Tree or a path."""
    if tree is None:
        return None, "no TFLM tree is known"
    if not hasattr(tree, "layout"):
        from . import tflm_link
        from .errors import TinyMLError

        try:
            tree = tflm_link.find_tree(tree)
        except TinyMLError as e:
            return None, f"the TFLM tree could not be read ({e})"
    seen = {k: getattr(tree, k, None) for k in ("layout", "debuglog_api", "per_channel_fc")}
    for name, gen in table()["generations"].items():
        if all(seen.get(k) == v for k, v in gen["match"].items()):
            return name, (f"the tree {getattr(tree, 'root', tree)} is {name} ("
                          + ", ".join(f"{k} {v}" for k, v in gen["match"].items()) + ")")
    return None, (f"the tree {getattr(tree, 'root', tree)} ({', '.join(f'{k} {v}' for k, v in seen.items())}) "
                  f"matches no measured generation")


def _raw(cfg: dict, ops: list[str]) -> tuple[int, int]:
    """The formula without the margin: (flash, ram) of the interpreter with the (measured) `ops`."""
    flash = cfg["core"]["flash"] + sum(c["flash"] for c in cfg["components"] if set(c["ops"]) & set(ops))
    flash += _extra(cfg, ops)
    ram = cfg["core"]["ram"] + sum(cfg["ops"][o]["ram"] for o in ops) + max(0, len(ops) - 1) * cfg["resolver_ram_per_op"]
    return int(flash), int(ram)


def _config_estimate(cfg: dict, ops: list[str]) -> tuple[int, int, list[str]]:
    """(flash, ram, unmeasured ops) of one configuration, with its margin."""
    known = [o for o in ops if o in cfg["ops"]]
    unmeasured = [o for o in ops if o not in cfg["ops"]]
    flash, ram = _raw(cfg, known)
    ram += (len(ops) - max(1, len(known))) * cfg["resolver_ram_per_op"] if unmeasured else 0  # their resolver slots
    if unmeasured:  # an op no probe has measured: as big as the biggest one measured (never understate)
        flash += len(unmeasured) * max(v["alone_flash"] for v in cfg["ops"].values())
        ram += len(unmeasured) * max(v["ram"] for v in cfg["ops"].values())
    m = cfg.get("margin") or {}
    return flash + int(m.get("flash", 0)), ram + int(m.get("ram", 0)), unmeasured


def _pick(gen: dict, core: str, kernels: str) -> tuple[list[str], float, str] | None:
    """(configuration keys, scale factor, note) of `gen` that stand for `core`/`kernels`, the keys empty when `gen`
    has no table for the core nor its stand-ins; None: unknown core."""
    near = NEAREST.get(core)
    if near is None:
        return None
    cands, scale, notes = [], 1 + near[1], []
    for c in near[0]:
        if f"{c}/{kernels}" in gen["configs"]:
            cands.append(f"{c}/{kernels}")
        elif any(k.startswith(c + "/") for k in gen["configs"]):  # the core's largest kernel set stands in
            cands.append(max((k for k in gen["configs"] if k.startswith(c + "/")),
                             key=lambda k: gen["configs"][k]["core"]["flash"] + sum(x["flash"] for x in gen["configs"][k]["components"])))
            scale += STAND_IN_ERROR
            notes.append(f"no {c}/{kernels} table: {cands[-1]} stands in (+{100 * STAND_IN_ERROR:.0f} %)")
    if not cands:
        return [], scale, ""
    if near[1]:
        notes.append(f"{core} was not measured: {' / '.join(near[0])} (the largest), +{100 * near[1]:.0f} %")
    return cands, scale, "; ".join(notes)


def _estimate_generation(name: str, core: str, kernels: str, ops: list[str], cross: bool = True) -> dict[str, Any] | None:
    gen = table()["generations"][name]
    pick = _pick(gen, core, kernels)
    if pick is None:
        return None
    keys, scale, note = pick
    if not keys and cross:  # no table for this core here: the reference core's, times the core's ratio elsewhere
        res = _cross_generation(name, core, kernels, ops)
        if res is not None:
            return res
    if not keys:  # nothing to scale by: the generation's largest configuration, made larger
        keys, scale = list(gen["configs"]), max(scale, 1 + OTHER_CONFIG_ERROR)
        note = f"{core} has no table in {name}: its largest configuration, +{100 * OTHER_CONFIG_ERROR:.0f} %"
    best = None
    for key in keys:
        f, r, unmeasured = _config_estimate(gen["configs"][key], ops)
        if best is None or f > best[1]:
            best = (key, f, r, unmeasured)
    key, f, r, unmeasured = best
    cfg = gen["configs"][key]
    err = cfg["error"]["flash_pct"][1]
    if scale > 1:
        f, r = int(math.ceil(f * scale)), int(math.ceil(r * scale))
        err = err + 200 * (scale - 1)  # made larger by (scale - 1); the truth may be as much smaller again
    if unmeasured:
        err += UNMEASURED_OP_ERROR
    return {"flash": f, "ram": r, "config": f"{key}@{name}", "generation": name, "error_pct": math.ceil(round(err, 6) * 10) / 10,
            "unmeasured_ops": unmeasured, "note": note, "key": key}


def _cross_generation(name: str, core: str, kernels: str, ops: list[str]) -> dict[str, Any] | None:
    """`core` in generation `name`, which measured only other cores: `name`'s REFERENCE_CORE estimate times
    core / REFERENCE_CORE as another generation measured them (code size by instruction set is the compiler's, not
    TFLM's), made CROSS_GENERATION_ERROR larger. The larger over the generations that can say; None: none can."""
    here = _estimate_generation(name, REFERENCE_CORE, kernels, ops, cross=False)
    if here is None or not _pick(table()["generations"][name], REFERENCE_CORE, kernels)[0]:
        return None
    best = None
    for other, gen in table()["generations"].items():
        if other == name or not _pick(gen, core, kernels)[0] or not _pick(gen, REFERENCE_CORE, kernels)[0]:
            continue
        mine = _estimate_generation(other, core, kernels, ops, cross=False)
        ref = _estimate_generation(other, REFERENCE_CORE, kernels, ops, cross=False)
        rf, rr = mine["flash"] / ref["flash"], mine["ram"] / max(1, ref["ram"])
        f = int(math.ceil(here["flash"] * rf * (1 + CROSS_GENERATION_ERROR)))
        r = int(math.ceil(here["ram"] * rr * (1 + CROSS_GENERATION_ERROR)))
        if best is None or f > best["flash"]:
            err = here["error_pct"] + mine["error_pct"] + 200 * CROSS_GENERATION_ERROR
            best = {**here, "flash": f, "ram": r, "error_pct": math.ceil(round(err, 6) * 10) / 10,
                    "unmeasured_ops": sorted(set(here["unmeasured_ops"]) | set(mine["unmeasured_ops"])),
                    "note": (f"{core} was not measured in {name}: its {here['key']} table x {rf:.3f} (flash) and "
                             f"{rr:.3f} (RAM), {core} against {REFERENCE_CORE} as {other} measured them, "
                             f"+{100 * CROSS_GENERATION_ERROR:.0f} %")}
    return best


def estimate(core: str, kernels: str, ops: list[str], *, tree: Any = None,
             generation: str | None = None) -> dict[str, Any] | None:
    """{flash, ram, config, generation, error_pct, unmeasured_ops, basis} for the interpreter with `ops`, or None.

    `tree` (an engine.tflm_link.Tree or a path) or `generation` names the TFLM the user has; without either the
    generation with the larger interpreter is assumed. `error_pct`: the estimate is never below the real links
    measured for that generation and configuration and at most this much above them.
    """
    ops = list(dict.fromkeys(ops))
    gens = table()["generations"]
    if generation is not None and generation not in gens:
        raise KeyError(f"unknown TFLM generation {generation!r}; measured: {', '.join(gens)}")
    why = f"generation {generation} as given" if generation else ""
    if generation is None and tree is not None:
        generation, why = generation_of(tree)
    if generation is not None:
        res = _estimate_generation(generation, core, kernels, ops)
        if res is None:
            return None
        chosen, others = res, []
    else:
        all_ = [r for r in (_estimate_generation(g, core, kernels, ops) for g in gens) if r is not None]
        if not all_:
            return None
        chosen = max(all_, key=lambda r: (r["flash"], r["ram"]))
        others = [r for r in all_ if r is not chosen]
        why = (f"{why}: " if why else "no TFLM tree is known: ") + f"assumes {chosen['generation']}, the larger " \
              f"interpreter here (" + ", ".join(f"{r['generation']} {r['flash']:,} B" for r in all_) + ")"
        ram = max(r["ram"] for r in all_)
        if ram > chosen["ram"]:
            why += f"; RAM from {max(all_, key=lambda r: r['ram'])['generation']}, the larger"
            chosen = {**chosen, "ram": ram}
    src = gens[chosen["generation"]]["source"]
    cfg = gens[chosen["generation"]]["configs"][chosen["key"]]
    e = cfg["error"]
    basis = (f"TFLite Micro interpreter + kernels of {', '.join(ops) or 'no op'} estimated from {DATA.name} "
             f"[{chosen['config']}] ({src['library']}, {src['commit']}; {why}); measured {src['measured']} from real "
             f"links (gcc -Os, --gc-sections): never below the {e['n_links']} real links of this configuration, at most "
             f"{e['flash_pct'][1]} % above them (flash; RAM at most {e['ram_pct'][1]} % above)"
             + (f"; {chosen['note']}: at most {chosen['error_pct']} % above" if chosen["note"] else "")
             + (f"; not in the table, counted as the largest op: {', '.join(chosen['unmeasured_ops'])}"
                if chosen["unmeasured_ops"] else ""))
    return {"flash": chosen["flash"], "ram": chosen["ram"], "config": chosen["config"],
            "generation": chosen["generation"], "error_pct": chosen["error_pct"],
            "unmeasured_ops": chosen["unmeasured_ops"], "basis": basis, "assumed": why,
            "other_generations": {r["generation"]: {"flash": r["flash"], "ram": r["ram"]} for r in others}}


# =============================================================================== measuring the table
# Heavy (PlatformIO builds of the probe with a real TFLM tree): only for maintainers,
# `python -m <package>.engine.tflm_size measure --generation <name> --library <tree> --sketch sketches/sine ...`.

PROBE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
             "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6", "ADD", "MUL",
             "QUANTIZE", "DEQUANTIZE", "CONCATENATION", "PAD", "SUB", "STRIDED_SLICE", "LEAKY_RELU", "TRANSPOSE")
FLASH_OUT = (".isr_vector", ".text", ".ARM.extab", ".ARM.exidx", ".data")
PROBE_BOARDS = {"cortex-m4f": "nano33ble", "cortex-m0+": "pico", "cortex-m3": "bluepill_f103c8",
                "cortex-m7": "nucleo_f746zg", "cortex-m33": "nucleo_l552ze_q"}
# the op sets of real models whose probe links check the formula (tasks/aot/testmodels.py and the examples)
VALIDATE = {
    "sine": ["FULLY_CONNECTED"], "fc_logistic": ["FULLY_CONNECTED", "LOGISTIC"],
    "fc_softmax": ["FULLY_CONNECTED", "SOFTMAX"], "autoenc": ["FULLY_CONNECTED", "TANH"],
    "cnn2d": ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"],
    "conv1d": ["QUANTIZE", "EXPAND_DIMS", "CONV_2D", "RESHAPE", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX",
               "DEQUANTIZE"],
    "zoo": ["QUANTIZE", "CONV_2D", "LOGISTIC", "TANH", "ADD", "MUL", "CONCATENATION", "RELU6", "MAX_POOL_2D", "MEAN",
            "RESHAPE", "PAD", "DEPTHWISE_CONV_2D", "RELU", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX",
            "DEQUANTIZE"],
}
STAND_IN_MODEL_BYTES = 2048
STAND_IN_ARENA = 4096


def stand_in_header(op_list: list[str]) -> tuple[str, str]:
    """(model_data.h, model_data.cc) shaped like the header stage's, registering `op_list` with a stand-in model."""
    from .compat import resolver_method
    from .errors import TinyMLError

    methods = [resolver_method(o) for o in op_list]
    if any(m is None for m in methods):
        raise TinyMLError(f"no resolver method for {op_list}")
    reg = "".join(f"  if (r.{m}() != kTfLiteOk) return kTfLiteError;  // {o}\n" for m, o in zip(methods, op_list))
    h = ("// doit-tinyml's size probe: a stand-in for the header stage's model_data.h (ops: "
         f"{', '.join(op_list) or 'none'})\n#ifndef TINYML_MODEL_DATA_H_\n#define TINYML_MODEL_DATA_H_\n"
         "extern const unsigned char g_model[];\nextern const unsigned int g_model_len;\n"
         f"#define TINYML_MODEL_LEN {STAND_IN_MODEL_BYTES}\n#define TINYML_ARENA_SIZE {STAND_IN_ARENA}\n"
         f"#define TINYML_OP_COUNT {max(1, len(op_list))}\n"
         "#ifdef TINYML_HAVE_TFLM\n#include \"tensorflow/lite/micro/micro_mutable_op_resolver.h\"\n"
         "template <unsigned int N>\ninline TfLiteStatus tinyml_register_ops(tflite::MicroMutableOpResolver<N>& r) {\n"
         f"{reg}  return kTfLiteOk;\n}}\n"
         "using TinyMLOpResolver = tflite::MicroMutableOpResolver<TINYML_OP_COUNT>;\n"
         "#ifndef TINYML_OP_RESOLVER_TYPE\n#define TINYML_OP_RESOLVER_TYPE TinyMLOpResolver\n#endif\n"
         "#endif  // TINYML_HAVE_TFLM\n#endif  // TINYML_MODEL_DATA_H_\n")
    cc = ("#include \"model_data.h\"\n"
          f"alignas(16) const unsigned char g_model[{STAND_IN_MODEL_BYTES}] = {{0x1c, 0, 0, 0, 'T', 'F', 'L', '3'}};\n"
          f"const unsigned int g_model_len = {STAND_IN_MODEL_BYTES};\n")
    return h, cc


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


def measure_table(library: Path, *, generation: str, reference_kernels: Path | None, work: Path, core_dir: Path,
                  cache: Path, configs_wanted: list[str], ops: tuple[str, ...] = PROBE_OPS,
                  validate: dict[str, list[str]] | None = None, sketch: Path | None = None,
                  out_json: Path = DATA, provenance: dict | None = None) -> dict:
    """Probe links per configuration (without TFLM, with no op, with each op, with the `validate` op sets) of
    `library`; store them as `generation` in `out_json` (other generations are kept) and refit."""
    import datetime
    import subprocess

    from . import platformio, tflm_link
    from .boards import CATALOGUE

    tree = tflm_link.find_tree(library, reference_kernels=reference_kernels)
    validate = VALIDATE if validate is None else validate
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    result = old if "generations" in old else {"generations": {}}
    prev = result["generations"].get(generation, {})
    gen: dict[str, Any] = {"configs": dict(prev.get("configs", {}))}
    for cfg_key in configs_wanted:
        core, kernels = cfg_key.split("/")
        board = CATALOGUE[PROBE_BOARDS[core]]
        lib = tflm_link.build_library(tree, kernels, board.gcc_flags, cache, core=board.core)
        app = tflm_link.app_settings(lib)

        def probe(tag: str, op_list: list[str] | None) -> tuple[int, int, dict[str, int]]:
            proj = work / generation / cfg_key.replace("/", "_") / tag
            cfg_dir = proj / "probe_cfg"
            cfg_dir.mkdir(parents=True, exist_ok=True)
            h, cc = stand_in_header(list(op_list or []))
            defines: list[str] = []
            incs, links = [cfg_dir], []
            if sketch is not None:  # the sketch itself, with a stand-in model_data.h/.cc
                src = Path(sketch) / "src"
                sources = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
                (cfg_dir / "model_data.h").write_text(h)
                (cfg_dir / "model_data.cc").write_text(cc)
                sources["tinyml_model/model_data.cc"] = cfg_dir / "model_data.cc"
                if (Path(sketch) / "include").is_dir():
                    incs.append(Path(sketch) / "include")
                defines.append("TINYML_RUNTIME_TFLM")
            else:  # the older probe application (tflm_port/probe_main.cpp)
                reg = " ".join(f"(r).{m}();" for m in re.findall(r"r\.(\w+)\(\)", h))
                (cfg_dir / "tinyml_probe.h").write_text(
                    f"#define TINYML_PROBE_N {max(1, len(op_list or []))}\n"
                    f"#define TINYML_PROBE_REGISTER(r) do {{ {reg} }} while (0)\n")
                sources = {"main.cpp": tflm_link.PORT_DIR / "probe_main.cpp",
                           "probe_model.cc": tflm_link.PORT_DIR / "probe_model.cc"}
            if op_list is not None:
                sources.update(app["sources"])
                incs, links = incs + app["include_dirs"], app["link_flags"]
                defines += app["defines"]
            res = platformio.build(proj, board, core_dir, sources, include_dirs=incs, defines=defines,
                                   link_flags=links, what=f"the size probe {tag} ({cfg_key}, {generation})")
            return res.flash_used, res.ram_used, _map_sections(res.map)

        base_f, base_r, _ = probe("base", None)
        core_f, core_r, core_s = probe("core", [])
        per: dict[str, Any] = {}
        secs: dict[str, dict[str, int]] = {}
        for op in ops:
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
        rec["resolver_ram_two_slots"] = rec["resolver_ram_per_op"] = max(0, r2 - per.get("RESHAPE", {"ram": core_r})["ram"])
        rows = []
        for name, op_list in validate.items():
            f, r, _ = probe(f"validate_{name}", op_list)
            rows.append({"model": name, "ops": op_list, "interpreter_flash": f - base_f, "interpreter_ram": r - base_r,
                         "firmware_flash": f})
        rec["validation"] = rows
        before = gen["configs"].get(cfg_key, {})
        # real links of models stay only while they were made with the same library build
        rec["links"] = [x for x in before.get("links", []) if x.get("archive_key") == lib.key]
        gen["configs"][cfg_key] = rec
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    probe_what = (f"the sketch {sketch} (src/, the TFLM branch) with a stand-in model_data.h/.cc registering the probed "
                  f"ops ({STAND_IN_MODEL_BYTES} B model, {STAND_IN_ARENA} B arena), against the same sketch without TFLM"
                  if sketch is not None else
                  "tasks/engine/tflm_port/probe_main.cpp (setup/loop, Serial, one interpreter) against the same file "
                  "without TFLM")
    gen["source"] = {
        "library": tree.version or tree.layout, "layout": tree.layout, "tree": str(tree.root),
        "commit": _commit(tree.root), "date": "", "reference_kernels": str(tree.reference_kernels or ""),
        "compiler": gcc, "flags": tflm_link.platform_flags()["ccflags"],
        "defines": tflm_link.defines(tree, "cmsis_nn"), "probe": probe_what,
        "measured": datetime.date.today().isoformat(),
        "command": f"python -m {_MODULE} measure --generation {generation} --library <tree> "
                   f"[--reference-kernels <tflite-micro>] --sketch <sketch> --configs {','.join(configs_wanted)}",
        **(provenance or {})}
    gen["match"] = {"layout": tree.layout, "debuglog_api": tree.debuglog_api, "per_channel_fc": tree.per_channel_fc}
    result["generations"][generation] = gen
    fit(result)
    write_table(result, out_json)
    return result


def add_links(table: dict, generation: str, rows: list[dict]) -> dict:
    """Store real links of models (the firmware stage's generated project with and without the library, see
    tests/test_tflm_size.py `link_rows`) in their configuration of `generation`, then refit."""
    from .errors import TinyMLError

    gen = table["generations"][generation]
    for r in rows:
        key = f"{r['core']}/{r['kernels']}"
        cfg = gen["configs"].get(key)
        if cfg is None:
            raise TinyMLError(f"links of {key}: generation {generation} has no probe table for it (measure it first)")
        if r.get("archive_key") and r["archive_key"] != cfg["library_key"]:
            raise TinyMLError(f"links of {key} ({r['model']}) were made with TFLM archive {r['archive_key']}, the probe "
                              f"table with {cfg['library_key']}: not the same library build")
        keep = [x for x in cfg.get("links", []) if (x["model"], x.get("board")) != (r["model"], r.get("board"))]
        cfg["links"] = keep + [r]
    return fit(table)


def _extra(cfg: dict, ops: list[str]) -> int:
    """Bytes a set of ops adds beyond its sections: the resolver's Add methods, registrations, alignment.

    Fitted over the validation links as shared + per_op x n (a one-op link's extra is mostly shared:
    the resolver and parser code the first op pulls in); the per-op figures when there is no fit.
    """
    ex = cfg.get("extra")
    if ex and ops:
        return int(round(ex["shared"] + ex["per_op"] * len(ops)))
    return sum(cfg["ops"][o]["extra_flash"] for o in ops if o in cfg["ops"])


def _pct(est: int, real: int) -> float:
    return round(100 * (est - real) / real, 2) if real else 0.0


def fit(table: dict) -> dict:
    """Per generation and configuration: fit `extra` to the validation links, set `margin` so that no real link
    (validation and links) is understated, and record the error against every one of them."""
    for gname, gen in table["generations"].items():
        for key, cfg in gen["configs"].items():
            rows = cfg.get("validation") or []
            cfg.pop("extra", None)
            cfg.pop("margin", None)
            if len(rows) >= 2:
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
            # the resolver's RAM per op: MicroMutableOpResolver<N> with N slots, aligned, so N=1 -> 2 alone can show
            # less than the slot (32 of 36 B): the largest per-op figure over the multi-op validation links
            two = cfg.setdefault("resolver_ram_two_slots", cfg.get("resolver_ram_per_op", 0))
            slots = [math.ceil((r["interpreter_ram"] - cfg["core"]["ram"]
                                - sum(cfg["ops"][o]["ram"] for o in set(r["ops"]) if o in cfg["ops"]))
                               / (len(set(r["ops"])) - 1)) for r in rows if len(set(r["ops"])) > 1]
            cfg["resolver_ram_per_op"] = max([two] + slots)
            every = rows + (cfg.get("links") or [])
            under_f = under_r = 0
            for r in every:
                f, ram = _raw(cfg, [o for o in dict.fromkeys(r["ops"]) if o in cfg["ops"]])
                under_f = max(under_f, r["interpreter_flash"] - f)
                under_r = max(under_r, r["interpreter_ram"] - ram)
            safety = int(math.ceil(SAFETY_PCT / 100 * cfg["core"]["flash"]))
            cfg["margin"] = {"flash": int(under_f) + safety, "ram": int(under_r) + SAFETY_RAM,
                             "why": f"the largest understatement of the formula over the {len(every)} real links "
                                    f"({int(under_f)} B flash, {int(under_r)} B RAM) + {SAFETY_PCT} % of the core "
                                    f"({safety} B flash) and {SAFETY_RAM} B RAM: never below a real link measured"}
            for r in every:
                f, ram, _ = _config_estimate(cfg, list(dict.fromkeys(r["ops"])))
                r["estimate"], r["estimate_ram"] = f, ram
                r["error_pct"], r["ram_error_pct"] = _pct(f, r["interpreter_flash"]), _pct(ram, r["interpreter_ram"])
                if r.get("firmware_flash"):
                    r["firmware_error_pct"] = _pct(r["firmware_flash"] - r["interpreter_flash"] + f, r["firmware_flash"])
            links = cfg.get("links") or []
            cfg["error"] = {
                "flash_pct": [min(r["error_pct"] for r in every), max(r["error_pct"] for r in every)] if every else [0, 0],
                "ram_pct": [min(r["ram_error_pct"] for r in every), max(r["ram_error_pct"] for r in every)] if every else [0, 0],
                "n_links": len(every), "n_models": len(links),
                "models_flash_pct": ([min(r["error_pct"] for r in links), max(r["error_pct"] for r in links)]
                                     if links else None),
                "about": "estimate against real links, in % of the real interpreter bytes: [lowest, highest] over the "
                         "probe validation links and the real models' links (never below 0: the estimate never "
                         "understates a link measured)"}
        errs = [c["error"] for c in gen["configs"].values()]
        gen["error"] = {"flash_pct": [min(e["flash_pct"][0] for e in errs), max(e["flash_pct"][1] for e in errs)],
                        "ram_pct": [min(e["ram_pct"][0] for e in errs), max(e["ram_pct"][1] for e in errs)],
                        "n_links": sum(e["n_links"] for e in errs)} if errs else None
    return table


def write_table(t: dict, out_json: Path = DATA) -> None:
    t["_about"] = __doc__.split("\n\n")[0]
    t["formula"] = ("flash = core.flash + sum(component.flash for components whose ops meet the model's ops) + "
                    "extra.shared + extra.per_op x n_ops + margin.flash; ram = core.ram + sum(ops[op].ram) + "
                    "(n_ops - 1) x resolver_ram_per_op + margin.ram")
    t["choice"] = ("the generation of the user's TFLM tree (generations.<g>.match: layout, debuglog_api, "
                   "per_channel_fc); no tree, or one no generation matches: the generation whose estimate is the "
                   "larger for the configuration and ops (never understate)")
    out_json.write_text(json.dumps(t, indent=1, sort_keys=True) + "\n")
    table.cache_clear()


def markdown(t: dict | None = None, detail: tuple[str, ...] = ("cortex-m4f/cmsis_nn",)) -> str:
    """The table per generation as docs/firmware.md shows it (`python -m ... show --markdown`): every configuration's
    error, and the real models of the `detail` configurations side by side per generation."""
    t = t or table()
    gens = t["generations"]
    out = ["| configuration | source | interpreter core (flash / RAM) | real links (of models) | estimate against "
           "them: flash | RAM |", "|---|---|---|---|---|---|"]
    for g, gen in gens.items():
        for key, cfg in sorted(gen["configs"].items()):
            e = cfg["error"]
            out.append(f"| `{key}@{g}` | {gen['source']['library']} ({gen['source']['date']}) | "
                       f"{cfg['core']['flash']:,} / {cfg['core']['ram']:,} B | {e['n_links']} ({e['n_models']}) | "
                       f"+{e['flash_pct'][0]:.2f} to +{e['flash_pct'][1]:.2f} % | "
                       f"+{e['ram_pct'][0]:.2f} to +{e['ram_pct'][1]:.2f} % |")
    for key in detail:
        have = [g for g in gens if gens[g]["configs"].get(key, {}).get("links")]
        if not have:
            continue
        out += ["", f"Real models linked through the firmware stage, `{key}` (interpreter bytes: the firmware with the "
                    f"library minus the same firmware without it; real -> estimate, error; flash, then RAM):", "",
                "| model | ops | " + " | ".join(f"{g} flash | {g} RAM" for g in have) + " |",
                "|---|---|" + "---|---|" * len(have)]
        models = list(dict.fromkeys(r["model"] for g in have for r in gens[g]["configs"][key]["links"]))
        for m in models:
            cells = []
            for g in have:
                r = next((x for x in gens[g]["configs"][key]["links"] if x["model"] == m), None)
                cells += (["-", "-"] if r is None else
                          [f"{r['interpreter_flash']:,} -> {r['estimate']:,} (+{r['error_pct']:.2f} %)",
                           f"{r['interpreter_ram']:,} -> {r['estimate_ram']:,} (+{r['ram_error_pct']:.2f} %)"])
            ops = next(x["ops"] for g in have for x in gens[g]["configs"][key]["links"] if x["model"] == m)
            out.append(f"| {m} | {', '.join(ops)} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


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
    ap.add_argument("command", choices=("measure", "links", "refit", "show"))
    ap.add_argument("--generation", help="e.g. arduino-2023-12, upstream-2026")
    ap.add_argument("--library", type=Path)
    ap.add_argument("--reference-kernels", type=Path)
    ap.add_argument("--sketch", type=Path, help="probe with this sketch (its src/) and a stand-in model_data.h")
    ap.add_argument("--configs", default="cortex-m4f/cmsis_nn,cortex-m4f/reference")
    ap.add_argument("--work", type=Path, default=Path("build/tflm_size"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--rows", nargs="*", type=Path, default=[], help="links: JSON lists of real-link rows")
    ap.add_argument("--validate", type=Path, help="JSON {model: [ops]} of op sets to link and check")
    ap.add_argument("--provenance", type=Path, help="JSON of source fields to record (commit, date, tree, ...)")
    ap.add_argument("--markdown", action="store_true", help="show: the tables of docs/firmware.md")
    a = ap.parse_args(argv)
    if a.command == "show":
        if a.markdown:
            print(markdown(json.loads(a.out.read_text())), end="")
            return 0
        for c in configs():
            key, g = c.split("@")
            cfg = table()["generations"][g]["configs"][key]
            print(f"{c:40s} core {cfg['core']['flash']:>7,} B  error {cfg['error']['flash_pct']} % over "
                  f"{cfg['error']['n_links']} links")
        return 0
    if a.command == "refit":
        write_table(fit(json.loads(a.out.read_text())), a.out)
        return 0
    if a.generation is None:
        ap.error(f"{a.command} needs --generation")
    if a.command == "links":
        t = json.loads(a.out.read_text())
        rows = [r for p in a.rows for r in json.loads(p.read_text())]
        write_table(add_links(t, a.generation, rows), a.out)
        return 0
    if a.library is None:
        ap.error("measure needs --library")
    from .tflm_link import default_cache

    work = a.work.resolve()
    cache = a.cache.resolve() if a.cache else default_cache(work)
    validate = json.loads(a.validate.read_text()) if a.validate else None
    prov = json.loads(a.provenance.read_text()) if a.provenance else None
    measure_table(a.library, generation=a.generation, reference_kernels=a.reference_kernels, work=work,
                  core_dir=work / ".platformio", cache=cache, configs_wanted=a.configs.split(","), validate=validate,
                  sketch=a.sketch, out_json=a.out, provenance=prov)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
