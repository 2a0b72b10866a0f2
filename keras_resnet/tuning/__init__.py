"""Hyperparameter search with keras-tuner over the spec table and the training recipe.

| module | what it holds |
| --- | --- |
| :mod:`.space` | ``SEARCH_SPACE``, ``Choice`` / ``Range``, ``narrow_space``, ``parse_space`` |
| :mod:`.hypermodel` | :class:`HyperResNet` and ``fit_with_training`` (the training package's recipe, data, callbacks) |
| :mod:`.tuner` | :func:`search` in a resumable folder, the trial table, ``best.json``, ``train_best`` |
| :mod:`.cli` | the ``tune`` command (no TensorFlow at import) |

Names are loaded on first use, so ``keras-resnet tune --help`` imports no TensorFlow.
"""

from keras_resnet.utils import lazy_attributes

# name -> submodule that defines it
_NAMES = {
    "SEARCH_SPACE": "space", "Choice": "space", "Range": "space", "FAMILIES": "space",
    "default_space": "space", "narrow_space": "space", "parse_space": "space",
    "HyperResNet": "hypermodel", "fit_with_training": "hypermodel", "SE_RATIO": "hypermodel",
    "search": "tuner", "SearchConfig": "tuner", "SearchFailed": "tuner", "build_tuner": "tuner",
    "trial_table": "tuner", "format_table": "tuner", "first_error": "tuner", "train_best": "tuner",
    "TUNERS": "space", "TUNER_PROJECT": "tuner",
}


__getattr__ = lazy_attributes(__name__, _NAMES)

__all__ = list(_NAMES)
