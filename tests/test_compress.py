"""Compression stage: each method does what it claims, on tiny real models (1-2 epochs), plus user errors.

Run: .venv/bin/pytest tests/test_compress.py
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from doit_tinyml import compress
from doit_tinyml.engine.compression import validate_steps
from doit_tinyml.engine.keras_io import load_model, save_model
from doit_tinyml.engine.errors import TinyMLError

ROOT = Path(__file__).resolve().parents[1]
WHERE = "tinyml.toml [models.cancer.variants.v1] steps"


# ------------------------------------------------------------------------------------------
# pure-Python validation (no TensorFlow)


def test_modules_import_without_tensorflow_or_numpy():
    code = ("import sys; import doit_tinyml.compress, doit_tinyml.engine.compression.remove, doit_tinyml.engine.compression.distill; "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'numpy') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_fills_defaults():
    steps = validate_steps([{"method": "prune", "final_sparsity": 0.75},
                                     {"method": "cluster", "clusters": 8},
                                     {"method": "qat"}], WHERE)
    assert [s["method"] for s in steps] == ["prune", "cluster", "qat"]
    assert steps[0]["schedule"] == "polynomial" and steps[0]["initial_sparsity"] == 0.0
    assert steps[0]["final_sparsity"] == 0.75 and "sparsity" not in steps[0]
    assert steps[1]["init"] == "kmeans++" and steps[1]["epochs"] == 2
    assert steps[2]["epochs"] == 2 and steps[2]["learning_rate"] == 1e-4
    const = validate_steps([{"method": "prune", "schedule": "constant", "sparsity": 0.5}], WHERE)[0]
    assert const["sparsity"] == 0.5 and "final_sparsity" not in const


def test_unknown_method_suggests_closest():
    with pytest.raises(TinyMLError) as e:
        validate_steps([{"method": "prun"}], WHERE)
    msg = str(e.value)
    assert "steps[0]" in msg and "'prun'" in msg and "did you mean 'prune'" in msg
    assert "distill, remove, prune, cluster, qat" in msg
    assert msg.startswith("tinyml.toml [models.cancer.variants.v1] steps[0]")


def test_unknown_key_names_step_key_and_closest():
    with pytest.raises(TinyMLError) as e:
        validate_steps([{"method": "prune"}, {"method": "cluster", "cluster": 8}], WHERE)
    msg = str(e.value)
    assert "steps[1]" in msg and "'cluster'" in msg and "did you mean 'clusters'" in msg
    assert "clusters, epochs, init" in msg  # the allowed keys


def test_order_is_checked_by_what_each_step_needs():
    with pytest.raises(TinyMLError) as e:
        validate_steps([{"method": "qat"}, {"method": "prune"}], WHERE)
    msg = str(e.value)
    assert "steps[1]" in msg and "'prune' cannot come after 'qat': qat must be the last step" in msg
    with pytest.raises(TinyMLError, match="'prune' cannot come after 'cluster'.*put prune before cluster"):
        validate_steps([{"method": "cluster"}, {"method": "prune"}], WHERE)
    with pytest.raises(TinyMLError, match="put distill first"):
        validate_steps([{"method": "prune"}, {"method": "distill", "layers": [{"type": "dense", "units": 3}]}], WHERE)
    with pytest.raises(TinyMLError, match="already clustered"):
        validate_steps([{"method": "cluster"}, {"method": "cluster"}], WHERE)
    # the literature's orders that the old fixed order refused: prune then remove, pruning in rounds
    assert [s["method"] for s in validate_steps([{"method": "prune"}, {"method": "remove"}], WHERE)] == ["prune", "remove"]
    assert len(validate_steps([{"method": "prune", "final_sparsity": 0.5},
                               {"method": "prune", "final_sparsity": 0.8}], WHERE)) == 2


@pytest.mark.parametrize("step, words", [
    ({"method": "prune", "final_sparsity": 1.0}, ["final_sparsity", "[0, 1)", "1.0"]),
    ({"method": "prune", "schedule": "cubic"}, ["schedule", "'polynomial'", "'cubic'"]),
    ({"method": "prune", "schedule": "constant", "final_sparsity": 0.5}, ["final_sparsity", "constant"]),
    ({"method": "cluster", "clusters": 1}, ["clusters", ">= 2"]),
    ({"method": "cluster", "init": "kmeans"}, ["init", "did you mean 'kmeans++'"]),
    ({"method": "qat", "epochs": True}, ["epochs", "True"]),
    ({"method": "remove", "fraction": 1.5}, ["fraction", "(0, 1)"]),
    ({"method": "distill"}, ["layers"]),
])
def test_bad_values_are_named(step, words):
    with pytest.raises(TinyMLError) as e:
        validate_steps([step], WHERE)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_cluster_after_prune_needs_three_clusters():
    with pytest.raises(TinyMLError, match="at least 3"):
        validate_steps([{"method": "prune"}, {"method": "cluster", "clusters": 2}], WHERE)
    with pytest.raises(TinyMLError, match="list of tables"):
        validate_steps({"method": "prune"}, WHERE)
    with pytest.raises(TinyMLError, match="steps\\[0\\]"):
        validate_steps(["prune"], WHERE)


# ------------------------------------------------------------------------------------------
# real models


def build_layers(input_shape, layers):
    """The tests' own tiny layer-list builder (like engine.keras_io.build_model, plus PReLU)."""
    from doit_tinyml.engine.keras_io import import_tensorflow

    _, keras = import_tensorflow()
    names = {"dense": "Dense", "conv1d": "Conv1D", "conv2d": "Conv2D", "flatten": "Flatten",
             "global_average_pooling1d": "GlobalAveragePooling1D", "batch_normalization": "BatchNormalization",
             "max_pooling1d": "MaxPooling1D", "prelu": "PReLU"}
    model = keras.Sequential([keras.Input(shape=tuple(input_shape))])
    for spec in layers:
        spec = dict(spec)
        model.add(getattr(keras.layers, names[spec.pop("type")])(**spec))
    return model


