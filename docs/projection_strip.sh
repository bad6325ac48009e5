#!/usr/bin/env bash
# docs/projection-strip-unseen.jpg from the CLIs: photo -> project.py --w-plus --tune -> the projection
# -> an unlabelled PCA component at -Sσ and +Sσ on it (README, "Your own photo").
#   bash docs/projection_strip.sh NETWORK [PHOTO] [CLASS] [COMPONENT] [S] [OUT]
# Run from the repository root. NETWORK: a model that never saw PHOTO (the default PHOTO is one of the 100 in
# models/default-run/heldout.txt, which the second default model's training left out).
set -euo pipefail
NET=${1:?usage: bash docs/projection_strip.sh NETWORK [PHOTO] [CLASS] [COMPONENT] [S] [OUT]}
PHOTO=${2:-../shared/data/clothing-dataset-small/validation/t-shirt/2a15cfb2-881f-47f2-a631-decf0a5ec2af.jpg}
CLASS=${3:-t-shirt}
K=${4:-7}
S=$(printf "%.2f" "${5:-1.5}")
OUT=${6:-out/strip}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # 64 px convolutions: one thread beats two fighting over busy cores
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)   # the directions template names its components file by this path

# 1. The photo into W+ (1000 steps), then 350 steps of pivotal tuning: projected_w.npz, tuned.safetensors.
$PY project.py --network "$NET" --target "$PHOTO" --class "$CLASS" --outdir "$OUT/proj" --w-plus --tune
# 2. Directions: the network's PCA components (a snapshot has no labelled ones), as a directions file.
$PY -m ganspace fit --network "$NET" --out "$OUT/components.npz" --samples 100000 --components 20
$PY -m ganspace template --network "$NET" --components "$OUT/components.npz" --num $((K + 1)) > "$OUT/directions.yaml"
# 3. Recipes carrying component K's edit at -Sσ and +Sσ (drawn on seed 0, which step 4 replaces by the photo).
$PY -m ganspace export --network "$NET" --directions "$OUT/directions.yaml" --seeds 0 --strengths=-$S,$S \
    --class "$CLASS" --outdir "$OUT/recipes"
# 4. Those edits on the projected code, drawn by the tuned network (the parent's W, so its components apply).
$PY generate.py --network "$OUT/proj/tuned.safetensors" --projected-w "$OUT/proj/projected_w.npz" \
    --recipe "$OUT"/recipes/component-$K/*_s-$S.png --recipe "$OUT"/recipes/component-$K/*_s+$S.png \
    --outdir "$OUT/edits"
# 5. The strip: photo (as framed) | projection (W+, tuned) | -Sσ | +Sσ, enlarged x3 without smoothing.
$PY - "$OUT" <<'EOF'
import pathlib, sys
from PIL import Image
out = pathlib.Path(sys.argv[1])
edits = [next((out / "edits").glob(f"*_s{sign}*.png")) for sign in "-+"]
tiles = [out / "proj" / "target.png", out / "proj" / "proj_tuned.png", *edits]
tiles = [Image.open(p).convert("RGB") for p in tiles]
w, h = tiles[0].size
strip = Image.new("RGB", (3 * w * len(tiles), 3 * h))
for i, tile in enumerate(tiles):
    strip.paste(tile.resize((3 * w, 3 * h), Image.Resampling.NEAREST), (3 * w * i, 0))
strip.save("docs/projection-strip-unseen.jpg", quality=90)
print("wrote docs/projection-strip-unseen.jpg")
EOF
