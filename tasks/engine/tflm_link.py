"""The real TFLite Micro, linked from the user's own library tree (never copied into this project).

A TFLM tree is referenced by path: `[models.<m>.firmware] tflm = { library = "..." }`, the
environment variable TINYML_TFLM_DIR, or the one PlatformIO downloaded into a sketch's
`.pio/libdeps/<env>/` (config.py resolves which). Two layouts are understood:

* **arduino**: the Arduino library `Arduino_TensorFlowLite` (tflite-micro-arduino-examples, what a
  sketch's `lib_deps` names): `<root>/library.properties`, sources under `<root>/src/` (`.cpp`),
  includes relative to `src/`. Its export script turned TF_LITE_STATIC_MEMORY / NDEBUG / CMSIS_NN
  into `ARDUINO`, so `-DARDUINO` is required even bare metal. It ships only the CMSIS-NN variants
  of add, conv, depthwise_conv, fully_connected, mul, pooling, softmax and svdf: reference kernels
  need those eight `.cc` files from a tflite-micro checkout of the matching commit
  (`reference_kernels = "<tflite-micro>"`).
* **upstream**: a tflite-micro repository (`tensorflow/lite/micro/micro_interpreter.cc`) with its
  third-party downloads (flatbuffers, gemmlowp, ruy and, for CMSIS-NN, cmsis_nn) in
  `tensorflow/lite/micro/tools/make/downloads/` (where `make third_party_downloads` puts them)
  or `<root>/downloads/`.

`build_library` compiles the tree once per (tree content, core flags, kernel set) into a static
`libtflm.a` with exactly the local platform's flags (`pio_platform/flags.json`), cached under the
build folder (or TINYML_TFLM_CACHE), so each firmware costs only its own sources and a link;
`--gc-sections` keeps only what the registered ops reach. `app_settings` gives what a PlatformIO
project adds to link it: include folders, defines, `-L/-l`, and our port file (DebugLog and a
timer: the glue the Arduino core or a vendor port normally provides).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TinyMLError
from .io import locked

PORT_DIR = Path(__file__).resolve().parent / "tflm_port"
FLAGS_FILE = Path(__file__).resolve().parent / "pio_platform" / "flags.json"
KERNEL_SETS = ("cmsis_nn", "reference")

# the eight kernels the Arduino export ships only as CMSIS-NN variants
ARDUINO_CMSIS_ONLY = ("add", "conv", "depthwise_conv", "fully_connected", "mul", "pooling", "softmax", "svdf")

# what a bare-metal build must not compile from an Arduino tree's src/ (prefixes relative to src/)
ARDUINO_EXCLUDE = (
    "peripherals/",                                   # Arduino board drivers (Arduino.h, nRF52840 I2S)
    "test_over_serial/",                              # Arduino serial test harness
    "third_party/kissfft/",                           # audio front end only
    "tensorflow/lite/experimental/",                  # audio microfrontend
    "tensorflow/lite/micro/debug_log.cpp",            # our port provides DebugLog
    "tensorflow/lite/micro/system_setup.cpp",         # Arduino Serial DebugLog / InitializeTarget
    "tensorflow/lite/micro/micro_time.cpp",           # calls the Arduino peripherals' timer
    "tensorflow/lite/micro/test_helpers.cpp",
    "tensorflow/lite/micro/test_helper_custom_ops.cpp",
    "tensorflow/lite/micro/fake_micro_context.cpp",
    "tensorflow/lite/micro/mock_micro_graph.cpp",
    "tensorflow/lite/micro/kernels/kernel_runner.cpp",
)
ARDUINO_DEFINES = ("ARDUINO", "TF_LITE_STATIC_MEMORY", "TF_LITE_MCU_DEBUG_LOG", "NDEBUG")
UPSTREAM_DEFINES = ("TF_LITE_STATIC_MEMORY", "TF_LITE_MCU_DEBUG_LOG", "NDEBUG", "TF_LITE_DISABLE_X86_NEON",
                    "ARM_NN_ENABLE_F16=0", "ARM_NN_ENABLE_F32=0")
_UPSTREAM_DOWNLOADS = ("tensorflow/lite/micro/tools/make/downloads", "downloads")


@dataclass(frozen=True)
class Tree:
    """A TFLite Micro source tree as found on disk."""
    root: Path
    layout: str                         # "arduino" | "upstream"
    base: Path                          # folder the include paths and the source globs start from
    include_dirs: tuple[Path, ...]
    downloads: Path | None              # upstream: the third-party folder
    debuglog_api: str                   # "legacy" (DebugLog(const char*)) | "va_list" (2023-07 and later)
    per_channel_fc: bool                # FULLY_CONNECTED honours per-channel weight scales (2024-09 and later)
    kernel_sets: tuple[str, ...]        # what can be built from it
    reference_kernels: Path | None = None
    version: str = ""
    missing: dict = field(default_factory=dict)  # kernel set -> why it cannot be built

    def describe(self) -> str:
        return f"{self.layout} tree {self.root}" + (f" ({self.version})" if self.version else "")


def _is_arduino(p: Path) -> bool:
    return (p / "src" / "tensorflow" / "lite" / "micro" / "micro_interpreter.cpp").is_file()


def _is_upstream(p: Path) -> bool:
    return (p / "tensorflow" / "lite" / "micro" / "micro_interpreter.cc").is_file()


def looks_like_tflm(p: Path) -> bool:
    return _is_arduino(p) or _is_upstream(p)


EXPECTED = ("an Arduino_TensorFlowLite library (src/tensorflow/lite/micro/micro_interpreter.cpp, e.g. "
            "tflite-micro-arduino-examples or the copy PlatformIO puts in .pio/libdeps/<env>/) or a tflite-micro "
            "repository (tensorflow/lite/micro/micro_interpreter.cc, with its third-party downloads)")


def find_tree(path: str | os.PathLike, *, reference_kernels: str | os.PathLike | None = None,
              what: str = "TFLM library") -> Tree:
    """The TFLM tree at `path`; a TinyMLError naming the path and what was expected otherwise."""
    p = Path(path).expanduser()
    if not p.exists():
        raise TinyMLError(f"{what} {p}: the path does not exist; expected {EXPECTED}")
    if not p.is_dir():
        raise TinyMLError(f"{what} {p}: not a folder; expected {EXPECTED}")
    p = p.resolve()
    if not looks_like_tflm(p) and p.name == "src" and _is_arduino(p.parent):
        p = p.parent  # the library's src/ folder was given
    ref = None
    if reference_kernels is not None:
        ref = Path(reference_kernels).expanduser()
        kdir = ref / "tensorflow" / "lite" / "micro" / "kernels"
        missing = [k for k in ARDUINO_CMSIS_ONLY if not (kdir / f"{k}.cc").is_file()]
        if not ref.is_dir() or missing:
            raise TinyMLError(f"TFLM reference_kernels {ref}: expected a tflite-micro checkout holding "
                              f"tensorflow/lite/micro/kernels/{{{','.join(ARDUINO_CMSIS_ONLY)}}}.cc"
                              + (f" (missing: {', '.join(m + '.cc' for m in missing)})" if ref.is_dir() else
                                 " (the path does not exist)"))
        ref = ref.resolve()
    if _is_arduino(p):
        src = p / "src"
        micro = src / "tensorflow" / "lite" / "micro"
        sets, missing = [], {}
        if (micro / "kernels" / "cmsis_nn").is_dir() and (src / "third_party" / "cmsis_nn" / "Source").is_dir():
            sets.append("cmsis_nn")
        else:
            missing["cmsis_nn"] = f"{micro / 'kernels' / 'cmsis_nn'} or {src / 'third_party/cmsis_nn/Source'} is missing"
        own = [k for k in ARDUINO_CMSIS_ONLY if not (micro / "kernels" / f"{k}.cpp").is_file()]
        if not own or ref is not None:
            sets.append("reference")
        else:
            missing["reference"] = (
                f"this Arduino export ships only the CMSIS-NN variants of {', '.join(own)}; reference kernels need "
                f"those .cc files from a tflite-micro checkout of the matching commit: set "
                f"tflm = {{ reference_kernels = \"<tflite-micro>\" }}")
        version = ""
        props = p / "library.properties"
        if props.is_file():
            m = re.search(r"^version=(.*)$", props.read_text(errors="replace"), re.M)
            version = f"Arduino_TensorFlowLite {m.group(1).strip()}" if m else ""
        return Tree(root=p, layout="arduino", base=src, include_dirs=(src,), downloads=None,
                    debuglog_api=_debuglog_api(micro), per_channel_fc=_per_channel(micro),
                    kernel_sets=tuple(sets), reference_kernels=ref, version=version, missing=missing)
    if _is_upstream(p):
        micro = p / "tensorflow" / "lite" / "micro"
        dl = next((p / d for d in _UPSTREAM_DOWNLOADS if (p / d / "flatbuffers" / "include").is_dir()), None)
        if dl is None:
            raise TinyMLError(
                f"{what} {p}: a tflite-micro repository without its third-party downloads: expected "
                f"flatbuffers/include, gemmlowp and ruy in {p / _UPSTREAM_DOWNLOADS[0]} (run `make -f "
                f"tensorflow/lite/micro/tools/make/Makefile third_party_downloads` there) or in {p / 'downloads'}")
        for need in ("gemmlowp", "ruy"):
            if not (dl / need).is_dir():
                raise TinyMLError(f"{what} {p}: {dl / need} is missing (a third-party download tflite-micro needs)")
        sets, missing = ["reference"], {}
        if (dl / "cmsis_nn" / "Source").is_dir():
            sets.insert(0, "cmsis_nn")
        else:
            missing["cmsis_nn"] = f"{dl / 'cmsis_nn' / 'Source'} is missing (tflite-micro downloads CMSIS-NN there)"
        incs = (p, dl / "flatbuffers" / "include", dl / "gemmlowp", dl / "ruy", dl / "cmsis_nn", dl / "cmsis_nn" / "Include")
        return Tree(root=p, layout="upstream", base=p, include_dirs=incs, downloads=dl,
                    debuglog_api=_debuglog_api(micro), per_channel_fc=_per_channel(micro),
                    kernel_sets=tuple(sets), reference_kernels=None, version=_git_version(p), missing=missing)
    raise TinyMLError(f"{what} {p} does not hold TFLite Micro: expected {EXPECTED}")


def _debuglog_api(micro: Path) -> str:
    h = micro / "debug_log.h"
    return "va_list" if h.is_file() and "va_list" in h.read_text(errors="replace") else "legacy"


def _per_channel(micro: Path) -> bool:
    h = micro / "kernels" / "fully_connected.h"
    return h.is_file() and "is_per_channel" in h.read_text(errors="replace")


def _git_version(root: Path) -> str:
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return "tflite-micro " + (root / ".git" / ref[5:]).read_text().strip()[:12]
        return "tflite-micro " + ref[:12]
    except OSError:
        return ""


def fingerprint(tree: Tree) -> str:
    """Cheap identity of the tree's sources (names, sizes, modification times): for doit's uptodate."""
    h = hashlib.sha256(f"{tree.root}|{tree.layout}|{tree.reference_kernels}".encode())
    for base in (tree.base,) + ((tree.downloads,) if tree.downloads else ()) + (
            (tree.reference_kernels,) if tree.reference_kernels else ()):
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for n in sorted(files):
                if n.endswith((".cc", ".cpp", ".c", ".h")):
                    try:
                        st = os.stat(os.path.join(dirpath, n))
                    except OSError:
                        continue
                    h.update(f"{dirpath}/{n}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------- sources
def sources(tree: Tree, kernels: str) -> list[Path]:
    """The files a bare-metal `libtflm.a` of this kernel set compiles."""
    if kernels not in tree.kernel_sets:
        why = tree.missing.get(kernels) or f"allowed: {', '.join(KERNEL_SETS)}"
        raise TinyMLError(f"TFLM kernels {kernels!r} cannot be built from the {tree.describe()}: {why}")
    if tree.layout == "arduino":
        out = []
        for p in sorted(tree.base.rglob("*")):
            if p.suffix not in (".cpp", ".cc", ".c") or not p.is_file():
                continue
            rel = p.relative_to(tree.base).as_posix()
            if rel.startswith(ARDUINO_EXCLUDE):
                continue
            if rel.startswith(("tensorflow/lite/micro/kernels/cmsis_nn/", "third_party/cmsis_nn/")) and kernels != "cmsis_nn":
                continue
            out.append(p)
        if kernels == "reference":
            kdir = tree.base / "tensorflow" / "lite" / "micro" / "kernels"
            for k in ARDUINO_CMSIS_ONLY:
                if not (kdir / f"{k}.cpp").is_file():
                    out.append(tree.reference_kernels / "tensorflow" / "lite" / "micro" / "kernels" / f"{k}.cc")
        return out

    def keep(p: Path) -> bool:
        n = p.name
        return not (n.endswith(("_test.cc", "_test.c", "_benchmark.cc")) or "test_helper" in n)

    out = []
    tf = tree.root / "tensorflow"
    for p in sorted(tf.rglob("*")):
        if p.suffix not in (".cc", ".c") or not p.is_file():
            continue
        rel = p.relative_to(tree.root).as_posix()
        if rel.startswith(("tensorflow/lite/experimental/", "tensorflow/lite/micro/")) or rel == "tensorflow/lite/array.cc":
            continue
        if keep(p):
            out.append(p)
    micro = tf / "lite" / "micro"
    for sub in ("", "arena_allocator", "memory_planner", "tflite_bridge"):
        out += [p for p in sorted((micro / sub).glob("*.cc")) if keep(p) and p.name not in
                ("fake_micro_context.cc", "mock_micro_graph.cc", "debug_log.cc")]
    kdir = micro / "kernels"
    ks = {p.name: p for p in sorted(kdir.glob("*.cc")) if keep(p) and p.name not in ("kernel_runner.cc", "conv_test_common.cc")}
    if kernels == "cmsis_nn":
        for p in sorted((kdir / "cmsis_nn").glob("*.cc")):
            ks[p.name] = p
        nn = tree.downloads / "cmsis_nn" / "Source"
        out += [p for p in sorted(nn.rglob("*.c")) if not p.name.endswith(("_f16.c", "_f32.c"))]
    out += list(ks.values())
    return out


def defines(tree: Tree, kernels: str) -> list[str]:
    if tree.layout == "arduino":
        return list(ARDUINO_DEFINES)
    return list(UPSTREAM_DEFINES) + (["CMSIS_NN"] if kernels == "cmsis_nn" else [])


def platform_flags() -> dict:
    return json.loads(FLAGS_FILE.read_text())


def compile_flags(tree: Tree, kernels: str, machine: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(common, c-only, c++-only) flags: the local platform's, without debug info and warnings."""
    f = platform_flags()
    cc = [x for x in f["ccflags"] if x not in ("-g", "-Wall")] + ["-w"]
    common = list(machine) + cc + [f"-D{d}" for d in defines(tree, kernels)] + [f"-I{d}" for d in tree.include_dirs]
    return common, list(f["cflags"]), list(f["cxxflags"])


