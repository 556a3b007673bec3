#!/usr/bin/env bash
# Rebuild the synthetic-data pair in models/synthetic/ (the Lab's models) from scratch (CPU is enough; about 100 minutes
# on two cores). Training data: seed 1. Final test data: seed 2026, never used in training or threshold choice.
#
# One network learns both tasks: the type classifier is trained (four classes, lesion-mask supervision), and the
# detector is read off it as P(tumor) = 1 - P(notumor), its recall-first threshold chosen on the same validation
# images. On two CPU cores that gives the one network twice the training a pair of separate networks would get.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_SET=${TRAIN_SET:-data/synth-s1-30k}
TEST_SET=${TEST_SET:-data/synth-test-s2026}
EPOCHS=${EPOCHS:-42}
# A safety net on slower machines: no epoch starts that would end past it, and the best epoch is kept.
TIME_LIMIT=${TIME_LIMIT:-120}

[ -f "$TRAIN_SET/manifest.csv" ] || python -m brainml synth --out "$TRAIN_SET" --n 30000 --seed 1 --test-fraction 0.1
[ -f "$TEST_SET/manifest.csv" ] || python -m brainml synth --out "$TEST_SET" --n 2000 --seed 2026 --test-fraction 1.0

python -m brainml train --task classify --data "$TRAIN_SET" --out models/synthetic/classifier --epochs "$EPOCHS" --seed 0 --split official \
  --schedule cosine --patience 12 --time-limit "$TIME_LIMIT"
python -m brainml train --task detect --data "$TRAIN_SET" --out models/synthetic/detector --seed 0 --split official \
  --from-classifier models/synthetic/classifier.json

# LayerCAM's layer is chosen on the training set's own held-out Testing split (seed 1), never on the final test set.
# The cards then keep the fresh test set's labels, scores and metrics (the threshold explorer sweeps them), and
# where each heatmap method points on its tumor slices.
for model in detector classifier; do
  python -m brainml explain --choose-layercam-layer --model "models/synthetic/$model.json" --data "$TRAIN_SET" --split Testing \
    --per-class 60 --update-card
  python -m brainml evaluate --model "models/synthetic/$model.json" --data "$TEST_SET" --update-card
  python -m brainml explain --evaluate --model "models/synthetic/$model.json" --data "$TEST_SET" --per-class 60 --update-card
done
# The LiteRT engines verdicts run on, built from the final .keras files.
for model in detector classifier; do
  python -m brainml engine --model "models/synthetic/$model.json"
done
