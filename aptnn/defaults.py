"""Default model sizes, in one place. Free of heavy imports: the command line reads them for its --help."""

DEFAULT_CHANNELS = 8
"""Multiplicity of every hidden irrep: the shipped model's size (``aptnn train --channels``, ``ModelConfig``)."""

LEARN_CHANNELS = 4
"""Deliberately smaller default of ``aptnn learn``: active learning retrains a committee every round on a few
labelled frames, where 4 channels are about as accurate as 8 (README benchmarks: 0.0226 e vs 0.0222 e on water)
at ~60 % of the cost per frame."""