DENSE = [{"type": "dense", "units": 16, "activation": "relu"}, {"type": "dense", "units": 16, "activation": "relu"},
         {"type": "dense", "units": 3, "activation": "softmax"}]


def _project(tmp: Path, layers, x_shape, seed=0, task="multiclass"):
    import numpy as np

    from doit_tinyml.engine.keras_io import seed_everything

    seed_everything(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(192,) + x_shape).astype("float32")
    s = x.reshape(len(x), -1).sum(axis=1)
    if task == "multiclass":
        y = np.digitize(s, np.quantile(s, [1 / 3, 2 / 3])).astype("int32")
        loss = "sparse_categorical_crossentropy"
    else:
        y = (s / 4).astype("float32").reshape(-1, 1)
        loss = "mse"
    npz = tmp / "dataset.npz"
    np.savez(npz, x_train=x[:128], y_train=y[:128], x_test=x[128:], y_test=y[128:])
    model = build_layers(x_shape, layers)
    model.compile("adam", loss)
    model.fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0)
    save_model(model, tmp / "trained.keras")
    return tmp / "trained.keras", npz, loss


@pytest.fixture(scope="module")
def dense_project(tmp_path_factory):
    return _project(tmp_path_factory.mktemp("dense"), DENSE, (8,))


def _run(project, steps, tmp: Path, name="v"):
    trained, npz, loss = project
    steps = validate_steps(steps, WHERE)
    out = tmp / name / "compressed.keras"
    rec = compress.run(trained, npz, steps, out, tmp / name / "compress.json", seed=1, loss=loss)
    return out, rec


def _kernels(model):
    return {f"{l.name}/{w.name}": w.numpy() for l in model.layers for w in l.weights
            if w.name.split("/")[-1] == "kernel:0"}


def test_prune_polynomial_reaches_target_sparsity_and_is_deterministic(dense_project, tmp_path):
    import numpy as np

    steps = [{"method": "prune", "final_sparsity": 0.75, "epochs": 2}]
    out, rec = _run(dense_project, steps, tmp_path, "a")
    model = load_model(out)
    assert not any("prune" in type(l).__name__.lower() for l in model.layers)  # wrappers stripped
    kernels = _kernels(model)
    assert len(kernels) == 3
    for name, k in kernels.items():
        assert abs(float(np.mean(k == 0)) - 0.75) <= 0.01, (name, float(np.mean(k == 0)))
    assert rec["steps"][0]["method"] == "prune"
    assert all(abs(v["sparsity"] - 0.75) <= 0.01 for v in rec["steps"][0]["kernels"].values())
    assert rec["final"]["keras_gzip_bytes"] < rec["trained"]["keras_gzip_bytes"]
    out2, _ = _run(dense_project, steps, tmp_path, "b")
    assert out.read_bytes() == out2.read_bytes()  # seeded and saved without dates
    assert (tmp_path / "a" / "compress.json").read_bytes() == (tmp_path / "b" / "compress.json").read_bytes()


