"""The TensorFlow Model Optimization integration (TensorFlow only): magnitude schedules
with a θ0 snapshot and rewind (:mod:`~keras_lottery.tfmot.schedules`) and searches over
TFMOT-wrapped tf_keras models (:mod:`~keras_lottery.tfmot.compat`). Imported on use:
importing TFMOT switches the process to legacy Keras."""
