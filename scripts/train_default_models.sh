#!/usr/bin/env bash
# Rebuild the default models in models/ from the public "Brain Tumor MRI Dataset" (about 45 minutes on two CPU cores).
#
#   scripts/train_default_models.sh DATA_DIR
#
# DATA_DIR holds Training/ and Testing/ (glioma meningioma notumor pituitary), as downloaded from Kaggle ("Brain Tumor
# MRI Dataset" by Masoud Nickparvar), ideally with a manifest.csv naming each slice's group (patient or near-duplicate
# cluster) and masks/<split>/<class>/<stem>.png lesion masks from figshare ("brain tumor dataset" by Jun Cheng). Without
# a manifest, groups are found by mirror-aware near-duplicate clustering; without masks, the mask loss is off.
#
# The split is group-disjoint over the whole set (Training/ and Testing/ together; seed 0): no patient and no copy of
# a slice, mirrored or not, is on two sides. One network learns the four classes, starting from the synthetic-data
# classifier in models/synthetic/ (our stand-in for ImageNet weights, which cannot be downloaded here), with
# augmentation for real scans. It is temperature-scaled on validation, the detector is read off it as
# P(tumor) = 1 - P(notumor) with its threshold the highest that keeps validation recall >= 0.99, and the
# out-of-distribution guard is fitted on its training features. Test figures come from the group-disjoint test part.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/train_default_models.sh DATA_DIR}
EPOCHS=${EPOCHS:-40}
# A safety net on slower machines: no epoch starts that would end past it, and the best epoch is kept.
TIME_LIMIT=${TIME_LIMIT:-90}
NAME="the Brain Tumor MRI Dataset (Nickparvar, Kaggle: figshare, SARTAJ and Br35H)"
LICENCE="CC0 1.0 (the merge); figshare slices CC BY 4.0 (Cheng et al. 2015)"

python -m brainml train --task classify --data "$DATA" --out models/classifier --split groups --seed 0 \
  --data-name "$NAME" --data-licence "$LICENCE" \
  --init-from models/synthetic/classifier.json --augmentation strong --epochs "$EPOCHS" --lr 0.001 --schedule cosine \
  --patience "$EPOCHS" --time-limit "$TIME_LIMIT"
python -m brainml calibrate --model models/classifier.json --data "$DATA"
python -m brainml train --task detect --data "$DATA" --out models/detector --split groups --seed 0 --recall-target 0.99 \
  --data-name "$NAME" --data-licence "$LICENCE" \
  --from-classifier models/classifier.json
python -m brainml guard --model models/classifier.json --data "$DATA"
# The LiteRT engines verdicts run on, built from the final .keras files (temperature included).
for model in classifier detector; do
  python -m brainml engine --model "models/$model.json"
done

# LayerCAM's layer is chosen on the validation part; the cards then keep the held-out test part's labels, scores and
# metrics (with breakdowns by source and lesion size) and where each heatmap method points on its tumor slices.
for model in detector classifier; do
  python -m brainml explain --choose-layercam-layer --model "models/$model.json" --data "$DATA" --split validation \
    --per-class 40 --update-card
  python -m brainml evaluate --model "models/$model.json" --data "$DATA" --split held-out --update-card
  python -m brainml explain --evaluate --model "models/$model.json" --data "$DATA" --split held-out --per-class 40 --update-card
done