def test_prune_constant_and_2_by_4(dense_project, tmp_path):
    import numpy as np

    out, _ = _run(dense_project, [{"method": "prune", "schedule": "constant", "sparsity": 0.6, "epochs": 1}],
                  tmp_path, "const")
    for name, k in _kernels(load_model(out)).items():
        assert abs(float(np.mean(k == 0)) - 0.6) <= 0.01, name
    out, _ = _run(dense_project, [{"method": "prune", "structure": "2:4", "epochs": 1}], tmp_path, "m_by_n")
    for name, k in _kernels(load_model(out)).items():
        groups = k.T.reshape(k.shape[1], -1, 4)  # TFLite layout [out, in]: groups of 4 along the input
        assert int((groups != 0).sum(axis=-1).max()) <= 2, name
        assert float(np.mean(k == 0)) >= 0.5 - 1e-9


def test_prune_cluster_qat_chain_keeps_zeros_and_converts_to_int8(dense_project, tmp_path):
    import numpy as np

    from doit_tinyml.engine.keras_io import import_tensorflow

    out, rec = _run(dense_project, [{"method": "prune", "final_sparsity": 0.5, "epochs": 1},
                                    {"method": "cluster", "clusters": 6, "epochs": 1},
                                    {"method": "qat", "epochs": 1}], tmp_path, "pcq")
    # prune -> cluster: at most n distinct values per kernel, and the zeros survive clustering
    assert rec["steps"][1]["preserve_sparsity"] is True
    assert len(rec["steps"][1]["kernels"]) == 3
    for name, k in rec["steps"][1]["kernels"].items():
        assert k["distinct"] <= 6 and k["sparsity"] >= 0.5 - 0.01, name
    assert rec["requires_full_integer"] is True
    assert rec["steps"][2]["scheme"] == "Default8BitClusterPreserveQuantizeScheme"
    model = load_model(out)
    assert any(type(l).__name__ == "QuantizeWrapperV2" for l in model.layers)
    kernels = _kernels(model)  # the float kernels inside the QAT wrappers: still clustered and sparse
    assert len(kernels) == 3
    for name, k in kernels.items():
        assert np.unique(k).size <= 6 and float(np.mean(k == 0)) >= 0.5 - 0.01, name
    tf, _ = import_tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    # TF 2.21's converter checks for QAT before it has traced the graph, so it asks for representative
    # data even for a QAT model (the convert stage passes it anyway)
    x = np.load(dense_project[1])["x_train"][:32]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    blob = conv.convert()
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8
    dtypes = {d["dtype"] for d in it.get_tensor_details()}
    assert np.float32 not in dtypes, dtypes
    weights = [it.get_tensor(d["index"]) for d in it.get_tensor_details()
               if d["dtype"] == np.int8 and len(d["shape"]) == 2 and d["shape"][0] > 1 and d["shape"][1] > 1
               and d["index"] not in (it.get_input_details()[0]["index"], it.get_output_details()[0]["index"])]
    weights = [w for w in weights if w.size >= 48]
    assert len(weights) == 3
    for w in weights:  # the int8 kernels still hold <= 6 values, zeros included
        assert np.unique(w).size <= 6 and float(np.mean(w == 0)) >= 0.49


def test_qat_alone_uses_default_scheme(dense_project, tmp_path):
    out, rec = _run(dense_project, [{"method": "qat", "epochs": 1}], tmp_path, "q")
    assert rec["steps"][0]["scheme"] == "Default8BitQuantizeScheme"
    assert rec["final"]["format"] == "h5"
    # parameters are the model's own, not the quantizers' ranges and step counters
    assert rec["final"]["params"] == rec["trained"]["params"] == 8 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    model = load_model(out)
    assert model.predict(__import__("numpy").zeros((2, 8), "float32"), verbose=0).shape == (2, 3)


