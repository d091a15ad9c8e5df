"""Default model sizes, in one place. Free of heavy imports: the command line reads them for its --help."""

DEFAULT_CHANNELS = 8
"""Multiplicity of every hidden irrep: the shipped model's size (``aptnn train --channels``, ``ModelConfig``)."""

LEARN_CHANNELS = 4
"""Deliberately smaller default of ``aptnn learn``: active learning retrains a committee every round on a few
labelled frames, where 4 channels are about as accurate as 8 (README benchmarks: 0.0226 e vs 0.0222 e on water)
at ~60 % of the cost per frame."""

COMMITTEE_KINDS = ("full", "heads")
"""Committee kinds (``aptnn train --committee-kind``): "full" = independent networks (N× the cost per frame),
"heads" = one shared trunk with N readout heads (about the cost of one network)."""

DEFAULT_COMMITTEE_KIND = "full"
"""Placeholder, set from the measurements of benchmarks/committee_kinds.py (see its docstring)."""

APT_INTERVAL_FS: float | None = None
"""Default evaluation interval of the APT network in producers (``--apt-every-fs``): the network runs at least every
this many fs, APTs in between are interpolated (:mod:`aptnn.interpolation`); chosen by benchmarks/apt_every.py."""
