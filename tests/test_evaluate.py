"""evaluate stage: real tiny models, real LiteRT, real TFLM, real Keras reference.

The expected figures are computed here independently (LiteRT and TFLM driven one sample at a time
by the test itself, metrics from scikit-learn / plain numpy) and compared with metrics.json.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from doit_tinyml import evaluate
from project import write_dataset_record
from doit_tinyml.engine import metrics
from doit_tinyml.engine.errors import TinyMLError
from doit_tinyml.engine.io import read_json
from doit_tinyml.engine.keras_io import import_tensorflow

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers (independent of tasks.evaluate)


def litert_outputs(model_path: Path, x: np.ndarray, raw: bool = False) -> np.ndarray:
    """One sample at a time with LiteRT's builtin kernels; dequantised float outputs (raw: as the model gives)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(model_path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = din["quantization"], dout["quantization"]
    ys = []
    for i in range(len(x)):
        xi = x[i:i + 1]
        if din["dtype"] == np.int8:
            xi = np.clip(np.round(xi / si + zi), -128, 127).astype(np.int8)
        it.set_tensor(din["index"], xi)
        it.invoke()
        y = it.get_tensor(dout["index"]).copy()
        ys.append((y.astype(np.float32) - zo) * so if dout["dtype"] == np.int8 and not raw else y)
    return np.concatenate(ys)


def tflm_outputs(model_path: Path, x: np.ndarray, raw: bool = False) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_path.read_bytes(), arena_size=64 * 1024)
    din, dout = it.get_input_details(0), it.get_output_details(0)
    ys = []
    for i in range(len(x)):
        xi = x[i:i + 1]
        if din["dtype"] == np.int8:
            s, z = din["quantization_parameters"]["scales"][0], din["quantization_parameters"]["zero_points"][0]
            xi = np.clip(np.round(xi / s + z), -128, 127).astype(np.int8)
        it.set_input(xi, 0)
        it.invoke()
        y = np.array(it.get_output(0))
        if dout["dtype"] == np.int8 and not raw:
            s, z = dout["quantization_parameters"]["scales"][0], dout["quantization_parameters"]["zero_points"][0]
            y = (y.astype(np.float32) - z) * s
        ys.append(y)
    return np.concatenate(ys)


def convert(model, mode: str, rep: np.ndarray) -> bytes:
    tf, _ = import_tensorflow()
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("int8", "hybrid"):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        c.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(min(len(rep), 100)))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c.convert()


def write_dataset(folder: Path, meta: dict, **arrays) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "dataset.npz", **arrays)
    write_dataset_record(folder / "dataset.json", **meta)
    return folder / "dataset.npz", folder / "dataset.json"


# ------------------------------------------------------------------ fixtures: tiny real models, built once


@pytest.fixture(scope="module")
def sine(tmp_path_factory):
    tf, keras = import_tensorflow()
    keras.utils.set_random_seed(1)
    d = tmp_path_factory.mktemp("sine")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2 * np.pi, (600, 1)).astype(np.float32)
    y = (np.sin(x) + rng.normal(0, 0.05, x.shape)).astype(np.float32)
    model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(1,)),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x[:500], y[:500], epochs=2, batch_size=16, verbose=0)
    model.save(d / "trained.keras")
    for mode in ("float", "int8"):
        (d / f"{mode}.tflite").write_bytes(convert(model, mode, x[:500]))
    npz, js = write_dataset(d, {"task": "regression", "n_classes": None},
                            x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    return {"dir": d, "npz": npz, "json": js, "x_test": x[500:], "y_test": y[500:], "keras": model}


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    tf, keras = import_tensorflow()
    keras.utils.set_random_seed(2)
    d = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 3, (3, 16)).astype(np.float32)
    y = rng.integers(0, 3, 450).astype(np.int32)
    x = (centers[y] + rng.normal(0, 1.0, (450, 16))).astype(np.float32)
    model = keras.Sequential([keras.layers.Dense(96, activation="relu", input_shape=(16,)),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:350], y[:350], epochs=2, batch_size=16, verbose=0)
    model.save(d / "trained.keras")
    for mode in ("int8", "hybrid"):  # 16*96 = 1536 weights: big enough for dynamic-range quantisation
        (d / f"{mode}.tflite").write_bytes(convert(model, mode, x[:350]))
    npz, js = write_dataset(d, {"task": "multiclass", "n_classes": 3, "class_names": ["a", "b", "c"]},
                            x_train=x[:350], y_train=y[:350], x_test=x[350:], y_test=y[350:])
    return {"dir": d, "npz": npz, "json": js, "x_test": x[350:], "y_test": y[350:], "keras": model}