def test_remove_keeps_function_when_dropping_dead_filters(tmp_path):
    """Zero some filters by hand: removing exactly those (epochs=0) must leave every prediction unchanged.

    This checks the weight carry-over through Conv1D -> BatchNormalization -> Conv1D -> Flatten -> Dense.
    """
    import numpy as np

    layers = [{"type": "conv1d", "filters": 8, "kernel_size": 3, "activation": "relu"},
              {"type": "batch_normalization"},
              {"type": "conv1d", "filters": 8, "kernel_size": 3, "activation": "relu"},
              {"type": "flatten"},
              {"type": "dense", "units": 8, "activation": "relu"},
              {"type": "dense", "units": 3, "activation": "softmax"}]
    trained, npz, loss = _project(tmp_path, layers, (12, 1))
    model = load_model(trained)
    # make half of every hidden layer's outputs dead (zero weights, zero bias) so L1 ranks them last;
    # BatchNormalization's beta is zeroed on the dead channels so they stay exactly 0 downstream
    for li, dead in ((0, [1, 3, 5, 7]), (2, [0, 2, 4, 6]), (4, [1, 2, 5, 6])):
        w = model.layers[li].get_weights()
        w[0][..., dead] = 0.0
        w[1][dead] = 0.0
        model.layers[li].set_weights(w)
    bn = model.layers[1].get_weights()
    bn[1][[1, 3, 5, 7]] = 0.0  # beta
    bn[2][[1, 3, 5, 7]] = 0.0  # moving mean
    model.layers[1].set_weights(bn)
    save_model(model, trained)
    x = np.load(npz)["x_test"]
    ref = model.predict(x, verbose=0)

    rec = compress.run(trained, npz, validate_steps([{"method": "remove", "epochs": 0}], WHERE),
                       tmp_path / "v" / "compressed.keras", tmp_path / "v" / "compress.json", seed=0,
                       loss=loss)
    small = load_model(tmp_path / "v" / "compressed.keras")
    assert np.allclose(small.predict(x, verbose=0), ref, atol=1e-5)
    step = rec["steps"][0]
    assert [l["layer"] for l in step["layers"]] == [model.layers[i].name for i in (0, 2, 4)]
    assert step["params_after"] == small.count_params() < step["params_before"] == model.count_params()
    assert step["macs_after"] < step["macs_before"]
    from doit_tinyml.engine.compression.remove import count_macs

    assert step["macs_before"] == count_macs(model) == 10 * 3 * 8 + 8 * 3 * 8 * 8 + 64 * 8 + 8 * 3


