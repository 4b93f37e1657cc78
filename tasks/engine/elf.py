"""Where a firmware's flash and RAM go: model weights, inference code, arena, stack/heap, the rest.

Reads the ELF with pyelftools (and the linker map beside it, `firmware.map`, to learn which
object file each piece of code came from). Every byte of the flash/RAM totals (the same
sections PlatformIO counts) lands in exactly one bucket, so the buckets add up to the totals.
"""
from __future__ import annotations

import re
from pathlib import Path


FLASH_SECTIONS = (".isr_vector", ".text", ".ARM.extab", ".ARM.exidx", ".data")
RAM_SECTIONS = (".data", ".bss", ".heap", ".stack")

MODEL_SYMBOL = re.compile(r"^(g_model|g_tinyml_\w+|tinyml_w_\w+)$|^_ZL\d+(g_tinyml_\w+|tinyml_w_\w+)$")
ARENA_SYMBOL = re.compile(r"tensor_arena|tinyml_arena")
INFERENCE_OBJECT = re.compile(r"tflite|tflm|tinyml_aot|tinyml_k_|tinyml_kernels|tinyml_model\.c", re.I)


def section_sizes(elf: Path) -> dict[str, int]:
    """Every named section's size, as `arm-none-eabi-size -A` lists them."""
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        return {s.name: s["sh_size"] for s in ELFFile(f).iter_sections() if s.name}


def content_sha256(elf: Path) -> str:
    """sha256 of what the ELF puts on the board: every allocated section's address and bytes (no debug info,
    symbol names or build paths, which change with the folder the firmware was built in)."""
    import hashlib

    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    h = hashlib.sha256()
    with open(elf, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            if sec["sh_flags"] & SH_FLAGS.SHF_ALLOC and sec["sh_size"]:
                h.update(f"{sec.name}@{sec['sh_addr']:#x}+{sec['sh_size']}|{sec['sh_type']}\n".encode())
                if sec["sh_type"] != "SHT_NOBITS":
                    h.update(sec.data())
    return h.hexdigest()


def _map_input_sections(map_path: Path) -> list[tuple[int, int, str]]:
    """(address, size, object) for every input section placed by the linker (GNU ld map)."""
    out: list[tuple[int, int, str]] = []
    if not map_path.is_file():
        return out
    text = map_path.read_text(errors="replace")
    start = text.find("Linker script and memory map")
    lines = text[start:].splitlines() if start >= 0 else []
    pending: str | None = None
    output: str | None = None  # the output section being listed (only allocated code/data count)
    pat_out = re.compile(r"^(\.\S+)")
    pat_full = re.compile(r"^ (\.\S+|COMMON)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    pat_name = re.compile(r"^ (\.\S+|COMMON)\s*$")
    pat_cont = re.compile(r"^\s{16,}0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    for line in lines:
        m = pat_out.match(line)
        if m:
            output, pending = m.group(1), None
            continue
        if output not in FLASH_SECTIONS:
            continue
        m = pat_full.match(line)
        if m:
            out.append((int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip()))
            pending = None
            continue
        m = pat_name.match(line)
        if m:
            pending = m.group(1)
            continue
        if pending:
            m = pat_cont.match(line)
            if m:
                out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3).strip()))
            pending = None
    return [t for t in out if t[1] > 0]


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def breakdown(elf: Path, board=None, map_path: Path | None = None) -> dict:
    """{"flash": {"model", "inference", "application"}, "ram": {"arena", "stack_heap", "application"}}.

    flash.model: `g_model` and any `g_tinyml_*` / `tinyml_w_*` weight arrays. flash.inference:
    code and constants from objects whose path names tflite/tflm/tinyml_aot/tinyml_k_ (from the
    linker map), or symbols whose names say so. ram.arena: `tensor_arena` / `tinyml_arena`.
    ram.stack_heap: the linker script's `.stack` and `.heap` reserves. The rest is application.
    """
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    elf = Path(elf)
    map_path = Path(map_path) if map_path else elf.with_suffix(".map")
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        secs = {s.name: (s["sh_addr"], s["sh_size"]) for s in ef.iter_sections() if s.name}
        symbols = []
        symtab = ef.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for s in symtab.iter_symbols():
                if s["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC") and s["st_size"] > 0:
                    symbols.append((s.name, s["st_value"] & ~1 if s["st_info"]["type"] == "STT_FUNC" else s["st_value"],
                                    s["st_size"]))

    flash_ranges = [(secs[n][0], secs[n][0] + secs[n][1]) for n in FLASH_SECTIONS if n in secs and n != ".data"]
    flash_total = sum(secs[n][1] for n in FLASH_SECTIONS if n in secs)
    ram_total = sum(secs[n][1] for n in RAM_SECTIONS if n in secs)

    def in_flash(a0: int, a1: int) -> int:
        return sum(_overlap(a0, a1, r0, r1) for r0, r1 in flash_ranges)

    # model weights: distinct address ranges of the model symbols (aliases counted once)
    model_ranges = sorted({(a, a + n) for name, a, n in symbols if MODEL_SYMBOL.match(name)})
    model = sum(in_flash(a0, a1) for a0, a1 in model_ranges)

    # inference code: input sections of inference objects, else symbols named after the runtime
    inference = 0
    pieces = _map_input_sections(map_path)
    if pieces:
        candidates = [(a, a + n) for a, n, obj in pieces if INFERENCE_OBJECT.search(obj)]
    else:
        candidates = [(a, a + n) for name, a, n in symbols
                      if INFERENCE_OBJECT.search(name) and not MODEL_SYMBOL.match(name)]
    for a0, a1 in sorted(set(candidates)):
        inside = in_flash(a0, a1)
        if inside:
            inside -= sum(_overlap(a0, a1, m0, m1) for m0, m1 in model_ranges)
            inference += max(0, inside)

    arena_ranges = sorted({(a, a + n) for name, a, n in symbols if ARENA_SYMBOL.search(name)})
    arena = sum(n for a0, a1 in arena_ranges for n in [a1 - a0])
    stack_heap = secs.get(".stack", (0, 0))[1] + secs.get(".heap", (0, 0))[1]

    return {
        "flash": {"model": model, "inference": inference, "application": flash_total - model - inference},
        "ram": {"arena": arena, "stack_heap": stack_heap, "application": ram_total - arena - stack_heap},
    }
