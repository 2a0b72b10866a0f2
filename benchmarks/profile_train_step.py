"""Where a training step's time goes, op by op: a TensorFlow profiler trace of ``model.fit`` (issue 6).

    python benchmarks/profile_train_step.py [--model ResNet50] [--image-size 224] [--batch-size 16]
        [--steps 3] [--impls keras_resnet keras.applications] [--onednn default|on|off]
        [--inter-op-threads 1] [--quick] [--keep-trace DIR]

For each implementation, in one process: ``keras_resnet`` is our model compiled as
``keras-resnet train`` compiles it (``keras_resnet.training.compile_model``: SGD momentum
0.9, L2 weight decay 1e-4, sparse categorical crossentropy, accuracy / top-5 metrics),
float32, our fused BatchNormalization; ``keras.applications`` is the same-named
``keras.applications`` model with a plain ``compile`` (the same SGD and loss, Keras'
defaults otherwise, Keras' unfused BatchNormalization). Each runs ``model.fit`` on one
synthetic batch held in memory: 2 warm-up steps, ``--steps`` steps timed without the
profiler, then ``--steps`` steps under ``tf.profiler.experimental``.

The trace (``*.xplane.pb``) is read back offline with the ``XSpace`` protobuf that
TensorFlow ships (``tensorflow.tsl.profiler.protobuf.xplane_pb2``; no extra package).
TensorFlow ops run on the host plane's ``tf_Compute`` threads as events named
``op_name:OpType``; their (self) durations inside the profiled steps are summed by op
type and by the layer and phase (forward / backward / optimizer / rest) their names
say they belong to. ``coverage`` = summed op time / wall time per step: ops on the two
inter-op threads may overlap (coverage can exceed 100%); what is missing is time
outside TensorFlow ops (Python, Keras' loop, executor scheduling). ``busy`` is the union
of the op intervals over the wall time (the fraction of the step at least one op runs).
By default TensorFlow runs one op at a time (``--inter-op-threads 1``): on a 2-core
machine that costs nothing measurable, and each op's duration is then its own, not
stretched by a neighbour competing for the cores.

``--onednn on|off`` sets ``TF_ENABLE_ONEDNN_OPTS`` before TensorFlow loads. TensorFlow
turns oneDNN on by default only on CPUs with AVX-512 VNNI / bf16, AVX-VNNI or AMX; on an AVX2 CPU
its default is off, and the header says which ran.
"""

import argparse
import collections
import glob
import os
import re
import shutil
import tempfile
import time

IMPLS = ("keras_resnet", "keras.applications")

# Op type -> group, for the per-type table. oneDNN's kernels (``_MklNative...``, ``_Mkl...``,
# e.g. ``_MklNativeConv2DBackpropFilterWithBias``) are grouped with the op they implement.
OP_GROUPS = {
    "conv forward": ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedConv2D"),
    "conv backprop input": ("Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput"),
    "conv backprop filter": ("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter"),
    "batch norm (fused kernels)": ("FusedBatchNormV3", "FusedBatchNormGradV3", "_FusedBatchNormEx",
                                   "FusedBatchNormEx", "FusedBatchNormGradEx"),
    "relu": ("Relu", "ReluGrad"),
    "add": ("AddV2", "AddN", "Add"),
    "element-wise / reduction": ("Mul", "Sub", "Square", "SquaredDifference", "Rsqrt", "RsqrtGrad", "Mean",
                                 "Sum", "Neg", "RealDiv", "DivNoNan", "Maximum", "Sqrt", "BroadcastTo", "Tile",
                                 "_FusedMulAdd", "_FusedMulAdd2", "_FusedMulSub", "BiasAddGrad"),
    "cast": ("Cast",),
    "optimizer kernels": ("ResourceApplyMomentum", "ResourceApplyKerasMomentum", "ResourceApplyGradientDescent"),
    "variable read / assign": ("ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"),
    "layout (transpose, pad, slice, reshape)": ("Transpose", "Pad", "StridedSlice", "StridedSliceGrad", "Slice",
                                                "Reshape", "ToTf", "InputConversion", "ConcatV2", "Pack"),
    "data (iterator)": ("IteratorGetNext", "IteratorGetNextAsOptional", "OptionalFromValue",
                        "OptionalGetValue", "OptionalHasValue"),
}
GROUP_OF = {op: group for group, ops in OP_GROUPS.items() for op in ops}


