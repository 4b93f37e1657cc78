# doit-tinyml's PlatformIO pre-script for building a sketch's OWN environments (envs = [...]).
#
# doit appends it with PLATFORMIO_EXTRA_SCRIPTS (PlatformIO adds it after the environment's own
# extra_scripts) and passes, in the JSON file named by TINYML_INJECT:
#   include_dirs  folders to add to the include path (the variant's model_data.h, the AOT model)
#   sources       files to compile beside the sketch (model_data.cc, or the AOT model and kernels)
#   defines       e.g. TINYML_RUNTIME_TFLM
#   map           where the linker writes its map (for the breakdown of where the bytes go)
#   board         board manifest values to override ([boards.<id>] flash/ram in tinyml.toml)
#   libpath, libs a prebuilt library to link (the real TFLite Micro, on doit's local platform)
#   replace_sources  build the given sources INSTEAD of the sketch's (the measurement harness)
# Nothing in the sketch is edited. A source the sketch's own scripts already compile (same file
# name, e.g. a pre-script that builds model_data.cc from $TINYML_MODEL_DIR) is not added twice.
import json
import os

Import("env")  # noqa: F821  (SCons injects it)

with open(os.environ["TINYML_INJECT"]) as f:
    cfg = json.load(f)

env.Append(CPPPATH=cfg.get("include_dirs", []), CPPDEFINES=cfg.get("defines", []))  # noqa: F821
if cfg.get("libpath") or cfg.get("libs"):
    env.Append(LIBPATH=cfg.get("libpath", []), LIBS=cfg.get("libs", []))  # noqa: F821
if cfg.get("replace_sources"):
    env.Replace(SRC_FILTER=["-<*>"])  # noqa: F821
from SCons.Script import DefaultEnvironment  # noqa: E402

# what the environment's own scripts already compile (BuildSources appends object nodes, as lists, to the
# default environment's PIOBUILDFILES): the file names of their sources
already = set()
for node in env.Flatten(DefaultEnvironment().get("PIOBUILDFILES", [])):  # noqa: F821
    already.update(os.path.basename(str(s)) for s in (getattr(node, "sources", None) or [node]))
# the objects' folder names say what they are (the breakdown attributes AOT objects to inference by name)
folder = "tinyml_aot" if "TINYML_RUNTIME_AOT" in cfg.get("defines", []) else "tinyml_model"
for i, src in enumerate(cfg.get("sources", [])):
    name = os.path.basename(src)
    if name in already:
        continue
    env.BuildSources(  # noqa: F821
        os.path.join("$BUILD_DIR", folder, str(i)), os.path.dirname(src), "-<*> +<%s>" % name)
if cfg.get("map"):
    env.Append(LINKFLAGS=["-Wl,-Map,%s" % cfg["map"]])  # noqa: F821
board = env.BoardConfig()  # noqa: F821
for key, value in cfg.get("board", {}).items():
    board.update(key, value)
