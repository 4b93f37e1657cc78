"""Knowledge distillation (`method = "distill"`): train a smaller student from the teacher's outputs.

Classification (loss sparse_categorical_crossentropy / categorical_crossentropy / binary_crossentropy):
the student learns from the teacher's soft targets at `temperature` T (Hinton et al. 2015):

    loss = alpha * CE(hard labels, student) + (1 - alpha) * T^2 * CE(softmax(z_t / T), softmax(z_s / T))

The logits z are recovered from the models' probability outputs as log(p) (softmax is shift-invariant,
so softmax(log p / T) is exactly the tempered distribution) or log(p / (1 - p)) for a sigmoid output.
Classifier outputs are therefore expected to be probabilities (softmax / sigmoid last layer), the
convention the train stage uses.

Regression and autoencoders: the teacher's outputs are the soft targets:

    loss = alpha * loss(y, student) + (1 - alpha) * MSE(teacher(x), student)

No TensorFlow or numpy at import time.
"""
from __future__ import annotations

from ..errors import TinyMLError
from ..keras_io import build_model, import_tensorflow

_EPS = 1e-7


def _kind(loss: str) -> str:
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", str(loss))
    name = name.lower()
    if "sparse_categorical_crossentropy" in name:
        return "sparse"
    if "categorical_crossentropy" in name:
        return "onehot"
    if "binary_crossentropy" in name:
        return "binary"
    return "regression"


def _soft_targets(teacher_out, kind: str, t: float):
    import numpy as np

    p = np.clip(teacher_out.astype("float64"), _EPS, 1 - _EPS)
    if kind == "binary" and p.shape[-1] == 1:
        z = np.log(p / (1 - p)) / t
        return (1 / (1 + np.exp(-z))).astype("float32")
    z = np.log(p) / t
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype("float32")


def make_loss(kind: str, base_loss: str, n_hard: int, temperature: float, alpha: float):
    """A Keras loss over packed targets: y_true = [hard label(s) (n_hard columns) | soft targets]."""
    tf, keras = import_tensorflow()
    t = float(temperature)
    a = float(alpha)
    base = keras.losses.get(base_loss)

    def distill_loss(y_true, y_pred):
        y_pred = tf.reshape(y_pred, [tf.shape(y_pred)[0], -1])
        hard, soft = y_true[:, :n_hard], y_true[:, n_hard:]
        if kind == "regression":
            hard_l = base(hard, y_pred)
            soft_l = tf.reduce_mean(tf.square(soft - y_pred), axis=-1)
            return a * hard_l + (1 - a) * soft_l
        p = tf.clip_by_value(y_pred, _EPS, 1 - _EPS)
        if kind == "sparse":
            hard_l = keras.losses.sparse_categorical_crossentropy(tf.cast(hard[:, 0], tf.int32), p)
        elif kind == "onehot":
            hard_l = keras.losses.categorical_crossentropy(hard, p)
        else:
            hard_l = keras.losses.binary_crossentropy(hard, p)
        if kind == "binary" and y_pred.shape[-1] == 1:
            zs = tf.math.log(p / (1 - p)) / t
            soft_l = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=soft, logits=zs), axis=-1)
        else:
            log_ps = tf.nn.log_softmax(tf.math.log(p) / t, axis=-1)
            soft_l = -tf.reduce_sum(soft * log_ps, axis=-1)
        return a * hard_l + (1 - a) * (t * t) * soft_l

    return distill_loss


def apply(teacher, step: dict, ctx):
    """Build the student from step["layers"], distill it from `teacher`, return (student, record)."""
    import numpy as np

    from .remove import count_macs

    x, y = ctx.data["x_train"], ctx.data["y_train"]
    input_shape = tuple(teacher.input_shape[1:])
    student = build_model(input_shape, [dict(l) for l in step["layers"]])
    if tuple(student.output_shape[1:]) != tuple(teacher.output_shape[1:]):
        raise TinyMLError(f"{ctx.label} (distill): the student's output shape {tuple(student.output_shape[1:])} "
                          f"differs from the teacher's {tuple(teacher.output_shape[1:])}; make the student's last "
                          f"layer match the teacher's (same units and activation)")
    kind = _kind(ctx.loss)
    from .common import predict as _predict

    t_out = _predict(teacher, x)
    n = len(x)
    if kind == "regression":
        hard = np.asarray(y, dtype="float32").reshape(n, -1)
        soft = t_out.reshape(n, -1).astype("float32")
    else:
        if kind == "sparse":
            hard = np.asarray(y, dtype="float32").reshape(n, 1)
        else:
            hard = np.asarray(y, dtype="float32").reshape(n, -1)
        soft = _soft_targets(t_out.reshape(n, -1), kind, step["temperature"])
    packed = np.concatenate([hard, soft], axis=1)
    loss = make_loss(kind, ctx.loss, hard.shape[1], step["temperature"], step["alpha"])
    ctx.fit(student, step, y=packed, loss=loss)
    return student, {"kind": kind, "teacher_params": int(teacher.count_params()),
                     "student_params": int(student.count_params()), "teacher_macs": count_macs(teacher),
                     "student_macs": count_macs(student)}
