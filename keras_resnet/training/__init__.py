"""Training: one typed config, the ResNet recipe, strategies, callbacks, run folders, the
fit loop with exact resume, evaluation and the ``train`` / ``evaluate`` commands.

``keras-resnet train`` and :func:`train` fit any model of ``keras-resnet list`` with
``model.fit`` on one device, all GPUs of a machine (``MirroredStrategy``), several
machines (``MultiWorkerMirroredStrategy``) or a TPU, and leave a run folder a person can
read (:mod:`.run_folder`). The modules, in the order a run goes through them:

| module | what it holds |
| --- | --- |
| :mod:`.config` | :class:`TrainConfig` (model, data, recipe, runtime), checks, resume identity |
| :mod:`.recipe` | He et al. 2015 recipe: ``RECIPES``, lr schedule, loss, weight decay, ``compile_model`` (backend-neutral) |
| :mod:`.strategy` | ``build_strategy``, which process writes, Keras' multi-worker fix, lost workers |
| :mod:`.loop` | :func:`train` / :func:`run`: resolve, choose the folder, header, build |
| :mod:`.fit` | the ``model.fit`` phases, stop on signals / NaN / lost workers, finished files |
| :mod:`.callbacks` | warm-up, NaN guard, best model, exact backups, signals, progress display |
| :mod:`.run_folder` | files of a run, backups, history, finding an unfinished run |
| :mod:`.evaluation` | :func:`evaluate` |
| :mod:`.cli` | the ``train`` and ``evaluate`` commands (no TensorFlow at import) |

Names are loaded on first use, so ``keras-resnet train --help`` and importing
:mod:`.recipe` (on JAX or PyTorch) import no TensorFlow.
"""

from keras_resnet.utils import lazy_attributes

# name -> submodule that defines it
_NAMES = {
    "train": "loop", "run": "loop", "resolve": "loop",
    "TrainConfig": "config", "ModelConfig": "config", "DataConfig": "config", "RecipeConfig": "config",
    "RuntimeConfig": "config", "STRATEGIES": "config",
    "RECIPES": "recipe", "SCHEDULES": "recipe", "PAPER_WARMUP": "recipe", "ResNetLearningRate": "recipe",
    "RECIPE_NAMES": "recipe", "bn_momentum_for": "recipe", "default_recipe": "recipe",
    "SparseCrossentropyWithSmoothing": "recipe", "apply_weight_decay": "recipe", "compile_model": "recipe",
    "build_strategy": "strategy", "is_chief": "strategy",
    "TrainingDiverged": "fit", "RunStopped": "fit", "WorkerLost": "fit",
    "LowLrUntilError": "callbacks", "NaNGuard": "callbacks", "BestModel": "callbacks", "StateBackup": "callbacks",
    "save_state": "run_folder", "load_state": "run_folder", "read_history": "run_folder",
    "plot_history": "run_folder",
    "evaluate": "evaluation", "SPLITS": "evaluation",
}


__getattr__ = lazy_attributes(__name__, _NAMES)

__all__ = list(_NAMES)
