"""What a firmware executes during one inference: the instruction mix, per translation block, under QEMU.

The time-per-inference model (engine/latency.py) needs more than an instruction count: a float
multiply-accumulate costs 3 cycles on a Cortex-M4 where an add costs 1, a taken branch refills the
pipeline, a load from flash waits for the flash. `run(...)` executes a firmware under
`qemu-system-arm -icount` with our TCG plugin (`qemu_plugin/tinyml_profile.c`, built once with the
host's gcc) between two marker functions, and returns a `Profile`:

* every translation block (a straight run of instructions ending at a branch) executed in the window,
  how often it ran and how often it was left by a jump;
* per block, the instructions by class (from `arm-none-eabi-objdump` of the same ELF: ALU, multiply,
  DSP, divide, loads and stores and how many of them follow another load or store (the M4 pipelines
  those), LDM/STM/PUSH/POP registers, branches, VFP arithmetic, VMLA/VFMA, VDIV/VSQRT, VFP loads and
  stores, IT), the bytes of code it spans, and its data accesses to code memory (flash on a board:
  constants and the model's weights) and to RAM.

Blocks that together hold less than `TAIL` of the executed instructions are merged into one, so a
profile stays small (tens of blocks) and is stored as JSON beside the count it explains.
Nothing here imports anything heavy.
"""
from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TinyMLError
from .io import atomic_path, locked

PLUGIN_SRC = Path(__file__).resolve().parent / "qemu_plugin" / "tinyml_profile.c"
CODE_LIMIT = 0x2000_0000  # the MPS2 boards: code and constants below, SRAM above (as flash/RAM on a board)
TAIL = 0.002              # blocks below this share of the instructions are merged into one

# instruction classes (engine/latency.py gives each a cost per core)
CLASSES = ("alu", "mul", "mla", "mull", "dsp", "div", "load", "store", "load2", "store2", "ldm", "stm",
           "branch", "it", "fp", "fp_mac", "fp_div", "fp_load", "fp_store", "fp_ldm", "fp_stm", "fp_xfer",
           "nop", "sys")

_COND = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al")

_ALU = {"add", "adc", "sub", "sbc", "rsb", "rsc", "mov", "mvn", "cmp", "cmn", "tst", "teq", "and", "orr", "eor",
        "bic", "orn", "lsl", "lsr", "asr", "ror", "rrx", "clz", "rbit", "rev", "rev16", "revsh", "sxtb", "sxth",
        "uxtb", "uxth", "ubfx", "sbfx", "bfi", "bfc", "adr", "movw", "movt", "neg", "addw", "subw", "cpy"}
_MUL = {"mul"}
_MLA = {"mla", "mls"}
_MULL = {"smull", "umull", "smlal", "umlal"}
_DIV = {"sdiv", "udiv"}
_DSP_PREFIX = ("smla", "smls", "smul", "smua", "smus", "smmla", "smmls", "smmul", "sadd", "ssub", "sasx", "ssax",
               "uadd", "usub", "uasx", "usax", "qadd", "qsub", "qasx", "qsax", "qdadd", "qdsub", "shadd", "shsub",
               "uhadd", "uhsub", "uqadd", "uqsub", "ssat", "usat", "sxtab", "sxtah", "uxtab", "uxtah", "sxtb16",
               "uxtb16", "pkhbt", "pkhtb", "sel", "usad8", "usada8", "umaal")
_LOAD = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrex", "ldrexb", "ldrexh", "ldrt", "ldrbt", "ldrht", "ldrsbt",
         "ldrsht", "lda", "ldab", "ldah", "ldaex"}
_STORE = {"str", "strb", "strh", "strex", "strexb", "strexh", "strt", "strbt", "strht", "stl", "stlb", "stlh"}
_LDM = {"ldm", "ldmia", "ldmfd", "ldmdb", "ldmea", "pop"}
_STM = {"stm", "stmia", "stmea", "stmdb", "stmfd", "push"}
_BRANCH = {"b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"}
_FP = {"vadd", "vsub", "vmul", "vnmul", "vneg", "vabs", "vcvt", "vcvtr", "vcvta", "vcvtn", "vcvtp", "vcvtm",
       "vcvtb", "vcvtt", "vcmp", "vcmpe", "vsel", "vmaxnm", "vminnm", "vrinta", "vrintn", "vrintp", "vrintm",
       "vrintr", "vrintx", "vrintz", "vseleq", "vselge", "vselgt", "vselvs"}
