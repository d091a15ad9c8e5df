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
"""Default of ``aptnn train --committee-kind`` and ``train_committee``, from benchmarks/committee_kinds.py (4 DFT
water frames, 4 members; 24 epochs × 3 seeds and 96 epochs × 1 seed): after calibration both kinds cover the
test errors alike (67 % / 89 % within sσ / 2sσ), but the full committee's spread ranks the errors better
(Spearman ρ(σ, |err|) 0.12–0.17 vs 0.09–0.13), needs a smaller factor (s 2.1–2.5 vs 4.8–6.9) and its mean is
8–17 % more accurate. "heads" costs ~1.05× a single network per frame instead of N× (benchmarks/committee_cost.py):
the choice when the cost per frame matters more."""

APT_INTERVAL_FS: float | None = 2.0
"""Default evaluation interval of the APT network in producers (``--apt-every-fs``): the network runs at least every
this many fs, APTs in between are interpolated (:mod:`aptnn.interpolation`); chosen by benchmarks/apt_every.py."""