# ------------------------------------------------------------------ regression


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_regression_metrics_match_independent_runs(sine, mode):
    path = sine["dir"] / f"{mode}.tflite"
    out = sine["dir"] / f"metrics_{mode}.json"
    got = evaluate.run(path, sine["npz"], sine["json"], out, reference_keras=sine["dir"] / "trained.keras")
    assert read_json(out) == json.loads(json.dumps(got))  # what is returned is what was written

    y = sine["y_test"]
    lite = litert_outputs(path, sine["x_test"])
    micro = tflm_outputs(path, sine["x_test"])
    if mode == "int8":
        raw_micro, raw_lite = tflm_outputs(path, sine["x_test"], raw=True), litert_outputs(path, sine["x_test"], raw=True)
        assert raw_micro.dtype == np.int8 and np.array_equal(raw_micro, raw_lite)  # bit-identical on the device runtime
        np.testing.assert_allclose(micro, lite, rtol=1e-6)
        assert got["tflm"]["max_abs_diff_vs_litert"] == 0.0 and got["tflm"]["samples_differing_vs_litert"] == 0
    else:
        np.testing.assert_allclose(micro, lite, atol=1e-5)
        assert got["tflm"]["max_abs_diff_vs_litert"] <= 1e-5
    for rt, outs in (("litert", lite), ("tflm", micro)):
        err = outs.reshape(-1).astype(np.float64) - y.reshape(-1)
        assert got[rt]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-6)
        assert got[rt]["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-6)
    assert got["primary"] == {"name": "mae", "value": got["tflm"]["mae"], "higher_is_better": False, "runtime": "tflm"}

    ref = sine["keras"].predict(sine["x_test"], verbose=0)
    assert got["keras"]["mae"] == pytest.approx(np.mean(np.abs(ref.reshape(-1) - y.reshape(-1))), rel=1e-5)
    assert got["agreement"]["max_abs_error_vs_keras"] == pytest.approx(np.max(np.abs(micro - ref)), rel=1e-4, abs=1e-6)
    if mode == "float":
        assert got["agreement"]["max_abs_error_vs_keras"] < 1e-4
    else:  # int8 is close to float but not equal
        assert 0 < got["agreement"]["max_abs_error_vs_keras"] < 0.3


def test_batch1_model_runs_whole_split(sine, tmp_path):
    """A model converted with a fixed batch of 1 still evaluates every test sample."""
    tf, keras = import_tensorflow()
    fixed = keras.Sequential([keras.layers.InputLayer(batch_input_shape=(1, 1)), keras.layers.Dense(4),
                              keras.layers.Reshape((4,)), keras.layers.Dense(1)])
    path = tmp_path / "b1.tflite"
    path.write_bytes(convert(fixed, "float", sine["x_test"]))
    got = evaluate.run(path, sine["npz"], sine["json"], tmp_path / "m.json", reference_keras=None)
    lite = litert_outputs(path, sine["x_test"])
    assert got["counts"]["test"] == len(sine["x_test"])
    assert got["litert"]["mae"] == pytest.approx(np.mean(np.abs(lite.reshape(-1) - sine["y_test"].reshape(-1))), rel=1e-6)
    assert got["keras"] is None and got["agreement"] is None


# ------------------------------------------------------------------ classification


def test_classifier_metrics_match_sklearn(blobs):
    from sklearn import metrics as skm

    path = blobs["dir"] / "int8.tflite"
    got = evaluate.run(path, blobs["npz"], blobs["json"], blobs["dir"] / "m.json",
                       reference_keras=blobs["dir"] / "trained.keras")
    y = blobs["y_test"]
    micro = tflm_outputs(path, blobs["x_test"])
    assert np.array_equal(tflm_outputs(path, blobs["x_test"], raw=True), litert_outputs(path, blobs["x_test"], raw=True))
    pred = micro.argmax(axis=1)
    m = got["tflm"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    assert got["primary"]["name"] == "accuracy" and got["primary"]["value"] == m["accuracy"]
    assert got["primary"]["runtime"] == "tflm" and got["primary"]["higher_is_better"] is True
    ref = blobs["keras"].predict(blobs["x_test"], verbose=0).argmax(axis=1)
    assert got["agreement"]["top1_agreement_vs_keras"] == pytest.approx(np.mean(ref == pred))
    assert got["keras"]["accuracy"] == pytest.approx(skm.accuracy_score(y, ref))


def test_binary_sigmoid_classifier_thresholded_at_half(blobs, tmp_path):
    from sklearn import metrics as skm

    tf, keras = import_tensorflow()
    keras.utils.set_random_seed(3)
    x, y = blobs["x_test"], (blobs["y_test"] == 1).astype(np.int32)
    model = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(16,)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "bin.tflite"
    path.write_bytes(convert(model, "float", x))
    npz, js = write_dataset(tmp_path, {"task": "binary", "n_classes": 2}, x_train=x, y_train=y, x_test=x, y_test=y)
    got = evaluate.run(path, npz, js, tmp_path / "m.json", reference_keras=None)
    pred = (tflm_outputs(path, x)[:, 0] >= 0.5).astype(int)
    m = got["tflm"]
    assert m["average"] == "binary"
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()


def test_binary_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    m = metrics.classification_metrics(y, pred, 2, binary=True)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    # no positive prediction at all: precision is 0, not a crash
    assert metrics.classification_metrics(y, np.zeros(200, int), 2, binary=True)["precision"] == 0.0


def test_hybrid_model_records_tflm_error_and_uses_litert(blobs):
    path = blobs["dir"] / "hybrid.tflite"
    got = evaluate.run(path, blobs["npz"], blobs["json"], blobs["dir"] / "mh.json", reference_keras=None)
    assert set(got["tflm"]) <= {"error", "arena_size"}
    assert "INT8" in got["tflm"]["error"] and "quantization" in got["tflm"]["error"]
    pred = litert_outputs(path, blobs["x_test"]).argmax(axis=1)
    assert got["litert"]["accuracy"] == pytest.approx(np.mean(pred == blobs["y_test"]))
    assert got["primary"]["runtime"] == "litert" and got["primary"]["value"] == got["litert"]["accuracy"]


# ------------------------------------------------------------------ anomaly detection


def _linear_autoencoder(keras, basis: np.ndarray, window: tuple[int, ...] | None = None):
    """A real Keras autoencoder whose weights are the projection on `basis` (orthonormal rows)."""
    dim = basis.shape[1]
    layers = []
    if window:
        layers += [keras.layers.Flatten(input_shape=window)]
    enc = keras.layers.Dense(basis.shape[0], use_bias=False, **({} if window else {"input_shape": (dim,)}))
    dec = keras.layers.Dense(dim, use_bias=False)
    layers += [enc, dec] + ([keras.layers.Reshape(window)] if window else [])
    model = keras.Sequential(layers)
    enc.set_weights([basis.T.astype(np.float32)])
    dec.set_weights([basis.astype(np.float32)])
    return model


def _anomaly_data(rng, n_train, n_test, dim, basis, blocks):
    def normal(n):
        return (rng.normal(0, 1, (n, basis.shape[0])) @ basis + rng.normal(0, 0.02, (n, dim))).astype(np.float32)

    x_train = normal(n_train)
    x_test = normal(n_test)
    labels = np.zeros(n_test, np.int32)
    for a, b in blocks:
        x_test[a:b] = rng.normal(0, 1, (b - a, dim)).astype(np.float32)
        labels[a:b] = 1
    return x_train, x_test, labels


def test_anomaly_pointwise_threshold_and_detection(tmp_path):
    tf, keras = import_tensorflow()
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(8, 2)))[0].T  # 2 orthonormal rows in R^8
    x_train, x_test, labels = _anomaly_data(rng, 300, 200, 8, basis, [(40, 50), (120, 135), (180, 190)])
    path = tmp_path / "ae.tflite"
    path.write_bytes(convert(_linear_autoencoder(keras, basis), "float", x_train))
    npz, js = write_dataset(tmp_path, {"task": "autoencoder"}, x_train=x_train, y_train=x_train,
                            x_test=x_test, y_test=x_test, is_anomaly_test=labels)
    got = evaluate.run(path, npz, js, tmp_path / "m.json", reference_keras=None,
                       anomaly={"k": 3, "mode": "pointwise", "vote_window": 5})
    micro_train = tflm_outputs(path, x_train)
    errs = np.mean((micro_train - x_train).astype(np.float64) ** 2, axis=1)
    m = got["tflm"]
    assert m["threshold"] == pytest.approx(errs.mean() + 3 * errs.std(), rel=1e-5)
    flags = np.mean((tflm_outputs(path, x_test) - x_test).astype(np.float64) ** 2, axis=1) > m["threshold"]
    assert m["f1"] == pytest.approx(metrics.classification_metrics(labels, flags.astype(int), 2, binary=True)["f1"])
    assert m["f1"] > 0.8 and m["recall"] == 1.0
    assert got["primary"] == {"name": "f1", "value": m["f1"], "higher_is_better": True, "runtime": "tflm"}
    v = m["voted"]
    # the learned vote threshold flags no training group, and one member fewer would
    train_counts = (errs > m["threshold"])[:300].reshape(60, 5).sum(axis=1)
    assert v["vote_min_members"] == train_counts.max() + 1
    assert v["groups"] == 40 and v["f1"] > 0.8


