#!/usr/bin/env bash
# Every benchmark in one go (about 45 minutes on 2 cores); each prints its table with an in-run baseline.
set -euo pipefail
cd "$(dirname "$0")"
echo "== inference ==";        python inference.py
echo "== spectrum ==";         python spectrum.py
echo "== aptnn-post ==";       python post.py --frames 20000
echo "== aptnn-ipi ==";        python ipi.py; python ipi.py --mlff-channels 0 --sustained
echo "== distributed post =="; python post_distributed.py
echo "== distributed train =="; python train_distributed.py
echo "== training ==";         bash train_water.sh
echo "== model sizes ==";      python model_sizes.py --minutes 5 -o "$(mktemp -d)"
