"""header stage: the generated pair compiles with the host g++ and arm-none-eabi-g++, and holds the model."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conftest_models  # noqa: E402
from project import write_dataset_record  # noqa: E402

from doit_tinyml import analyze, header  # noqa: E402
from doit_tinyml.engine.errors import TinyMLError  # noqa: E402

PROV = {"model": "demo", "variant": "int8", "settings_hash": "0123abcd", "class_names": ["cat", "dog \"big\"", "bird"],
        "norm_a": [0.5, -1.25, 3.0, 0.0, 1.0, 2.0, 3.0, 4.0], "norm_b": [2.0, 0.5, 1e-3, 1.0, 1.0, 1.0, 1.0, 1.0]}

MAIN_CPP = r"""
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <vector>
#include "model_data.h"

static_assert(TINYML_ARENA_SIZE %% 16 == 0, "arena size is a multiple of 16");
static_assert(TINYML_OP_COUNT == %(n_ops)d, "op count");

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  FILE* f = std::fopen(argv[1], "rb");
  if (!f) return 3;
  std::vector<unsigned char> buf(1 << 20);
  size_t n = std::fread(buf.data(), 1, buf.size(), f);
  std::fclose(f);
  if (g_model_len != n || TINYML_MODEL_LEN != n) { std::printf("len %%u != %%zu\n", g_model_len, n); return 4; }
  if (std::memcmp(g_model, buf.data(), n) != 0) { std::printf("bytes differ\n"); return 5; }
  if (reinterpret_cast<uintptr_t>(g_model) %% 16 != 0) { std::printf("g_model not 16-aligned\n"); return 6; }
  std::printf("first %%02x%%02x%%02x%%02x%%02x%%02x%%02x%%02x\n", g_model[0], g_model[1], g_model[2], g_model[3],
              g_model[4], g_model[5], g_model[6], g_model[7]);
  std::printf("arena %%d ops %%d", TINYML_ARENA_SIZE, TINYML_OP_COUNT);
  for (int i = 0; i < TINYML_OP_COUNT; ++i) std::printf(" %%s", g_model_ops[i]);
  std::printf("\nlabels %%d", TINYML_LABEL_COUNT);
  for (int i = 0; i < TINYML_LABEL_COUNT; ++i) std::printf(" [%%s]", g_model_labels[i]);
  std::printf("\nnorm %%d %%g %%g %%g\n", TINYML_INPUT_NORM_COUNT, g_input_norm_a[1], g_input_norm_b[2],
              (double)TINYML_INPUT_SCALE);
  std::printf("in %%s zp %%d out %%s model %%s/%%s\n", TINYML_INPUT_DTYPE, TINYML_INPUT_ZERO_POINT,
              TINYML_OUTPUT_DTYPE, TINYML_MODEL_NAME, TINYML_VARIANT_NAME);
  return 0;
}
"""


def dataset_json(d: Path, prov: dict) -> Path:
    """The dataset record the header reads class names and the input normalisation from."""
    norm = prov.get("norm_a") is not None
    return write_dataset_record(d / "dataset.json", class_names=prov.get("class_names"),
                                normalize="standard" if norm else "none",
                                norm_a=prov.get("norm_a") or [0.0], norm_b=prov.get("norm_b") or [1.0])


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    cache = {}

    def get(name: str, prov: dict = PROV) -> tuple[Path, dict]:
        key = (name, json.dumps(prov, sort_keys=True))
        if key not in cache:
            d = tmp_path_factory.mktemp(f"hdr-{name}")
            tfl = conftest_models.model_path(name)
            a = analyze.run(tfl, d / "analysis.json")
            header.run(tfl, d / "analysis.json", dataset_json(d, prov), d / "model_data.h", d / "model_data.cc",
                       provenance=prov)
            cache[key] = (d, a)
        return cache[key]

    return get


@pytest.mark.skipif(not shutil.which("g++"), reason="host g++ not installed")
def test_pair_compiles_on_host_and_holds_the_model(generated):
    d, a = generated("conv_int8")
    tfl = conftest_models.model_path("conv_int8")
    (d / "main.cpp").write_text(MAIN_CPP % {"n_ops": len(a["ops"])})
    exe = d / "check"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(d), str(d / "model_data.cc"),
                    str(d / "main.cpp"), "-o", str(exe)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe), str(tfl)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    data = tfl.read_bytes()
    assert f"first {data[:8].hex()}" in out.stdout
    assert f"arena {a['arena']['bytes']} ops {len(a['ops'])} {' '.join(a['ops'])}" in out.stdout
    assert 'labels 3 [cat] [dog "big"] [bird]' in out.stdout
    assert "norm 8 -1.25 0.001" in out.stdout
    assert f"in int8 zp {a['input']['zero_point']} out int8 model demo/int8" in out.stdout


@pytest.mark.skipif(not shutil.which("arm-none-eabi-g++"), reason="arm-none-eabi-g++ not installed")
def test_pair_compiles_for_cortex_m4(generated):
    d, _ = generated("conv_int8")
    obj = d / "model_data.o"
    r = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-std=c++17", "-Os", "-Wall", "-Wextra",
                        "-Werror", "-I", str(d), "-c", str(d / "model_data.cc"), "-o", str(obj)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the model sits in flash (.rodata), 16-byte aligned
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in nm.splitlines() if ln.endswith(" g_model"))
    addr, size, kind, _ = line.split()
    assert kind in ("R", "r") and int(size, 16) == conftest_models.model_path("conv_int8").stat().st_size


def test_header_text_defines_arena_ops_resolver_and_provenance(generated):
    d, a = generated("conv_int8")
    h = (d / "model_data.h").read_text()
    cc = (d / "model_data.cc").read_text()
    assert f"#define TINYML_ARENA_SIZE {a['arena']['bytes']}\n" in h
    assert f"{a['arena']['target32_bytes']} bytes" in h and "margin of 10 %" in h
    calls = re.findall(r"r\.(Add\w+)\(\)", h)
    assert calls == ["AddConv2D", "AddDepthwiseConv2D", "AddMaxPool2D", "AddReshape", "AddFullyConnected",
                     "AddSoftmax"]
    assert "template <unsigned int N>" in h and "tflite::MicroMutableOpResolver<N>& r" in h
    assert "using TinyMLOpResolver = tflite::MicroMutableOpResolver<TINYML_OP_COUNT>;" in h
    import hashlib

    sha = hashlib.sha256(conftest_models.model_path("conv_int8").read_bytes()).hexdigest()
    assert f'#define TINYML_MODEL_SHA256 "{sha}"' in h and '#define TINYML_SETTINGS_HASH "0123abcd"' in h
    assert re.search(r'#define TINYML_TENSORFLOW_VERSION "2\.\d+', h)
    assert '#define TINYML_TFLITE_MICRO_VERSION "0.dev' in h
    assert "alignas(16) const unsigned char g_model[" in cc
    rows = [ln for ln in cc.splitlines() if ln.startswith("    0x")]
    assert all(ln.count("0x") == 12 for ln in rows[:-1]) and 1 <= rows[-1].count("0x") <= 12


def test_bytes_are_deterministic_and_without_labels_or_norm(generated, tmp_path):
    d, _ = generated("int8", {"model": "m", "variant": "v", "settings_hash": "s", "class_names": None,
                              "norm_a": None, "norm_b": None})
    tfl = conftest_models.model_path("int8")
    plain = {"model": "m", "variant": "v", "settings_hash": "s", "class_names": None, "norm_a": None, "norm_b": None}
    header.run(tfl, d / "analysis.json", dataset_json(tmp_path, plain), tmp_path / "model_data.h",
               tmp_path / "model_data.cc", provenance={"model": "m", "variant": "v", "settings_hash": "s"})
    assert (tmp_path / "model_data.h").read_bytes() == (d / "model_data.h").read_bytes()
    assert (tmp_path / "model_data.cc").read_bytes() == (d / "model_data.cc").read_bytes()
    h = (d / "model_data.h").read_text()
    assert "#define TINYML_LABEL_COUNT 0" in h and "#define TINYML_INPUT_NORM_COUNT 0" in h
    assert "g_model_labels[" not in (d / "model_data.cc").read_text()
    if shutil.which("arm-none-eabi-g++"):
        r = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-std=c++17", "-Wall", "-Wextra", "-Werror",
                            "-I", str(d), "-c", str(d / "model_data.cc"), "-o", str(tmp_path / "m.o")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_incompatible_model_still_gets_a_header_that_says_so(tmp_path):
    """A variant TFLM cannot run stays buildable for comparison: the header compiles, declares itself
    incompatible, names the op and the fix, and sizes the arena as a marked estimate."""
    tfl = conftest_models.model_path("tile")
    analysis = analyze.run(tfl, tmp_path / "analysis.json")
    assert analysis["tflm_compatible"] is False and analysis["arena"] is None
    header.run(tfl, tmp_path / "analysis.json", dataset_json(tmp_path, PROV), tmp_path / "model_data.h",
               tmp_path / "model_data.cc", provenance=PROV)
    h = (tmp_path / "model_data.h").read_text()
    assert "#define TINYML_TFLM_COMPATIBLE 0" in h
    assert re.search(r"// problem: .*TILE.*-- fix: ", h), h
    assert "ESTIMATE" in h
    arena = int(re.search(r"#define TINYML_ARENA_SIZE (\d+)", h).group(1))
    assert arena >= analysis["peak_alive_bytes"] and arena % 16 == 0
    r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path), "-c",
                        str(tmp_path / "model_data.cc"), "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_stale_analysis_is_refused(tmp_path):
    analyze.run(conftest_models.model_path("int8"), tmp_path / "analysis.json")
    with pytest.raises(TinyMLError, match="rerun the analyze stage"):
        header.run(conftest_models.model_path("float32"), tmp_path / "analysis.json", dataset_json(tmp_path, PROV),
                   tmp_path / "h.h", tmp_path / "c.cc", provenance=PROV)