_FP_MAC = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"}
_FP_DIV = {"vdiv", "vsqrt"}
_SYS = {"bkpt", "svc", "wfi", "wfe", "sev", "yield", "cpsid", "cpsie", "msr", "mrs", "dmb", "dsb", "isb", "pld",
        "pldw", "pli", "clrex", "udf"}

_REG = re.compile(r"\b(r\d{1,2}|sb|sl|fp|ip|sp|lr|pc)\b")
_REGLIST = re.compile(r"\{([^}]*)\}")
_ALIAS = {"sb": "r9", "sl": "r10", "fp": "r11", "ip": "r12"}


def _reg(r: str) -> str:
    return _ALIAS.get(r, r)


_REGLIST_D = re.compile(r"\{\s*d\d")


def _count_regs(operands: str) -> int:
    """Registers in a {list} (r4-r7 and s16-s23 ranges count each)."""
    m = _REGLIST.search(operands)
    if not m:
        return 1
    n = 0
    for part in m.group(1).split(","):
        part = part.strip()
        if "-" in part:
            a, b = (x.strip() for x in part.split("-", 1))
            try:
                n += int(re.sub(r"\D", "", b)) - int(re.sub(r"\D", "", a)) + 1
            except ValueError:
                n += 1
        elif part:
            n += 1
    return max(n, 1)


@functools.lru_cache(maxsize=4096)
def classify(mnemonic: str, operands: str = "") -> tuple[str, int, bool]:
    """(class, registers moved, writes pc) of one Thumb-2/VFP instruction as objdump prints it."""
    mn = mnemonic.lower().split(".", 1)[0] if mnemonic.lower().startswith("v") else mnemonic.lower()
    mn = re.sub(r"\.(w|n)$", "", mn)
    ops = operands.lower()
    writes_pc = False

    def base_of(m: str) -> str | None:
        for cand in (m, m[:-1] if m.endswith("s") else None):
            if cand and _known(cand):
                return cand
        for c in _COND:
            if m.endswith(c) and len(m) > len(c):
                b = m[: -len(c)]
                for cand in (b, b[:-1] if b.endswith("s") else None):
                    if cand and _known(cand):
                        return cand
        return None

    if mn.startswith("it") and set(mn[2:]) <= {"t", "e"}:
        return "it", 1, False
    b = base_of(mn)
    if b is None:
        return "alu", 1, False  # unknown: the commonest cost
    if b in _BRANCH:
        return "branch", 1, True
    if b in _LDM:
        n = _count_regs(ops)
        writes_pc = "pc" in _REGLIST.search(ops).group(1) if _REGLIST.search(ops) else False
        return "ldm", n, writes_pc
    if b in _STM:
        return "stm", _count_regs(ops), False
    if b == "ldrd":
        return "load2", 2, False
    if b == "strd":
        return "store2", 2, False
    if b in _LOAD:
        writes_pc = ops.startswith("pc")
        return "load", 1, writes_pc
    if b in _STORE:
        return "store", 1, False
    if b in _MUL:
        return "mul", 1, False
    if b in _MLA:
        return "mla", 1, False
    if b in _MULL:
        return "mull", 1, False
    if b in _DIV:
        return "div", 1, False
    if b.startswith(_DSP_PREFIX):
        return "dsp", 1, False
    if b in ("vldr",):
        return "fp_load", 1, False
    if b in ("vstr",):
        return "fp_store", 1, False
    if b in ("vldm", "vldmia", "vldmdb", "vpop"):  # one cycle per word: a D register is two
        return "fp_ldm", _count_regs(ops) * (2 if _REGLIST_D.search(ops) else 1), False
    if b in ("vstm", "vstmia", "vstmdb", "vpush"):
        return "fp_stm", _count_regs(ops) * (2 if _REGLIST_D.search(ops) else 1), False
    if b in _FP_MAC:
        return "fp_mac", 1, False
    if b in _FP_DIV:
        return "fp_div", 1, False
    if b in ("vmrs", "vmsr"):
        return "fp_xfer", 1, False
    if b == "vmov":
        # between core and FP registers (a transfer) or within the FPU (an FP op)
        core = bool(_REG.search(ops))
        return ("fp_xfer" if core else "fp"), 1, False
    if b in _FP:
        return "fp", 1, False
    if b == "nop":
        return "nop", 1, False
    if b in _SYS:
        return "sys", 1, False
    if b in _ALU:
        writes_pc = ops.startswith("pc")
        return ("branch" if writes_pc else "alu"), 1, writes_pc
    return "alu", 1, False