def test_anomaly_window_mode_with_per_step_labels(tmp_path):
    tf, keras = import_tensorflow()
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.normal(size=(12, 3)))[0].T
    x_train, x_test, labels = _anomaly_data(rng, 200, 120, 12, basis, [(30, 40), (80, 90)])
    x_train, x_test = x_train.reshape(-1, 6, 2), x_test.reshape(-1, 6, 2)
    steps = np.repeat(labels[:, None], 6, axis=1)
    steps[labels == 1, :3] = 0  # anomaly in the second half of the window only
    path = tmp_path / "ae.tflite"
    path.write_bytes(convert(_linear_autoencoder(keras, basis, window=(6, 2)), "int8", x_train))
    npz, js = write_dataset(tmp_path, {"task": "autoencoder"}, x_train=x_train, y_train=x_train,
                            x_test=x_test, y_test=x_test, is_anomaly_test=steps.astype(np.int32))
    got = evaluate.run(path, npz, js, tmp_path / "m.json", reference_keras=None,
                       anomaly={"mode": "window", "k": 2.5, "vote_window": 0})
    assert got["tflm"]["mode"] == "window" and "voted" not in got["tflm"]
    assert got["tflm"]["f1"] > 0.8
    with pytest.raises(TinyMLError, match="window"):
        evaluate.run(path, npz, js, tmp_path / "m2.json", reference_keras=None, anomaly={"mode": "pointwise"})