# ----------------------------------------------------------------------------------- the archive
@dataclass(frozen=True)
class Library:
    archive: Path
    key: str
    kernels: str
    tree: Tree
    n_sources: int
    cached: bool


def default_cache(build_dir: Path) -> Path:
    env = os.environ.get("TINYML_TFLM_CACHE")
    return Path(env).expanduser().resolve() if env else Path(build_dir).resolve() / ".tinyml" / "tflm-lib"


def _gcc_version() -> str:
    gcc = shutil.which("arm-none-eabi-gcc")
    if not gcc:
        raise TinyMLError("arm-none-eabi-gcc was not found on PATH: sudo apt-get install gcc-arm-none-eabi "
                          "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    return subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


_ERROR_LINE = re.compile(r"^(\S+?:\d+(?::\d+)?: (?:fatal )?error: .*)$", re.M)


def library_key(tree: Tree, kernels: str, machine: list[str]) -> tuple[str, list[Path], list[str], list[str], list[str]]:
    files = sources(tree, kernels)
    common, c, cxx = compile_flags(tree, kernels, machine)
    h = hashlib.sha256(json.dumps([_gcc_version(), common, c, cxx, kernels, tree.layout]).encode())
    for f in files:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    # headers matter too: every .h under the tree (and the downloads), by content
    for base in (tree.base,) + ((tree.downloads,) if tree.downloads else ()):
        for p in sorted(base.rglob("*.h")):
            h.update(p.relative_to(base).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16], files, common, c, cxx


def build_library(tree: Tree, kernels: str, machine: list[str], cache_root: Path, *, core: str = "",
                  jobs: int | None = None, quiet: bool = False) -> Library:
    """`libtflm.a` of `tree` with `kernels` for these machine flags; built once, then cached.

    A compile error raises a TinyMLError with the first compiler error and its file; the failure
    is remembered for the same key so later variants fail at once instead of recompiling.
    """
    key, files, common, c, cxx = library_key(tree, kernels, machine)
    tag = re.sub(r"[^A-Za-z0-9+._-]", "_", core or "-".join(m.split("=")[-1] for m in machine if m.startswith("-mcpu")))
    out = Path(cache_root) / f"{tree.layout}-{kernels}-{tag}-{key}"
    lib = out / "libtflm.a"
    failed = out / "failed.json"
    with locked(Path(cache_root) / f".{out.name}.lock"):
        if lib.is_file():
            return Library(lib, key, kernels, tree, len(files), True)
        if failed.is_file():
            raise TinyMLError(json.loads(failed.read_text())["message"] + " (remembered from an earlier attempt; "
                              f"delete {out} to retry)")
        if not quiet:
            print(f"compiling TFLite Micro once ({len(files)} sources, {kernels} kernels, {' '.join(machine)}) from "
                  f"{tree.root} into {out}; this takes minutes, later firmware reuses it", flush=True)
        objdir = out / "obj"
        shutil.rmtree(objdir, ignore_errors=True)
        objdir.mkdir(parents=True)
        t0 = time.time()

        def compile_one(i_f):
            i, f = i_f
            obj = objdir / f"{i:04d}_{f.stem}.o"
            tool = "arm-none-eabi-gcc" if f.suffix == ".c" else "arm-none-eabi-g++"
            cmd = [tool] + common + (c if f.suffix == ".c" else cxx) + ["-c", str(f), "-o", str(obj)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                return f, None, p.stderr
            return f, obj, ""

        objs: list[Path] = []
        error = None
        with cf.ThreadPoolExecutor(jobs or os.cpu_count() or 2) as ex:
            futures = [ex.submit(compile_one, x) for x in enumerate(files)]
            for fut in cf.as_completed(futures):
                f, obj, err = fut.result()
                if obj is None and error is None:
                    error = (f, err)
                    for other in futures:
                        other.cancel()
                elif obj is not None:
                    objs.append(obj)
        if error is not None:
            f, err = error
            m = _ERROR_LINE.search(err)
            first = m.group(1) if m else (err.strip().splitlines() or ["no message"])[0]
            message = (f"TFLite Micro ({tree.describe()}, {kernels} kernels) failed to compile {f}: {first}")
            out.mkdir(parents=True, exist_ok=True)
            failed.write_text(json.dumps({"message": message, "file": str(f), "stderr": err[-4000:]}, indent=1))
            shutil.rmtree(objdir, ignore_errors=True)
            raise TinyMLError(message)
        objs.sort()
        tmp = out / "libtflm.a.tmp"
        tmp.unlink(missing_ok=True)
        subprocess.run(["arm-none-eabi-ar", "rcs", str(tmp)] + [str(o) for o in objs], check=True)
        (out / "manifest.json").write_text(json.dumps({
            "key": key, "tree": str(tree.root), "layout": tree.layout, "version": tree.version,
            "reference_kernels": str(tree.reference_kernels) if tree.reference_kernels else None,
            "kernels": kernels, "machine": machine, "gcc": _gcc_version(),
            "flags": {"common": common, "c": c, "cxx": cxx}, "sources": [str(f) for f in files],
            "seconds": round(time.time() - t0, 1)}, indent=1))
        os.replace(tmp, lib)
        shutil.rmtree(objdir, ignore_errors=True)
    return Library(lib, key, kernels, tree, len(files), False)


# ----------------------------------------------------------------------------------- the application side
def port_source(tree: Tree) -> Path:
    """Our DebugLog / timer port for this tree's API generation."""
    return PORT_DIR / ("tflm_port_va_list.cpp" if tree.debuglog_api == "va_list" else "tflm_port_legacy.cpp")


def app_settings(lib: Library) -> dict:
    """What a PlatformIO project adds to link `lib`: {include_dirs, defines, link_flags, sources}."""
    tree = lib.tree
    return {
        "include_dirs": list(tree.include_dirs) + [PORT_DIR],
        "defines": defines(tree, lib.kernels) + ["TINYML_HAVE_TFLM"],
        "link_flags": [f"-L{lib.archive.parent}", "-ltflm"],
        "sources": {"tinyml_tflm/tflm_port.cpp": port_source(tree),
                    "tinyml_tflm/arduino_shim.cpp": PORT_DIR / "arduino_shim.cpp"},
    }


def describe(lib: Library) -> dict:
    """For size.json and the target record: which TFLM was linked."""
    return {**describe_tree(lib.tree, lib.kernels), "archive_key": lib.key, "n_sources": lib.n_sources}


def describe_tree(t: Tree, kernels: str) -> dict:
    return {"library": str(t.root), "layout": t.layout, "version": t.version, "kernels": kernels,
            "per_channel_fully_connected": t.per_channel_fc,
            "reference_kernels": str(t.reference_kernels) if t.reference_kernels else None}


def check_model(tree: Tree, model_bytes: bytes) -> str | None:
    """Why this tree would compute this model wrongly, or None.

    TFLM before 2024-09 (e.g. the Arduino export of 2023-02) reads only the first scale of a
    FULLY_CONNECTED weight tensor: a per-channel quantized Dense layer gives silently wrong outputs.
    """
    if tree.per_channel_fc:
        return None
    from . import tflite as tflite_info

    info = tflite_info.parse(model_bytes)
    sg = info.main
    for op in sg.operators:
        if op.op != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        w = sg.tensors[op.inputs[1]]
        if len(w.scales) > 1:
            return (f"the TFLM library at {tree.root} ({tree.version or tree.layout}) predates per-channel "
                    f"FULLY_CONNECTED (its kernels/fully_connected.h has no is_per_channel) and this model's Dense "
                    f"weights {w.name!r} have {len(w.scales)} scales: it would compute silently wrong outputs. "
                    f"Set per_channel = false for this variant (per-tensor Dense weights) or use a tflite-micro tree "
                    f"from 2024-09 or later")
    return None
