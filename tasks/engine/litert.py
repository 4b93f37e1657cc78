"""LiteRT (desktop TFLite) on a whole split: batched, dequantised float outputs.

Builtin kernels without XNNPACK, so results do not depend on the machine. A model whose batch
cannot be resized (a reshape with fixed dims) runs one sample at a time.
"""
from __future__ import annotations

from .errors import TinyMLError
from .quant import dequantize, qparams, quantize

LITERT_BATCH = 512


def run(model_bytes: bytes, x, tflite_path):
    """All of x through LiteRT; returns dequantised float32 outputs with x's batch dimension."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def make():
        return Interpreter(model_content=model_bytes,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    try:
        it = make()
    except Exception as e:  # a broken flatbuffer is an upstream problem the user must see
        raise TinyMLError(f"evaluate: LiteRT cannot load {tflite_path}: {e}. Delete it and run `doit` again (the convert stage rewrites it).") from None
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1:
        raise TinyMLError(
            f"evaluate: {tflite_path} has {len(ins)} inputs; the evaluate stage supports single-input models."
        )
    din, dout = ins[0], outs[0]
    shape = [int(s) for s in din["shape"]]
    sample_shape = tuple(shape[1:])
    if tuple(x.shape[1:]) != sample_shape:
        if int(np.prod(x.shape[1:])) == int(np.prod(sample_shape)):
            x = x.reshape((len(x),) + sample_shape)
        else:
            raise TinyMLError(
                f"evaluate: {tflite_path} expects input samples of shape {list(sample_shape)} but the dataset gives "
                f"{list(x.shape[1:])}; the model and dataset.npz disagree (rebuild with `doit`)."
            )
    s_in, z_in = qparams(din)
    s_out, z_out = qparams(dout)
    xq = quantize(x, din["dtype"], s_in, z_in)

    def invoke_all(batch: int):
        it = make()
        results, current = [], None
        for i in range(0, len(xq), batch):
            chunk = xq[i:i + batch]
            if current != len(chunk):
                if batch > 1:
                    it.resize_tensor_input(din["index"], [len(chunk), *sample_shape])
                it.allocate_tensors()
                current = len(chunk)
            it.set_tensor(din["index"], chunk)
            it.invoke()
            results.append(dequantize(it.get_tensor(dout["index"]).copy(), s_out, z_out))
        return results

    try:
        results = invoke_all(LITERT_BATCH)
    except Exception:  # a model with a hard batch of 1 (e.g. a reshape with fixed dims): one at a time
        try:
            results = invoke_all(1)
        except Exception as e:
            raise TinyMLError(f"evaluate: LiteRT cannot run {tflite_path}: {e}") from None
    return np.concatenate(results, axis=0)