def test_remove_then_finetune_still_predicts(dense_project, tmp_path):
    import numpy as np

    out, rec = _run(dense_project, [{"method": "remove", "fraction": 0.5, "norm": "l2", "epochs": 1}],
                    tmp_path, "r")
    step = rec["steps"][0]
    assert [l["units_after"] for l in step["layers"]] == [8, 8]
    assert step["params_after"] < step["params_before"] and step["macs_after"] < step["macs_before"]
    small = load_model(out)
    p = small.predict(np.load(dense_project[1])["x_test"], verbose=0)
    assert p.shape == (64, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_distill_student_has_students_size(dense_project, tmp_path):
    import numpy as np

    student = [{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dense", "units": 3,
                                                                     "activation": "softmax"}]
    out, rec = _run(dense_project, [{"method": "distill", "layers": student, "epochs": 2}], tmp_path, "d")
    model = load_model(out)
    expected = 8 * 4 + 4 + 4 * 3 + 3
    assert model.count_params() == expected == rec["steps"][0]["student_params"] == rec["final"]["params"]
    assert rec["steps"][0]["teacher_params"] == rec["trained"]["params"] > expected
    assert rec["steps"][0]["kind"] == "sparse" and np.isfinite(rec["steps"][0]["test_loss"])
    # a second run in the same process (layer-name counters advanced) gives the same bytes
    out2, _ = _run(dense_project, [{"method": "distill", "layers": student, "epochs": 2}], tmp_path, "d2")
    assert out.read_bytes() == out2.read_bytes()


def test_distill_regression_then_tiny_kernel_clusters_with_linear_fallback(tmp_path):
    import numpy as np

    layers = [{"type": "dense", "units": 16, "activation": "relu"}, {"type": "dense", "units": 1}]
    project = _project(tmp_path, layers, (6,), task="regression")
    out, rec = _run(project, [{"method": "distill", "layers": [{"type": "dense", "units": 1}], "epochs": 1},
                              {"method": "prune", "final_sparsity": 0.5, "epochs": 1},
                              {"method": "cluster", "clusters": 8, "epochs": 1}], tmp_path, "dr")
    assert rec["steps"][0]["kind"] == "regression" and rec["final"]["params"] == 7
    # 3 non-zero weights cannot seed 7 kmeans++ centroids: that layer falls back to linear init
    assert len(rec["steps"][2]["linear_init_for"]) == 1
    (k,) = _kernels(load_model(out)).values()
    assert np.unique(k).size <= 8 and int((k == 0).sum()) == 3


def test_layer_that_cannot_be_clustered_is_named(tmp_path):
    layers = [{"type": "dense", "units": 8}, {"type": "prelu"}, {"type": "dense", "units": 3,
                                                                 "activation": "softmax"}]
    project = _project(tmp_path, layers, (4,))
    with pytest.raises(TinyMLError) as e:
        _run(project, [{"method": "cluster", "clusters": 4}], tmp_path)
    msg = str(e.value)
    assert re.search(r"\(cluster\): layer 'p_re_lu(_\d+)?' \(PReLU\) cannot be clustered", msg), msg
    assert not (tmp_path / "v" / "compressed.keras").exists()
    with pytest.raises(TinyMLError) as e:
        _run(project, [{"method": "qat"}], tmp_path)
    assert re.search(r"\(qat\): layer 'p_re_lu(_\d+)?' \(PReLU\) is not supported", str(e.value)), str(e.value)


def test_conv1d_qat_converts_to_int8_and_preserving_qat_names_the_layer(tmp_path):
    import numpy as np

    from doit_tinyml.engine.keras_io import import_tensorflow

    layers = [{"type": "conv1d", "filters": 4, "kernel_size": 3, "activation": "relu"},
              {"type": "global_average_pooling1d"}, {"type": "dense", "units": 3, "activation": "softmax"}]
    project = _project(tmp_path, layers, (8, 1))
    out, rec = _run(project, [{"method": "qat", "epochs": 1}], tmp_path, "q")
    model = load_model(out)
    tf, _ = import_tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    x = np.load(project[1])["x_train"][:16]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=conv.convert())
    assert {d["dtype"] for d in it.get_tensor_details()} <= {np.int8, np.int32}

    # the pruning-preserving scheme has no Conv1D entry: a clear error, not a tfmot traceback
    with pytest.raises(TinyMLError) as e:
        _run(project, [{"method": "prune", "epochs": 1}, {"method": "qat", "epochs": 1}], tmp_path, "pq")
    msg = str(e.value)
    assert re.search(r"\(qat\): layer 'conv1d(_\d+)?' \(Conv1D\) is not supported", msg), msg
    assert "drop the prune step" in msg and "quantization = \"int8\"" in msg
    with pytest.raises(TinyMLError) as e:
        _run(project, [{"method": "prune", "structure": "2:4", "epochs": 1}], tmp_path)
    assert re.search(r"\(prune\): layer 'conv1d(_\d+)?' \(Conv1D\)", str(e.value)) and "2:4" in str(e.value)


def test_shared_steps_run_once_and_give_the_same_bytes(dense_project, tmp_path, capsys):
    """Two variants that begin with the same prune step: the second starts from the cached prune,
    and its bytes equal those of a run with an empty cache (and the paper's prune-then-remove order runs)."""
    trained, npz, loss = dense_project
    prune = {"method": "prune", "final_sparsity": 0.5, "epochs": 1}
    a = validate_steps([prune], WHERE)
    b = validate_steps([prune, {"method": "remove", "fraction": 0.25, "epochs": 1}], WHERE)
    cache = tmp_path / "cache"
    compress.run(trained, npz, a, tmp_path / "a" / "c.keras", tmp_path / "a" / "c.json", seed=1, loss=loss,
                 cache_dir=cache, cache_salt="x")
    capsys.readouterr()
    rec = compress.run(trained, npz, b, tmp_path / "b" / "c.keras", tmp_path / "b" / "c.json", seed=1, loss=loss,
                       cache_dir=cache, cache_salt="x")
    assert "steps[0..0] shared with another variant" in capsys.readouterr().out
    fresh = compress.run(trained, npz, b, tmp_path / "f" / "c.keras", tmp_path / "f" / "c.json", seed=1, loss=loss,
                         cache_dir=tmp_path / "empty", cache_salt="x")
    assert (tmp_path / "b" / "c.keras").read_bytes() == (tmp_path / "f" / "c.keras").read_bytes()
    assert (tmp_path / "b" / "c.json").read_bytes() == (tmp_path / "f" / "c.json").read_bytes()
    assert rec == fresh and [s["method"] for s in rec["steps"]] == ["prune", "remove"]
    assert rec["final"]["params"] < rec["trained"]["params"]  # units really removed after pruning
