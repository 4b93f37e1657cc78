"""Quantization-aware training with tfmot; prune- and cluster-preserving schemes after those steps."""
from __future__ import annotations

import re

from ..keras_io import _custom_objects as custom_objects
from ..errors import TinyMLError
from .common import Context, check_graph

_QAT_UNSUPPORTED = re.compile(r"Layer (\S+?):<class '([^']+)'> is not supported")


def apply(model, step: dict, ctx: Context):
    import tensorflow_model_optimization as tfmot

    qk = tfmot.quantization.keras
    combine = tfmot.experimental.combine
    check_graph(model, ctx, "qat")
    if ctx.clustered:
        scheme, name = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=ctx.pruned), \
            "Default8BitClusterPreserveQuantizeScheme"
    elif ctx.pruned:
        scheme, name = combine.Default8BitPrunePreserveQuantizeScheme(), "Default8BitPrunePreserveQuantizeScheme"
    else:
        scheme, name = None, "Default8BitQuantizeScheme"
    try:
        annotated = qk.quantize_annotate_model(model)
        conv1d = [l for l in annotated.layers if type(getattr(l, "layer", None)).__name__ == "Conv1D"]
        if conv1d and scheme is None:
            # tfmot's 8-bit registry has no Conv1D entry; per-tensor weight quantization converts cleanly
            # (TFLite runs Conv1D as EXPAND_DIMS + CONV_2D)
            from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
                default_8bit_quantize_registry as reg)

            for l in conv1d:
                l.quantize_config = reg.Default8BitQuantizeConfig(["kernel"], ["activation"], False)
        with qk.quantize_scope(custom_objects()):
            q = qk.quantize_apply(annotated, scheme) if scheme is not None else qk.quantize_apply(annotated)
    except RuntimeError as e:
        m = _QAT_UNSUPPORTED.search(str(e))
        if not m:
            raise TinyMLError(f"{ctx.label} (qat): tfmot cannot quantize this model: {e}") from None
        lname, cls = m.group(1), m.group(2).rsplit(".", 1)[-1]
        if cls == "Conv1D":
            hint = (f" after {'cluster' if ctx.clustered else 'prune'} ({name} covers Dense, Conv2D and "
                    f"DepthwiseConv2D only): drop the {'cluster' if ctx.clustered else 'prune'} step, or the qat "
                    f"step and let conversion quantize post-training with quantization = \"int8\"")
        else:
            hint = "; drop the qat step and let conversion quantize post-training with quantization = \"int8\""
        raise TinyMLError(f"{ctx.label} (qat): layer {lname!r} ({cls}) is not supported by tfmot's "
                          f"quantization-aware training{hint}") from None
    except ValueError as e:
        raise TinyMLError(f"{ctx.label} (qat): tfmot cannot quantize this model: {e}") from None
    ctx.fit(q, step)
    if ctx.clustered:
        q = combine.strip_clustering_cqat(q)
    return q, {"scheme": name, "requires_full_integer": True}


