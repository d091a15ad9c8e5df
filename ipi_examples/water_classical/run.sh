#!/usr/bin/env bash
# QUICK=1 bash run.sh: a run of under a minute; without QUICK a longer one. Ends with spectrum.png.
cd "$(dirname "$0")"
source ../common.sh
run_example "$([ -n "${QUICK:-}" ] && echo 400 || echo 8000)"
