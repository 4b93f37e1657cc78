"""Convert stage: (compressed or trained) Keras model -> model.tflite + convert.json.

Conversion methods: `keras` (from_keras_model), `saved_model` (export, then from_saved_model),
`concrete` (a concrete function with a fixed batch-1 input signature), `auto` (all three; keep the
smallest whose outputs match the Keras model). Post-training quantization: float32 (none),
dynamic range (hybrid), float16, full integer int8 (int8/uint8/float32 I/O), 16x8.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .engine import artifacts, litert
from .engine.errors import TinyMLError
from .engine.io import read_npz, write_bytes
from .engine.keras_io import import_tensorflow, load_model

METHODS = ("keras", "saved_model", "concrete")


def _make_converter(tf, model, method: str, workdir: Path):
    input_shape = tuple(model.input_shape[1:])
    if method == "keras":
        return tf.lite.TFLiteConverter.from_keras_model(model)
    if method == "saved_model":
        export = workdir / "saved_model"
        # A serving signature with batch 1, so the .tflite has a fixed shape like the others.
        fn = tf.function(lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec((1,) + input_shape, tf.float32, name="input")])
        tf.saved_model.save(model, str(export), signatures=fn.get_concrete_function())
        return tf.lite.TFLiteConverter.from_saved_model(str(export))
    if method == "concrete":
        fn = tf.function(lambda x: model(x, training=False))
        cf = fn.get_concrete_function(tf.TensorSpec((1,) + input_shape, tf.float32, name="input"))
        return tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    raise TinyMLError(f"unknown converter {method!r}; allowed: {', '.join(METHODS)}, auto")


def _configure(tf, conv, quantization: str, io: str, rep_data, qat: bool, per_channel: bool = True) -> None:
    if quantization == "float32" and not qat:
        return
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "dynamic":
        return
    if quantization == "float16":
        conv.target_spec.supported_types = [tf.float16]
        return

    def representative():
        for x in rep_data:
            yield [x[None, ...]]

    conv.representative_dataset = representative
    io_dtype = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}[io]
    if quantization == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif quantization == "int16x8":
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = io_dtype
    conv.inference_output_type = io_dtype
    if not per_channel:  # one scale per weight tensor: smaller files, usually a little less accurate
        conv._experimental_disable_per_channel = True


def _tolerance(quantization: str, ref) -> float:
    import numpy as np

    span = float(np.max(ref) - np.min(ref)) or 1.0
    return {"float32": 1e-4 * max(1.0, float(np.max(np.abs(ref)))), "float16": 1e-2 * span,
            "dynamic": 5e-2 * span}.get(quantization, 0.15 * span)


def run(model_path: Path, dataset_npz: Path, out_tflite: Path, out_json: Path, *, quantization: str,
        io: str, converter: str, representative_samples: int, qat: bool = False,
        seed: int = 0, per_channel: bool = True) -> dict:
    import numpy as np

    tf, _ = import_tensorflow()
    model = load_model(model_path)
    data = read_npz(dataset_npz)
    rng = np.random.default_rng(seed)
    x_train = data["x_train"]
    pick = rng.choice(len(x_train), size=min(representative_samples, len(x_train)), replace=False)
    rep = x_train[np.sort(pick)]
    methods = METHODS if converter == "auto" else (converter,)
    results, errors = {}, {}
    check_x = data["x_test"][:32]
    Path(out_tflite).parent.mkdir(parents=True, exist_ok=True)
    ref = model.predict(check_x, verbose=0)
    for method in methods:
        with tempfile.TemporaryDirectory(dir=Path(out_tflite).parent) as work:
            try:
                conv = _make_converter(tf, model, method, Path(work))
                _configure(tf, conv, quantization, io, rep, qat, per_channel)
                blob = conv.convert()
            except TinyMLError:
                raise
            except Exception as e:  # the converter's own error: name the method and the cause
                errors[method] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
                continue
        outs = litert.run(blob, check_x, f"the {method} conversion of {model_path}")
        err = float(np.max(np.abs(outs.reshape(ref.shape) - ref)))
        results[method] = {"bytes": len(blob), "max_abs_error_vs_keras": err,
                           "matches": err <= _tolerance(quantization if not qat else "int8", ref), "_blob": blob}
    if not results:
        detail = "; ".join(f"{m}: {e}" for m, e in errors.items())
        raise TinyMLError(f"converting {model_path} ({quantization}) failed with every method tried: {detail}")
    if converter == "auto":
        ok = {m: r for m, r in results.items() if r["matches"]} or results
        chosen = min(ok, key=lambda m: (ok[m]["bytes"], METHODS.index(m)))
    else:
        chosen = converter
    write_bytes(out_tflite, results[chosen]["_blob"])
    record = artifacts.Convert(
        converter=converter, chosen=chosen, quantization=quantization, io=io, qat=qat,
        representative_samples=int(len(rep)), tflite_bytes=results[chosen]["bytes"],
        keras_bytes=Path(model_path).stat().st_size,
        methods={m: {k: v for k, v in r.items() if k != "_blob"} for m, r in results.items()}, errors=errors,
        per_channel=per_channel if quantization in ("int8", "int16x8") else None)
    artifacts.write(out_json, record)
    return record.to_dict()