@functools.lru_cache(maxsize=None)
def _known(m: str) -> bool:
    return (m in _ALU or m in _MUL or m in _MLA or m in _MULL or m in _DIV or m in _LOAD or m in _STORE or m in _LDM
            or m in _STM or m in _BRANCH or m in _FP or m in _FP_MAC or m in _FP_DIV or m in _SYS
            or m in ("ldrd", "strd", "vldr", "vstr", "vldm", "vldmia", "vldmdb", "vpop", "vstm", "vstmia", "vstmdb",
                     "vpush", "vmrs", "vmsr", "vmov", "nop")
            or m.startswith(_DSP_PREFIX))


def _dest_and_base(operands: str) -> tuple[str | None, str | None]:
    """(destination register, base register of the address) of a load/store, as objdump prints it."""
    regs = [_reg(r) for r in _REG.findall(operands.lower())]
    m = re.search(r"\[\s*(r\d{1,2}|sb|sl|fp|ip|sp|pc)", operands.lower())
    return (regs[0] if regs else None), (_reg(m.group(1)) if m else None)


def _writeback(operands: str) -> bool:
    """A load/store that updates its base register (pre-indexed `[rn, #i]!` or post-indexed `[rn], #i`)."""
    o = operands.replace(" ", "")
    return "]!" in o or "]," in o


# ----------------------------------------------------------------------------------- disassembly
_LINE = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{4}(?: [0-9a-f]{4})?\s+)?([a-z][\w.]*)\s*(.*?)\s*$")


def disassemble(elf: Path) -> dict[int, tuple[str, str]]:
    """{address: (mnemonic, operands)} of every instruction in the ELF's code (arm-none-eabi-objdump)."""
    objdump = shutil.which("arm-none-eabi-objdump")
    if not objdump:
        raise TinyMLError("arm-none-eabi-objdump was not found on PATH: sudo apt-get install binutils-arm-none-eabi "
                          "(it comes with gcc-arm-none-eabi)")
    p = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(elf)], capture_output=True, text=True)
    if p.returncode != 0:
        raise TinyMLError(f"arm-none-eabi-objdump could not read {elf}: {p.stderr.strip()[:200]}")
    out: dict[int, tuple[str, str]] = {}
    for line in p.stdout.splitlines():
        m = _LINE.match(line)
        if m and not m.group(2).startswith("."):
            ops = m.group(3).split(";", 1)[0].split("@", 1)[0].strip()
            out[int(m.group(1), 16)] = (m.group(2), ops)
    return out


# ----------------------------------------------------------------------------------- the plugin
def plugin(cache_dir: Path) -> Path:
    """The profiling plugin as a shared object, compiled once per source with the host's gcc."""
    src = PLUGIN_SRC.read_bytes()
    so = Path(cache_dir) / f"tinyml_profile-{hashlib.sha256(src).hexdigest()[:12]}.so"
    if so.is_file():
        return so
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise Unsupported("the host C compiler gcc was not found on PATH: sudo apt-get install gcc (the time "
                          "per inference is modelled from an instruction profile that a small QEMU plugin "
                          "records; gcc builds it once)")
    so.parent.mkdir(parents=True, exist_ok=True)
    with locked(so.parent / ".plugin.lock"):
        if so.is_file():
            return so
        with atomic_path(so, suffix=".so") as tmp:
            p = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(PLUGIN_SRC)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise TinyMLError(f"could not build the QEMU profiling plugin {PLUGIN_SRC}: {p.stderr.strip()[-400:]}")
    return so


