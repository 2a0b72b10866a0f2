"""Distribution strategies by name, which process writes files, and Keras' multi-worker fix.

``auto`` picks a TPU, several workers (``TF_CONFIG``), several GPUs or one device; see
:func:`build_strategy`. :func:`lost_worker` turns the error a survivor of a lost worker
sees into one line that names the worker.
"""

import contextlib
import json
import os
import re

import tensorflow as tf

from keras_resnet.training.config import STRATEGIES

def _tpu_hinted():
    """A TPU resolver is only asked where a TPU can be (asking elsewhere may hang on GCE metadata)."""
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or os.path.exists("/dev/accel0")
        or os.path.exists("/dev/vfio/0")
    )


def _connect_tpu():
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _tf_config_workers():
    try:
        cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={os.environ['TF_CONFIG']!r}")
    cluster = cfg.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def build_strategy(name: str = "auto"):
    """A ``tf.distribute.Strategy`` by name.

    - ``"auto"``: a TPU when a resolver finds one, ``MultiWorkerMirroredStrategy`` when
      ``TF_CONFIG`` names several workers, ``MirroredStrategy`` over all GPUs when there
      are several, else TensorFlow's default strategy (one device).
    - ``"one-device"``: ``OneDeviceStrategy`` on the first GPU, or the CPU.
    - ``"mirrored"``: ``MirroredStrategy`` over all GPUs; without GPUs over all logical
      CPU devices (``tf.config.set_logical_device_configuration`` makes several).
    - ``"multi-worker"``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``.
    - ``"tpu"``: ``TPUStrategy`` (ValueError when no TPU is found).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "auto":
        if _tpu_hinted():
            try:
                return _connect_tpu()
            except (ValueError, RuntimeError, tf.errors.OpError):
                pass
        if _tf_config_workers() > 1:
            return build_strategy("multi-worker")
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "one-device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "strategy='multi-worker' needs the TF_CONFIG environment variable "
                "(cluster and task of this worker). Received: TF_CONFIG unset"
            )
        _tf_config_workers()
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        return _connect_tpu()
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ValueError(f"strategy='tpu' but no TPU was found ({e}). Received: strategy='tpu'")


def is_chief(strategy):
    """Whether this process writes files: always, except for non-chief multi-worker tasks."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


@contextlib.contextmanager
def _multi_worker_fit_workaround(model, strategy, sample_batch):
    """Make Keras 3 ``model.fit`` / ``evaluate`` work under MultiWorkerMirroredStrategy.

    Upstream: https://github.com/keras-team/keras/issues/20585 and
    https://github.com/tensorflow/tensorflow/issues/72388. Two faults in
    ``keras/src/backend/tensorflow/trainer.py`` (seen in Keras 3.5 to 3.15):

    1. ``_maybe_symbolic_build`` averages the first *input batch* across workers with
       ``strategy.reduce(..., axis=None)`` just to learn its shapes; the collective
       cross-device ops cannot reduce eager ``PerReplica`` inputs ("Attempt to convert a
       value (PerReplica...)"). We build from one local batch instead: only shapes matter.
    2. ``reduce_per_replica(..., reduction="auto")`` reduces the scalar logs of each step
       with ``strategy.reduce("MEAN", v, axis=0)``, which fails on 0-d tensors ("Invalid
       reduction dimension 0"). The mean over replicas is ``axis=None``.

    Gradients are all-reduced by the optimizer as usual; only these two reductions change.
    Everything else is plain ``model.fit``. This is the only place the package patches
    Keras, only for multi-worker runs, and only for the duration of the call.
    ``tests/test_training.py::test_two_workers_train_to_identical_weights`` pins it.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=sample_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    model._maybe_symbolic_build = maybe_symbolic_build
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        del model._maybe_symbolic_build




def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_name(strategy) -> str:
    """"worker 1" (task type and index of this process), or "this process"."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "this process"
    return f"{resolver.task_type} {resolver.task_id}"


# What a survivor's collective ops report when a peer went away (gRPC, TF 2.x).
_LOST = ("Collective ops is aborted", "failed to connect", "Socket closed", "Connection reset",
         "is not available", "Deadline Exceeded", "unreachable", "heartbeat")


def lost_worker(error, strategy):
    """The peer a collective error blames (e.g. "worker 1 (127.0.0.1:2223)"), "a worker"
    when the message names none, or None when ``error`` is not a lost-worker error."""
    if not is_multi_worker(strategy) or not isinstance(error, tf.errors.OpError):
        return None
    text = str(error)
    if not isinstance(error, (tf.errors.UnavailableError, tf.errors.CancelledError,
                              tf.errors.DeadlineExceededError, tf.errors.InternalError,
                              tf.errors.AbortedError)) or not any(k.lower() in text.lower() for k in _LOST):
        return None
    me = worker_name(strategy).split()
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    for job, task in re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text):
        if [job, task] != me:
            address = cluster.get(job, [])[int(task)] if int(task) < len(cluster.get(job, [])) else "?"
            return f"{job} {task} ({address})"
    for job, addresses in cluster.items():
        for task, address in enumerate(addresses):
            if address in text and [job, str(task)] != me:
                return f"{job} {task} ({address})"
    return "a worker"