CONV_GROUPS = ("conv forward", "conv backprop input", "conv backprop filter")


def op_group(op_type):
    """The group of an op type (oneDNN's ``_MklNative*`` / ``_Mkl*`` kernels as the op they implement)."""
    base = re.sub(r"^_Mkl(Native)?", "", op_type)
    base = re.sub(r"WithBias$", "", base)
    for name in (op_type, base, "_" + base):
        if name in GROUP_OF:
            return GROUP_OF[name]
    return "other"


# ------------------------------------------------------------------------ reading a trace


def load_xspace(path):
    """The ``XSpace`` protobuf of an ``*.xplane.pb`` file (or of the one file under a profiler logdir)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "**", "*.xplane.pb"), recursive=True))
        if not found:
            raise ValueError(f"no *.xplane.pb under the profiler logdir. Received: path={path!r}")
        path = found[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def _host_plane(space):
    for plane in space.planes:
        if plane.name == "/host:CPU":
            return plane
    raise ValueError(f"the trace has no /host:CPU plane. Planes: {[p.name for p in space.planes]}")


def _op_events(plane):
    """(start_ps, end_ps, self_ps, op_name, op_type, thread) of every TensorFlow op executed."""
    events = []
    for line in plane.lines:
        if not line.name.startswith("tf_"):
            continue  # the python thread's events are eager API calls, not kernels
        ops = []
        for e in line.events:
            md = plane.event_metadata[e.metadata_id]
            op_type, name = md.display_name, md.name[: -len(md.display_name) - 1]
            if md.name == "IteratorGetNextOp::DoCompute":  # the input pipeline, on tf.data's own thread
                op_type, name = "IteratorGetNext", "tf.data/IteratorGetNext"
            elif not op_type or not md.name.endswith(":" + op_type):
                continue  # executor / threadpool bookkeeping, not an op
            start = line.timestamp_ns * 1000 + e.offset_ps
            ops.append([start, start + e.duration_ps, e.duration_ps, name, op_type, line.id])
        ops.sort(key=lambda o: (o[0], -o[1]))
        stack = []  # ops nested on one thread (a function-call op and its body): count self time only
        for op in ops:
            while stack and stack[-1][1] <= op[0]:
                stack.pop()
            if stack:
                stack[-1][2] -= min(op[1], stack[-1][1]) - op[0]
            stack.append(op)
        events.extend(ops)
    return events


def _step_windows(plane, step_event):
    """(start_ps, end_ps) of each call of the step function on the python thread."""
    windows = []
    for line in plane.lines:
        if line.name != "python":
            continue
        for e in line.events:
            md = plane.event_metadata[e.metadata_id]
            if md.name == step_event:
                start = line.timestamp_ns * 1000 + e.offset_ps
                windows.append((start, start + e.duration_ps))
    return sorted(windows)


def _union_ps(intervals):
    total, end = 0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def _layer_name_of(op_name, model_name, layer_names):
    """Name of the Keras layer an op belongs to: one of ``layer_names``, "" for a layer
    of the model not among them, None outside the model (loss, optimizer, weight decay, ...)."""
    parts = op_name.split("/")
    for i, part in enumerate(parts[:-1]):
        if re.fullmatch(re.escape(model_name) + r"(_\d+)?", part):
            layer = parts[i + 1]
            for candidate in (layer, re.sub(r"_\d+$", "", layer)):
                if candidate in layer_names:
                    return candidate
            return ""
    return None


def _phase_of(op_name, op_type, model_name, optimizer_name):
    parts = [p.lower() for p in op_name.split("/")]
    if op_group(op_type) == "data (iterator)":
        return "data"
    if "gradient_tape" in parts:
        return "backward"
    if optimizer_name.lower() in parts:
        return "optimizer"
    if any(re.fullmatch(re.escape(model_name.lower()) + r"(_\d+)?", p) for p in parts):
        return "forward"
    if "compile_loss" in parts:
        return "loss"
    return "rest"


def aggregate(space, *, model_name, layer_classes=None, optimizer_name="SGD",
              step_event="multi_step_on_iterator"):
    """Per-step op time of a ``model.fit`` trace, by op type and by layer class x phase.

    The window is from the start of the first call of Keras' step function
    (``step_event`` on the python thread) to the end of the last; ops are counted when
    they start inside it. Returns a dict: ``steps``, ``wall_ms`` (per step), ``op_ms``
    (summed op self time per step), ``coverage`` (op_ms / wall_ms), ``busy`` (union of
    op intervals / wall), ``by_type`` (list of dicts ``op_type, group, ms, share,
    count`` per step, largest first), ``by_layer`` (``{(layer class or phase label,
    phase): ms}``), ``by_conv`` (``{(layer name, conv group): ms}`` for the ops of
    :data:`CONV_GROUPS`: each convolution layer's forward, input and filter gradient).
    """
    plane = _host_plane(space)
    windows = _step_windows(plane, step_event)
    if not windows:
        raise ValueError(f"no {step_event!r} event in the trace: was a model.fit step profiled?")
    lo, hi = windows[0][0], windows[-1][1]
    steps = len(windows)
    wall_ps = (hi - lo) / steps
    ops = [o for o in _op_events(plane) if lo <= o[0] < hi]
    by_type = collections.defaultdict(lambda: [0, 0])
    by_layer = collections.Counter()
    by_conv = collections.Counter()
    layer_classes = layer_classes or {}
    for start, end, self_ps, name, op_type, _ in ops:
        by_type[op_type][0] += self_ps
        by_type[op_type][1] += 1
        phase = _phase_of(name, op_type, model_name, optimizer_name)
        layer_name = _layer_name_of(name, model_name, layer_classes)
        layer = None  # the layer's class, for the model's forward and backward ops
        if layer_name is not None and phase in ("forward", "backward"):
            layer = layer_classes.get(layer_name, "other layer")
        by_layer[(layer or phase, phase)] += self_ps / steps / 1e9
        group = op_group(op_type)
        if group in CONV_GROUPS:
            by_conv[(layer_name, group)] += self_ps / steps / 1e9
    op_ps = sum(v[0] for v in by_type.values()) / steps
    rows = [{"op_type": t, "group": op_group(t), "ms": ps / steps / 1e9,
             "share": ps / steps / wall_ps, "count": n / steps} for t, (ps, n) in by_type.items()]
    rows.sort(key=lambda r: -r["ms"])
    return {
        "steps": steps,
        "wall_ms": wall_ps / 1e9,
        "op_ms": op_ps / 1e9,
        "coverage": op_ps / wall_ps,
        "busy": _union_ps([(o[0], o[1]) for o in ops]) / steps / wall_ps,
        "by_type": rows,
        "by_layer": dict(by_layer),
        "by_conv": dict(by_conv),
    }


# ------------------------------------------------------------------------ tables


def format_type_table(result, min_share=0.005):
    lines = ["| op type | group | ms / step | % of step | count / step |", "| --- | --- | ---: | ---: | ---: |"]
    rest = [r for r in result["by_type"] if r["share"] < min_share]
    for r in result["by_type"]:
        if r["share"] >= min_share:
            lines.append(f"| {r['op_type']} | {r['group']} | {r['ms']:.1f} | {100 * r['share']:.1f}% | {r['count']:g} |")
    if rest:
        lines.append(f"| everything else ({len(rest)} op types) | | {sum(r['ms'] for r in rest):.1f} | "
                     f"{100 * sum(r['share'] for r in rest):.1f}% | {sum(r['count'] for r in rest):g} |")
    lines.append(f"| **all ops (coverage)** | | {result['op_ms']:.1f} | {100 * result['coverage']:.1f}% | "
                 f"{sum(r['count'] for r in result['by_type']):g} |")
    return "\n".join(lines)


def format_group_table(result):
    groups = collections.Counter()
    for r in result["by_type"]:
        groups[r["group"]] += r["ms"]
    lines = ["| group | ms / step | % of step |", "| --- | ---: | ---: |"]
    for group, ms in groups.most_common():
        lines.append(f"| {group} | {ms:.1f} | {100 * ms / result['wall_ms']:.1f}% |")
    return "\n".join(lines)


def format_layer_table(result):
    layers = collections.defaultdict(lambda: collections.Counter())
    for (layer, phase), ms in result["by_layer"].items():
        layers[layer][phase] += ms
    order = sorted(layers, key=lambda k: -sum(layers[k].values()))
    lines = ["| layer class / part | forward ms | backward ms | other ms | total ms / step | % of step |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for layer in order:
        c = layers[layer]
        other = sum(v for p, v in c.items() if p not in ("forward", "backward"))
        total = sum(c.values())
        lines.append(f"| {layer} | {c['forward']:.1f} | {c['backward']:.1f} | {other:.1f} | {total:.1f} | "
                     f"{100 * total / result['wall_ms']:.1f}% |")
    return "\n".join(lines)


def conv_shapes(model, batch_size):
    """``{layer name: (shape label, forward GFLOP of a batch)}`` for each Conv2D of ``model``;
    the label is ``kh x kw, in -> out, HxW out, stride s``."""
    import keras

    from keras_resnet.benchmark.flops import layer_flops
    from keras_resnet.utils import all_layers

    shapes = {}
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            h, w = layer.output.shape[1:3]
            label = f"{kh}x{kw}, {cin} -> {cout}, {h}x{w} out, stride {layer.strides[0]}"
            shapes[layer.name] = (label, layer_flops(layer) * batch_size / 1e9)
    return shapes


def format_conv_table(result, shapes):
    """Time and GFLOP/s of the forward, input-gradient and filter-gradient convolutions per
    layer shape (layers of the same shape summed), the slowest filter gradients first."""
    rows = collections.defaultdict(lambda: {"layers": set(), "gflop": 0.0, "ms": collections.Counter(),
                                            "done": collections.Counter()})
    for (layer, group), ms in result["by_conv"].items():
        label, gflop = shapes.get(layer, ("other", 0.0))
        row = rows[label]
        if layer not in row["layers"]:
            row["layers"].add(layer)
            row["gflop"] += gflop
        row["ms"][group] += ms
        row["done"][group] += gflop  # the stem has no input gradient: its FLOPs count only where run
    lines = ["| convolution (layers) | GFLOP / step, each pass | forward ms (GFLOP/s) | input gradient ms (GFLOP/s) "
             "| filter gradient ms (GFLOP/s) |", "| --- | ---: | ---: | ---: | ---: |"]

    def cells(row):
        return " | ".join(f"{row['ms'][g]:.1f} ({row['done'][g] / row['ms'][g] * 1000:.0f})" if row["ms"][g] else "-"
                          for g in CONV_GROUPS)

    total = {"gflop": 0.0, "ms": collections.Counter(), "done": collections.Counter()}
    for label, row in sorted(rows.items(), key=lambda kv: -kv[1]["ms"]["conv backprop filter"]):
        lines.append(f"| {label} ({len(row['layers'])}) | {row['gflop']:.1f} | {cells(row)} |")
        total["gflop"] += row["gflop"]
        total["ms"].update(row["ms"])
        total["done"].update(row["done"])
    lines.append(f"| **all convolutions** | {total['gflop']:.1f} | {cells(total)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ running


def build(impl, model_name, *, image_size, batch_size, classes, steps, precision="fp32"):
    """``impl``'s model, compiled for training as the benchmark compiles it (ours under
    ``precision``'s dtype policy; keras.applications in fp32, its defaults)."""
    import keras

    shape = (image_size, image_size, 3)
    if impl == "keras_resnet":
        import keras_resnet
        from keras_resnet.training import compile_model
        from keras_resnet.utils import dtype_policy

        with dtype_policy(precision):
            model = keras_resnet.get_model(model_name, weights=None, input_shape=shape, classes=classes)
        compile_model(model, steps_per_epoch=max(steps, 1), epochs=1, global_batch_size=batch_size,
                      num_classes=classes)
    elif impl == "keras.applications":
        model = getattr(keras.applications, model_name)(weights=None, input_shape=shape, classes=classes)
        model.compile(optimizer=keras.optimizers.SGD(0.1 * batch_size / 256, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    else:
        raise ValueError(f"impl must be one of {IMPLS}. Received: impl={impl!r}")
    return model


def layer_classes(model):
    out = {}

    def walk(m):
        for layer in m.layers:
            out[layer.name] = type(layer).__name__
            if hasattr(layer, "layers") and layer.layers:
                walk(layer)

    walk(model)
    return out


def profile_fit(model, *, batch_size, steps, logdir, warmup=2):
    """Warm up, time ``steps`` fit steps without the profiler, then trace ``steps`` more.

    Returns seconds per step without the profiler (timed between batch ends, after one
    untimed step). The trace lands under ``logdir``.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (batch_size,) + tuple(model.input_shape[1:])).astype("float32")
    y = rng.integers(0, int(model.output_shape[-1]), batch_size).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()

    ends = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    seconds = (ends[-1] - ends[0]) / steps
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0,
                                                       device_tracer_level=1)
    tf.profiler.experimental.start(logdir, options=options)
    try:
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    finally:
        tf.profiler.experimental.stop()
    return seconds


def profile(impl, model_name, *, image_size, batch_size, steps, classes=1000, logdir, precision="fp32"):
    import keras

    keras.utils.clear_session()
    model = build(impl, model_name, image_size=image_size, batch_size=batch_size, classes=classes, steps=steps,
                  precision=precision)
    seconds = profile_fit(model, batch_size=batch_size, steps=steps, logdir=logdir)
    result = aggregate(load_xspace(logdir), model_name=model.name, layer_classes=layer_classes(model),
                       optimizer_name=model.optimizer.name)
    result["unprofiled_ms"] = seconds * 1000
    result["conv_shapes"] = conv_shapes(model, batch_size)
    return result


def onednn_enabled():
    """Whether TensorFlow runs oneDNN's kernels (``TF_ENABLE_ONEDNN_OPTS``, read when TensorFlow loads)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ResNet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="steps timed, then as many profiled")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--inter-op-threads", type=int, default=1,
                   help="TensorFlow inter-op threads (1: one op at a time, so op times add up; 0: TF's default)")
    p.add_argument("--onednn", choices=("default", "on", "off"), default="default",
                   help="set TF_ENABLE_ONEDNN_OPTS before TensorFlow loads (default: leave it as it is)")
    p.add_argument("--quick", action="store_true", help="112x112 images, 2 steps: a quick look")
    p.add_argument("--precision", default="fp32", help="ours: fp32 | mixed_bfloat16 | mixed_float16 "
                   "(keras.applications stays fp32)")
    p.add_argument("--keep-trace", metavar="DIR", help="keep the traces under DIR/<impl> (TensorBoard's profile tab)")
    args = p.parse_args(argv)
    if args.quick:
        args.image_size, args.steps = 112, 2
    for name, value in (("image_size", args.image_size), ("batch_size", args.batch_size), ("steps", args.steps)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value}")
    if args.onednn != "default":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    import tensorflow as tf

    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    print(f"# {args.model}, {args.image_size}x{args.image_size}, batch {args.batch_size}, ours {args.precision}, "
          f"{args.steps} steps profiled, inter-op threads {args.inter_op_threads or 'default'}; "
          f"TensorFlow {tf.__version__}, oneDNN {'on' if onednn_enabled() else 'off'} "
          f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})")
    root = args.keep_trace or tempfile.mkdtemp(prefix="profile_train_step_")
    try:
        for impl in args.impls:
            logdir = os.path.join(root, impl)
            shutil.rmtree(logdir, ignore_errors=True)
            r = profile(impl, args.model, image_size=args.image_size, batch_size=args.batch_size,
                        steps=args.steps, classes=args.classes, logdir=logdir, precision=args.precision)
            print(f"\n## {impl}: wall {r['wall_ms']:.0f} ms / step profiled ({r['unprofiled_ms']:.0f} ms "
                  f"unprofiled, {args.batch_size * 1000 / r['unprofiled_ms']:.2f} img/s); ops sum to "
                  f"{r['op_ms']:.0f} ms = coverage {100 * r['coverage']:.1f}%; at least one op running "
                  f"{100 * r['busy']:.1f}% of the step\n")
            print(format_type_table(r), end="\n\n")
            print(format_group_table(r), end="\n\n")
            print(format_layer_table(r), end="\n\n")
            print(format_conv_table(r, r["conv_shapes"]))
    finally:
        if not args.keep_trace:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