def symbol_address(elf: Path, name: str) -> int | None:
    """The address of function `name` in the ELF (Thumb bit cleared), or None."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            return None
        for s in symtab.get_symbol_by_name(name) or []:
            if s["st_info"]["type"] == "STT_FUNC":
                return int(s["st_value"]) & ~1
    return None


@dataclass
class Block:
    execs: int
    taken: int            # exits by a jump (the next block did not start where this one ended)
    bytes: int            # code bytes the block spans
    classes: dict         # class -> instructions per execution (ldm/stm/fp_ldm/fp_stm: registers per execution)
    insns: int            # instructions per execution
    multi: int = 0        # LDM/STM/PUSH/POP/VLDM/VSTM instructions per execution
    paired: int = 0       # loads/stores per execution that follow another load/store (the M4 pipelines them)
    code_reads: int = 0   # data reads from code memory (flash on a board), total over all executions
    code_reads_fp: int = 0  # those made by VFP loads (VLDR/VLDM: float weights, whose use waits for them)
    ram_reads: int = 0
    writes: int = 0

    def to_list(self) -> list:
        return [self.execs, self.taken, self.bytes, self.insns, self.multi, self.paired, self.code_reads,
                self.code_reads_fp, self.ram_reads, self.writes, {k: v for k, v in sorted(self.classes.items()) if v}]

    @classmethod
    def from_list(cls, v: list) -> "Block":
        return cls(execs=v[0], taken=v[1], bytes=v[2], insns=v[3], multi=v[4], paired=v[5], code_reads=v[6],
                   code_reads_fp=v[7], ram_reads=v[8], writes=v[9], classes=dict(v[10]))


@dataclass
class Profile:
    instructions: int
    blocks: list[Block] = field(default_factory=list)
    functions: dict = field(default_factory=dict)  # the heaviest functions: name -> instructions

    def to_dict(self) -> dict:
        return {"version": VERSION, "instructions": self.instructions, "functions": self.functions,
                "blocks": [b.to_list() for b in self.blocks], "block_fields": list(BLOCK_FIELDS)}

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return cls(instructions=int(d["instructions"]), blocks=[Block.from_list(b) for b in d["blocks"]],
                   functions=dict(d.get("functions") or {}))

    def totals(self) -> dict:
        """Executed instructions (registers for LDM/STM) by class, over the whole window."""
        c: Counter = Counter()
        for b in self.blocks:
            for k, v in b.classes.items():
                c[k] += v * b.execs
        return dict(c)


_PAIRABLE = {"load", "store", "fp_load", "fp_store"}
_PAIRED_GAINS = {"load", "fp_load", "fp_store"}  # what a preceding load makes one cycle cheaper
VERSION = 3
BLOCK_FIELDS = ("execs", "taken", "bytes", "insns", "multi", "paired", "code_reads", "code_reads_fp", "ram_reads",
                "writes", "classes")


def parse(text: str, dis: dict[int, tuple[str, str]], functions: list[tuple[int, int, str]] | None = None) -> Profile:
    """The plugin's output, classified with the ELF's disassembly."""
    merged: dict[tuple, list] = {}
    for line in text.splitlines():
        if not line.startswith("tb "):
            continue
        parts = line.split()
        execs, taken = int(parts[3]), int(parts[4])
        insns = []
        for tok in parts[5:]:
            f = tok.split(":")
            insns.append((int(f[0], 16), int(f[1]), *(int(x) for x in f[2:5])) if len(f) == 5 else
                         (int(f[0], 16), int(f[1]), 0, 0, 0))
        key = tuple((a, s) for a, s, *_ in insns)
        if key in merged:
            m = merged[key]
            m[0] += execs
            m[1] += taken
            for i, (_a, _s, c, r, w) in enumerate(insns):
                m[2][i] = (m[2][i][0] + c, m[2][i][1] + r, m[2][i][2] + w)
        else:
            merged[key] = [execs, taken, [(c, r, w) for _a, _s, c, r, w in insns]]
    blocks = []
    for key, (execs, taken, mem) in merged.items():
        classes: Counter = Counter()
        multi = paired = fp_reads = 0
        prev = None  # (class, dest) of the previous instruction, for load/store pipelining
        for i, (addr, size) in enumerate(key):
            mn, ops = dis.get(addr, ("nop", ""))
            cls, nregs, _pc = classify(mn, ops)
            if cls in ("fp_load", "fp_ldm"):
                fp_reads += mem[i][0]
            classes[cls] += nregs if cls in ("ldm", "stm", "fp_ldm", "fp_stm") else 1
            if cls in ("ldm", "stm", "fp_ldm", "fp_stm"):
                multi += 1
            if cls in _PAIRABLE:
                # Cortex-M4 TRM 3.3.2: a load pipelines into a following load or store (its address phase
                # overlaps the load's data phase), unless the load updated its base or the next address
                # needs the loaded register; nothing pipelines after a store. A store already costs its
                # one cycle (the write buffer), so only a load, or a VFP store, is made one cycle cheaper.
                dest, base = _dest_and_base(ops)
                if prev is not None and cls in _PAIRED_GAINS and prev[1] != base:
                    paired += 1
                # (a VFP load's destination is an FP register: it can never be the next address's base)
                prev = ((cls, dest if cls == "load" else None)
                        if cls in ("load", "fp_load") and not _writeback(ops) else None)
            else:
                prev = None
        code_bytes = (key[-1][0] + key[-1][1] - key[0][0]) if key else 0
        blocks.append(Block(execs=execs, taken=taken, bytes=code_bytes, classes=dict(classes), insns=len(key),
                            multi=multi, paired=paired, code_reads=sum(m[0] for m in mem), code_reads_fp=fp_reads,
                            ram_reads=sum(m[1] for m in mem), writes=sum(m[2] for m in mem)))
    total = sum(b.execs * b.insns for b in blocks)
    blocks.sort(key=lambda b: -b.execs * b.insns)
    kept, rest = [], []
    for b in blocks:
        (kept if b.execs * b.insns >= TAIL * total else rest).append(b)
    if rest:
        kept.append(_merge(rest))
    funcs: Counter = Counter()
    if functions:
        import bisect

        starts = [f[0] for f in functions]
        for key, (execs, _t, _m) in merged.items():
            i = bisect.bisect_right(starts, key[0][0]) - 1
            name = functions[i][2] if i >= 0 and key[0][0] < functions[i][0] + functions[i][1] else "?"
            funcs[name] += execs * len(key)
    return Profile(instructions=total, blocks=kept,
                   functions={k: v for k, v in funcs.most_common(12)})


def _merge(blocks: list[Block]) -> Block:
    """Many small blocks as one, per execution averaged so that every total is kept."""
    execs = sum(b.execs for b in blocks)
    n = max(execs, 1)
    classes: Counter = Counter()
    for b in blocks:
        for k, v in b.classes.items():
            classes[k] += v * b.execs
    return Block(execs=execs, taken=sum(b.taken for b in blocks),
                 bytes=round(sum(b.bytes * b.execs for b in blocks) / n),
                 classes={k: v / n for k, v in classes.items()},
                 insns=sum(b.insns * b.execs for b in blocks) / n,
                 multi=sum(b.multi * b.execs for b in blocks) / n,
                 paired=sum(b.paired * b.execs for b in blocks) / n,
                 code_reads=sum(b.code_reads for b in blocks), code_reads_fp=sum(b.code_reads_fp for b in blocks),
                 ram_reads=sum(b.ram_reads for b in blocks),
                 writes=sum(b.writes for b in blocks))


def _functions(elf: Path) -> list[tuple[int, int, str]]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    out = []
    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for s in symtab.iter_symbols():
                if s["st_info"]["type"] == "STT_FUNC" and s["st_size"]:
                    out.append((int(s["st_value"]) & ~1, int(s["st_size"]), s.name))
    return sorted(out)


BEGIN, END = "tinyml_profile_begin", "tinyml_profile_end"  # the markers our target runners call around an inference


def plugin_refused(stderr: str) -> bool:
    """QEMU's stderr says it would not load the plugin (built without plugins, or an API version it refuses)."""
    low = stderr.lower()
    return "plugin" in low and any(w in low for w in ("invalid", "not enabled", "cannot", "unsupported", "api version",
                                                      "failed to load"))


