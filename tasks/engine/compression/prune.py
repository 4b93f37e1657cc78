"""Magnitude pruning with tfmot: polynomial or constant sparsity schedule, or 2:4 structured sparsity."""
from __future__ import annotations

from ..errors import TinyMLError
from ..keras_io import import_tensorflow
from .common import KERNEL_NAMES, Context, check_graph, layers

def apply(model, step: dict, ctx: Context):
    _, keras = import_tensorflow()
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    sk = tfmot.sparsity.keras
    check_graph(model, ctx, "prune")
    m_by_n = step["structure"] == "2:4"
    for l in layers(model):
        if isinstance(l, sk.PrunableLayer) or hasattr(l, "get_prunable_weights"):
            continue
        if not prune_registry.PruneRegistry.supports(l):
            raise ctx.layer_error("prune", l, "cannot be pruned by tfmot", "remove this layer or drop the prune step")
        if m_by_n:
            kernels = [w for w in l.weights if w.name.split("/")[-1].split(":")[0] in KERNEL_NAMES]
            bad = [w for w in kernels if len(w.shape) not in (2, 4)]
            if bad:
                raise ctx.layer_error("prune", l, f"has a rank-{len(bad[0].shape)} kernel and tfmot's 2:4 "
                                                 f"sparsity supports only Dense and Conv2D (rank 2 and 4) kernels",
                                      "use structure = \"unstructured\" for this model, or Conv2D layers")
    n_steps = ctx.steps_per_epoch(step["batch_size"]) * step["epochs"]
    begin = step["begin_step"]
    end = step["end_step"] if step["end_step"] is not None else n_steps
    if end > n_steps or end <= begin:
        raise TinyMLError(f"{ctx.label} (prune): the schedule runs from begin_step {begin} to end_step {end}, "
                          f"but training has only {n_steps} steps (epochs {step['epochs']} x "
                          f"{ctx.steps_per_epoch(step['batch_size'])} batches); raise epochs or lower the steps")
    span = end - begin
    freq = step["frequency"] or max(1, min(100, span // 10))
    end = begin + (span // freq) * freq  # the mask is updated on the last step of the schedule
    if m_by_n:  # tfmot sets 2:4 masks on the first step; the schedule only has to be valid
        sched = sk.ConstantSparsity(0.5, begin, end_step=end, frequency=freq)
    elif step["schedule"] == "polynomial":
        sched = sk.PolynomialDecay(step["initial_sparsity"], step["final_sparsity"], begin, end, frequency=freq)
    else:
        sched = sk.ConstantSparsity(step["sparsity"], begin, end_step=end, frequency=freq)
    kwargs = {"pruning_schedule": sched}
    if m_by_n:
        kwargs["sparsity_m_by_n"] = (2, 4)
    try:
        pruned = sk.prune_low_magnitude(model, **kwargs)
    except ValueError as e:
        raise TinyMLError(f"{ctx.label} (prune): tfmot cannot prune this model: {e}") from None
    ctx.fit(pruned, step, callbacks=[sk.UpdatePruningStep()])
    stripped = sk.strip_pruning(pruned)
    ctx.pruned = True
    return stripped, {"schedule_steps": {"begin_step": begin, "end_step": end, "frequency": freq,
                                         "total_steps": n_steps}}


