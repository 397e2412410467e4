#!/bin/bash
# imgsum train on a CUDA GPU, end to end, on a Flickr8k subset; the same epoch on the CPU for a ratio.
#
#   bash benchmarks/cuda_check.sh subset [DATA_DIR] [FOLDER]   # build the subset (1,000 train, 250 dev, 50 test images)
#   OUT=results bash benchmarks/cuda_check.sh run [FOLDER]     # on the GPU machine, with imgsum's [train] needs installed
#
# `run` trains the lstm on CUDA (--device auto: features are extracted on the GPU too), trains one
# epoch of the same on the CPU (--device cpu, CPU_THREADS threads), loads the CUDA-trained checkpoint
# on the CPU and captions with it (torch, then exported to ONNX), runs tests/test_train.py with CUDA
# present (those tests use --device auto), and prints the epoch-1 training time of both devices.
set -o pipefail
cd "$(dirname "$0")/.."

subset() {
    local data=${1:-${IMGSUM_DATA:-../shared/data}/flickr8k} dst=${2:-runs/cuda-subset}
    mkdir -p "$dst/images"
    head -1000 "$data/Flickr_8k.trainImages.txt" > "$dst/Flickr_8k.trainImages.txt"
    head -250 "$data/Flickr_8k.devImages.txt" > "$dst/Flickr_8k.devImages.txt"
    head -50 "$data/Flickr_8k.testImages.txt" > "$dst/Flickr_8k.testImages.txt"
    cat "$dst"/Flickr_8k.*Images.txt | while read -r name; do cp "$data/images/$name" "$dst/images/"; done
    cat "$dst"/Flickr_8k.*Images.txt | sed 's/$/#/' | grep -F -f - "$data/Flickr8k.token.txt" > "$dst/Flickr8k.token.txt"
    echo "$dst: $(ls "$dst/images" | wc -l) images, $(wc -l < "$dst/Flickr8k.token.txt") captions"
}

run() {
    local d=${1:-runs/cuda-subset} r out=${OUT:-runs/cuda-check}
    r=$(mktemp -d)
    mkdir -p "$out"
    export MPLBACKEND=Agg IMGSUM_CACHE=$r/cache
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    local args="$d/Flickr8k.token.txt --decoder lstm --dim 384 --hidden 512 --attention-dim 256 --val-images 250"
    SECONDS=0
    python3 -m imgsum.cli train $args --epochs "${EPOCHS:-6}" --out "$r/cuda" --device auto > "$out/cuda.log" 2>&1
    echo "cuda rc=$? wall ${SECONDS}s"
    python3 -m imgsum.cli train $args --epochs 1 --out "$r/cpu" --device cpu --threads "${CPU_THREADS:-16}" > "$out/cpu.log" 2>&1
    echo "cpu rc=$?"
    cp "$r/cuda/metrics.jsonl" "$out/cuda-metrics.jsonl"; cp "$r/cuda/curves.png" "$out/cuda-curves.png"
    cp "$r/cpu/metrics.jsonl" "$out/cpu-metrics.jsonl"
    echo "== the CUDA-trained checkpoint on the CPU: torch, then exported to ONNX"
    CUDA_VISIBLE_DEVICES= python3 -m imgsum.cli caption --backend torch --model "$r/cuda/best.safetensors" \
        src/imgsum/assets/samples/*.jpg "$d/images/$(head -1 "$d/Flickr_8k.testImages.txt")"
    python3 -m imgsum.cli export "$r/cuda/best.safetensors" --out "$r/onnx" > "$out/export.log" 2>&1
    echo "export rc=$?"
    python3 -m imgsum.cli caption --model "$r/onnx" "$d/images/$(head -1 "$d/Flickr_8k.testImages.txt")"
    echo "== training tests with CUDA present (device auto)"
    [ -n "$SKIP_TESTS" ] || timeout 300 python3 -m pytest -q -x tests/test_train.py -p no:cacheprovider 2>&1 | tail -3
    python3 - "$r" <<'PY'
import json, sys
rows = {d: [json.loads(line) for line in open(f"{sys.argv[1]}/{d}/metrics.jsonl")] for d in ("cuda", "cpu")}
secs = {d: rows[d][0]["train_minutes"] * 60 - rows[d][0]["val_seconds"] for d in rows}
print(f"epoch 1 training seconds (validation excluded): cuda {secs['cuda']:.1f}, cpu {secs['cpu']:.1f}, "
      f"cpu/cuda {secs['cpu'] / secs['cuda']:.1f}x")
print("cuda dev CIDEr by epoch:", [round(r["dev_CIDEr"], 3) for r in rows["cuda"]])
PY
}

case "$1" in
    subset) shift; subset "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 subset [DATA_DIR] [FOLDER] | run [FOLDER]" >&2; exit 2 ;;
esac