class Unsupported(TinyMLError):
    """This machine cannot profile: no host C compiler for the plugin, or a QEMU built without TCG plugins."""


def inference(elf: Path, cache_dir: Path, *, inferences: int, instructions_per_inference: int | None,
              machine: str = "mps2-an386", args: list[str] | None = None, timeout: float = 600) -> dict:
    """The profile of one inference (the runner's inferences between our markers, averaged) as a dict for
    an artifact, checked against the timer's count of the same runs (a plugin that missed code would
    make the time model lie). Where this machine cannot profile, {"unavailable": why}: the time model
    then falls back to the instruction count, with its wider band, and says so."""
    try:
        prof = run(elf, cache_dir, begin=BEGIN, end=END, machine=machine, args=args, timeout=timeout)
    except Unsupported as e:
        return {"unavailable": str(e)}
    d = prof.to_dict()
    d["inferences"] = int(inferences)
    per = prof.instructions / max(inferences, 1)
    if instructions_per_inference and abs(per - instructions_per_inference) > 0.01 * instructions_per_inference + 50:
        raise TinyMLError(f"{elf}: the instruction profile counts {per:,.0f} instructions per inference where the "
                          f"timer counts {instructions_per_inference:,}: the profile is not of these inferences")
    return d


def cache_dir_for(core_dir: Path) -> Path:
    """Where the plugin is built: beside the project's PlatformIO core, in the build folder."""
    return Path(core_dir).resolve().parent / ".tinyml" / "qemu-plugin"