# ------------------------------------------------------------------ user mistakes, lazy imports


def test_user_mistakes_raise_tinymlerror(sine, tmp_path):
    with pytest.raises(TinyMLError, match="does not exist.*doit convert"):
        evaluate.run(tmp_path / "nope.tflite", sine["npz"], sine["json"], tmp_path / "m.json", reference_keras=None)
    bad = tmp_path / "bad.json"
    write_dataset_record(bad, task="clustering")
    with pytest.raises(TinyMLError, match="clustering.*allowed"):
        evaluate.run(sine["dir"] / "float.tflite", sine["npz"], bad, tmp_path / "m.json", reference_keras=None)
    with pytest.raises(TinyMLError, match="Keras reference.*doit train"):
        evaluate.run(sine["dir"] / "float.tflite", sine["npz"], sine["json"], tmp_path / "m.json",
                     reference_keras=tmp_path / "missing.keras")
    other = tmp_path / "other"
    npz, js = write_dataset(other, {"task": "regression"}, x_test=np.zeros((4, 3), np.float32), y_test=np.zeros(4))
    with pytest.raises(TinyMLError, match=r"expects input samples of shape \[1\] but the dataset gives \[3\]"):
        evaluate.run(sine["dir"] / "float.tflite", npz, js, tmp_path / "m.json", reference_keras=None)
    with pytest.raises(TinyMLError, match="mode"):
        evaluate._anomaly_settings({"mode": "sliding"})
    assert not (tmp_path / "m.json").exists()


