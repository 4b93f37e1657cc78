"""Weight clustering with tfmot (k-means++, linear, density or random centroids), sparsity-preserving after prune."""
from __future__ import annotations

from ..errors import TinyMLError
from ..keras_io import import_tensorflow
from .common import KERNEL_NAMES, Context, check_graph, layers

def apply(model, step: dict, ctx: Context):
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    ck = tfmot.clustering.keras
    check_graph(model, ctx, "cluster")
    for l in layers(model):
        if isinstance(l, ck.ClusterableLayer):
            continue
        if not clustering_registry.ClusteringRegistry.supports(l):
            raise ctx.layer_error("cluster", l, "cannot be clustered by tfmot (it has weights tfmot's clustering "
                                                "registry does not know)",
                                  "replace the layer, or drop the cluster step from this variant")
    init = {"kmeans++": ck.CentroidInitialization.KMEANS_PLUS_PLUS, "linear": ck.CentroidInitialization.LINEAR,
            "density": ck.CentroidInitialization.DENSITY_BASED,
            "random": ck.CentroidInitialization.RANDOM}[step["init"]]
    _, keras = import_tensorflow()
    fallback = []

    def wrap(layer):
        if type(layer).__name__ == "InputLayer":
            return layer.__class__.from_config(layer.get_config())
        layer_init = init
        if step["init"] == "kmeans++" and not _kmeans_feasible(layer, step["clusters"], ctx.pruned):
            layer_init = ck.CentroidInitialization.LINEAR  # too few (non-zero) weights to sample from
            fallback.append(layer.name)
        return ck.cluster_weights(layer, number_of_clusters=step["clusters"], cluster_centroids_init=layer_init,
                                  preserve_sparsity=ctx.pruned)

    tf, _ = import_tensorflow()
    try:
        clustered = keras.models.clone_model(model, clone_function=wrap)
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise TinyMLError(f"{ctx.label} (cluster): tfmot cannot cluster this model: {str(e).splitlines()[0]}; "
                          f"try init = \"linear\" or fewer clusters") from None
    ctx.fit(clustered, step)
    stripped = ck.strip_clustering(clustered)
    ctx.clustered = True
    return stripped, {"preserve_sparsity": ctx.pruned, "linear_init_for": fallback}


def _kmeans_feasible(layer, clusters: int, preserve_sparsity: bool) -> bool:
    """Whether tfmot's kmeans++ initialisation has enough weights to draw `clusters` centroids from.

    Mirrors tfmot: with preserve_sparsity the non-zero clusters are split between negative and positive
    weights in proportion to their counts, and each side must have at least as many weights as clusters.
    """
    import numpy as np

    for w in layer.weights:
        if w.name.split("/")[-1].split(":")[0] not in KERNEL_NAMES:
            continue
        a = w.numpy().ravel()
        if not preserve_sparsity:
            if a.size < clusters:
                return False
            continue
        neg, pos = int((a < 0).sum()), int((a > 0).sum())
        if neg + pos == 0:
            continue
        n_neg = int(np.round((clusters - 1) * neg / (neg + pos)))
        if n_neg > neg or clusters - 1 - n_neg > pos:
            return False
    return True


