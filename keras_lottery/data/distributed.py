"""One search across several workers: who writes, and a Keras fix to make it run.

Under ``tf.distribute.MultiWorkerMirroredStrategy`` every worker runs the same
``find_ticket`` in lockstep.  Only the chief writes the run directory
(:func:`is_chief`); the other workers read it to resume and never write it.

Keras 3 (3.15 and earlier) cannot ``fit`` under that strategy at all
(keras-team/keras#20585): call :func:`patch_keras_multi_worker` once in every
worker before the search.
"""

from __future__ import annotations

import sys
from typing import Any


def is_chief(strategy: Any = None) -> bool:
    """True unless this process is a non-chief worker of a multi-worker strategy.

    ``strategy`` defaults to the one in scope.  The chief is the ``chief`` task,
    or worker 0 of a cluster without one (TensorFlow's convention); a
    single-process strategy (or none) is its own chief.
    """
    if strategy is None:
        tf = sys.modules.get("tensorflow")
        if tf is None:  # no TensorFlow loaded: no tf.distribute strategy either
            return True
        strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def patch_keras_multi_worker() -> None:
    """Let ``keras.Model.fit`` (TensorFlow backend) run under MultiWorkerMirroredStrategy.

    Two places of Keras's TensorFlow trainer reduce across workers in a way
    TensorFlow refuses: the first batch (a nested structure) before building
    the model, and the scalar losses and metrics of each step (``axis=0``).  This
    replaces both, for multi-worker strategies only: the first batch is taken
    from this worker (only its shapes matter), and scalars are averaged with
    ``axis=None``.  Idempotent; other strategies behave exactly as before.
    """
    from keras.src import tree

    from keras_lottery.extras import tensorflow

    tf = tensorflow("patch_keras_multi_worker (tf.distribute)")
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_keras_lottery_multi_worker", False):
        return
    multi_worker = trainer._collective_all_reduce_multi_worker
    build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce = trainer.reduce_per_replica

    def local(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(lambda v: local(strategy, v), next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return reduce(values, strategy, reduction)

        def mean(value):
            axis = None if local(strategy, value).shape.rank == 0 else 0
            return strategy.reduce("MEAN", value, axis=axis)

        return tree.map_structure(mean, values)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    trainer._keras_lottery_multi_worker = True
