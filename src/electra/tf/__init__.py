"""ELECTRA in Keras 3 (``keras.ops`` only: TensorFlow by default, also JAX and torch), sharing our checkpoints.

Optional: ``pip install "electra[tf]"`` (``tensorflow-cpu`` + ``keras`` 3, pinned in ``requirements-tf.lock``).
Import :func:`keras_module` (or any submodule) to get Keras with the TensorFlow backend unless ``KERAS_BACKEND``
says otherwise; a missing install is one :class:`~electra.errors.ElectraError`.

- :mod:`electra.tf.modeling`: the layers and models (names mirror :mod:`electra.modeling`, so a checkpoint is a
  rename table plus transposes away, see :mod:`electra.tf.weights`).
- :mod:`electra.tf.weights`: our checkpoint directories and Hugging Face ELECTRA directories <-> Keras.
- :mod:`electra.tf.pretraining`: the replaced-token-detection objective through ``compute_loss``.
- :mod:`electra.tf.training`: ``model.fit`` for pre-training (our shards) and classification (our readers).
- :mod:`electra.tf.export`: a TensorFlow SavedModel with a serving signature.
"""

from __future__ import annotations

import os
from types import ModuleType

from electra.errors import ElectraError

MISSING = 'the TensorFlow / Keras 3 extra is not installed (pip install "electra[tf]", or `make install`)'


def keras_module() -> ModuleType:
    """``keras`` (3.x), imported with the TensorFlow backend unless ``KERAS_BACKEND`` is set, TF's C++ logs
    silenced, and TensorFlow's thread pools sized like torch's (set before TF's runtime starts)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ log lines; Python errors still raise
    try:
        import keras
    except ImportError:
        raise ElectraError(MISSING) from None
    if not keras.__version__.startswith("3."):
        raise ElectraError(f"electra.tf needs keras 3, found {keras.__version__}")
    if keras.backend.backend() == "tensorflow":
        _size_tf_threads()
    return keras


def _size_tf_threads() -> None:
    import tensorflow as tf
    import torch

    try:
        tf.config.threading.set_intra_op_parallelism_threads(torch.get_num_threads())
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime has started already: keep its pools
        pass


def available() -> bool:
    """Whether Keras 3 can be imported (for tests that skip without it)."""
    try:
        keras_module()
    except ElectraError:
        return False
    return True