def test_no_tensorflow_without_reference(sine, tmp_path):
    code = (
        "import sys; from pathlib import Path; import doit_tinyml.evaluate as e\n"
        "assert 'numpy' not in sys.modules and 'tensorflow' not in sys.modules, 'heavy import at module level'\n"
        f"e.run(Path({str(sine['dir'] / 'int8.tflite')!r}), Path({str(sine['npz'])!r}), Path({str(sine['json'])!r}),"
        f" Path({str(tmp_path / 'm.json')!r}), reference_keras=None)\n"
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "m.json")["primary"]["runtime"] == "tflm"


# ------------------------------------------------------------------ the voting rules and the error measure, constructed


def _flag_pattern(counts, vw):
    """Per-sample errors (mean absolute, one feature) whose flagged members per group of `vw` are `counts`.

    A flagged sample has error 1, the others 0; with k = 0 the threshold is the training mean (< 1).
    """
    e = np.zeros(len(counts) * vw)
    for g, c in enumerate(counts):
        e[g * vw: g * vw + c] = 1.0
    return e.reshape(-1, 1)


def _voted(train_counts, test_counts, test_truth, **settings):
    vw = 5
    s = {"k": 0.0, "mode": "pointwise", "vote_window": vw, "vote_threshold": "max", "vote_k": 1.0, "error": "mae",
         **settings}
    e_train, e_test = _flag_pattern(train_counts, vw), _flag_pattern(test_counts, vw)
    labels = np.repeat(np.asarray(test_truth), vw)
    inputs = {"train": np.zeros_like(e_train), "test": np.zeros_like(e_test)}
    outs = {"train": e_train, "test": e_test}
    m, flags = metrics.anomaly_metrics(outs, inputs, labels, s, Path("dataset.npz"))
    return m


TRAIN_COUNTS = [0, 0, 0, 0, 0, 0, 0, 0, 1, 4]        # one odd training group with 4 of 5 members flagged
TEST_COUNTS = [3, 0, 1, 3, 0, 2, 1, 0]
TEST_TRUTH = [1, 0, 0, 1, 0, 1, 0, 0]                # the groups with 2 or 3 flagged members are the anomalies


def test_published_vote_rule_mean_plus_k_std():
    m = _voted(TRAIN_COUNTS, TEST_COUNTS, TEST_TRUTH, vote_threshold="mean+k*std", vote_k=1.0)
    v = m["voted"]
    counts = np.array(TRAIN_COUNTS, dtype=float)
    t = counts.mean() + 1.0 * counts.std()           # 0.5 + sqrt(1.45) = 1.704
    assert v["vote_rule"] == "mean+k*std" and v["vote_k"] == 1.0
    assert v["vote_count_threshold"] == pytest.approx(t) and v["vote_min_members"] == 2
    assert v["train_group_counts"] == {"mean": 0.5, "std": pytest.approx(counts.std()), "max": 4, "groups": 10}
    # groups with 3, 3 and 2 flagged members exceed T: exactly the anomalous ones
    assert v["confusion_matrix"] == [[5, 0], [0, 3]] and v["f1"] == 1.0
    # unvoted: 8 of 15 anomalous samples flagged, 2 normal ones too
    assert m["precision"] == pytest.approx(0.8) and m["recall"] == pytest.approx(8 / 15)
    assert m["f1"] == pytest.approx(2 * 0.8 * (8 / 15) / (0.8 + 8 / 15))


