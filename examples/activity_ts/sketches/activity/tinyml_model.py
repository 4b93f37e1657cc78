# PlatformIO pre-script for the official-platform environments: compile the model's
# model_data.cc from $TINYML_MODEL_DIR (the folder doit's header stage writes).
import os

Import("env")  # noqa: F821  (SCons injects it)

model_dir = os.environ.get("TINYML_MODEL_DIR")
if not model_dir or not os.path.isfile(os.path.join(model_dir, "model_data.cc")):
    raise SystemExit(
        "Set TINYML_MODEL_DIR to the folder holding model_data.h and model_data.cc, "
        "e.g. TINYML_MODEL_DIR=$PWD/build/activity/int8 (run `doit` first to generate it)."
    )
env.Append(CPPPATH=[model_dir])  # noqa: F821
env.BuildSources(os.path.join("$BUILD_DIR", "tinyml_model"), model_dir, "-<*> +<model_data.cc>")  # noqa: F821