def run(elf: Path, cache_dir: Path, *, begin: str, end: str, machine: str = "mps2-an386",
        args: list[str] | None = None, timeout: float = 600, work_dir: Path | None = None) -> Profile:
    """Profile `elf` under QEMU between the first call of function `begin` and the next call of `end`.

    `args` become the semihosting command line (as engine.qemu.run_qemu). Raises TinyMLError when the
    markers are missing, QEMU fails, or nothing was executed between them.
    """
    from . import qemu

    elf = Path(elf)
    b, e = symbol_address(elf, begin), symbol_address(elf, end)
    if b is None or e is None:
        raise TinyMLError(f"{elf}: no function {begin if b is None else end!r} to mark the profiled window")
    out = Path(work_dir or elf.parent) / "profile.txt"
    out.unlink(missing_ok=True)
    so = plugin(cache_dir)
    r = qemu.run_qemu(elf, timeout=timeout, machine=machine, args=args,
                      plugin=f"{so},begin={b:#x},end={e:#x},code_limit={CODE_LIMIT:#x},out={out}")
    err = r.get("stderr") or ""
    if not out.is_file() and plugin_refused(err):
        # e.g. a QEMU built without plugins, or QEMU 9.0 and later, which refuse plugin API version 1
        raise Unsupported(f"this qemu-system-arm cannot load the profiling plugin ({err.strip().splitlines()[0][:160]}): "
                          f"the time model uses the instruction count alone (QEMU 4.2 to 8.2 built with plugins, as "
                          f"Debian 12's 7.2, profiles the instruction mix)")
    if r["timed_out"] or r["exit_code"] != 0 or not out.is_file():
        tail = "\n".join((r["stdout"] or "").strip().splitlines()[-8:])
        raise TinyMLError(f"profiling {elf} under QEMU failed (exit {r['exit_code']}"
                          f"{', timed out' if r['timed_out'] else ''}); last output:\n{tail}")
    prof = parse(out.read_text(), disassemble(elf), _functions(elf))
    out.unlink(missing_ok=True)
    if prof.instructions <= 0:
        raise TinyMLError(f"profiling {elf}: nothing ran between {begin} and {end}")
    return prof