def test_max_vote_rule_is_the_most_flagged_training_group():
    v = _voted(TRAIN_COUNTS, TEST_COUNTS, TEST_TRUTH, vote_threshold="max")["voted"]
    assert v["vote_rule"] == "max" and v["vote_count_threshold"] == 4.0 and v["vote_min_members"] == 5
    assert v["f1"] == 0.0 and v["confusion_matrix"] == [[5, 0], [3, 0]]  # one odd training group hides every anomaly
    assert v["distinct_predictions"] == 1


def test_vote_threshold_is_strict():
    """A group whose flagged count equals T is normal (count > T is anomalous)."""
    # training counts 0, 2, 0, 2: mean 1, std 1; vote_k = 1 gives T = 2 exactly
    v = _voted([0, 2, 0, 2], [2, 3, 1], [0, 1, 0], vote_threshold="mean+k*std", vote_k=1.0)["voted"]
    assert v["vote_count_threshold"] == 2.0 and v["vote_min_members"] == 3
    assert v["confusion_matrix"] == [[2, 0], [0, 1]]
    # vote_k = 0: T = the mean, 1: two flagged members are enough
    v = _voted([0, 2, 0, 2], [2, 3, 1], [0, 1, 0], vote_threshold="mean+k*std", vote_k=0.0)["voted"]
    assert v["vote_count_threshold"] == 1.0 and v["vote_min_members"] == 2
    # no training group flagged at all: T = 0, one flagged member makes a group anomalous, none never does
    v = _voted([0, 0, 0], [0, 1], [0, 1], vote_threshold="mean+k*std", vote_k=3.0)["voted"]
    assert v["vote_count_threshold"] == 0.0 and v["confusion_matrix"] == [[1, 0], [0, 1]]


def test_vote_threshold_above_the_window_is_capped():
    v = _voted([5, 5, 5, 0], [5, 4], [1, 0], vote_threshold="max")["voted"]
    assert v["vote_count_threshold"] == 5.0 and v["vote_min_members"] == 5 and "capped" in v["threshold_rule"]
    assert v["confusion_matrix"] == [[1, 0], [0, 1]]


def test_reconstruction_error_mse_or_mae():
    x = np.zeros((2, 2), np.float32)
    x_hat = np.array([[1.0, 3.0], [0.0, -2.0]], np.float32)
    assert metrics.reconstruction_error(x, x_hat, "mse").tolist() == [5.0, 2.0]
    assert metrics.reconstruction_error(x, x_hat, "mae").tolist() == [2.0, 1.0]
    m = _voted([0, 0, 1], [0, 3], [0, 1], error="mse")
    assert m["reconstruction_error"] == "mse" and m["voted"]["vote_rule"] == "max"
    with pytest.raises(TinyMLError, match="error"):
        metrics.reconstruction_error(x, x_hat, "rmse")


def test_distinct_predictions_are_recorded():
    y = np.array([0, 1, 1, 0])
    m, _ = metrics.supervised_metrics("binary", np.full((4, 1), 0.9, np.float32), y, {}, Path("d.npz"))
    assert m["distinct_predictions"] == 1 and m["recall"] == 1.0 and m["precision"] == 0.5
    m, _ = metrics.supervised_metrics("regression", np.array([[1.0], [2.0], [1.0]], np.float32),
                                      np.array([1.0, 2.0, 3.0]), {}, Path("d.npz"))
    assert m["distinct_predictions"] == 2


def test_anomaly_settings_are_checked():
    s = evaluate._anomaly_settings({"vote_threshold": "mean+k*std", "vote_k": 2, "error": "mae"})
    assert s["vote_k"] == 2.0 and s["error"] == "mae"
    for bad, match in (({"vote_threshold": "median"}, "vote_threshold"), ({"vote_k": -1}, "vote_k"),
                       ({"vote_k": "x"}, "vote_k"), ({"error": "rmse"}, "error")):
        with pytest.raises(TinyMLError, match=match):
            evaluate._anomaly_settings(bad)
