#!/usr/bin/env bash
# Rebuild the default models in models/ from scratch on the synthetic data set (CPU is enough; about an hour on
# two cores). Training data: seed 1. Final test data: seed 2026, never used in training or threshold choice.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_SET=${TRAIN_SET:-data/synth-s1}
TEST_SET=${TEST_SET:-data/synth-test-s2026}
EPOCHS=${EPOCHS:-40}

[ -f "$TRAIN_SET/manifest.csv" ] || python -m brainml synth --out "$TRAIN_SET" --n 14000 --seed 1
[ -f "$TEST_SET/manifest.csv" ] || python -m brainml synth --out "$TEST_SET" --n 2000 --seed 2026 --test-fraction 1.0

python -m brainml train --task detect --data "$TRAIN_SET" --out models/detector --epochs "$EPOCHS" --seed 0
python -m brainml train --task classify --data "$TRAIN_SET" --out models/classifier --epochs "$EPOCHS" --seed 0

# The cards keep the fresh test set's labels, scores and metrics (the threshold explorer sweeps them).
python -m brainml evaluate --model models/detector.json --data "$TEST_SET" --update-card
python -m brainml evaluate --model models/classifier.json --data "$TEST_SET" --update-card
