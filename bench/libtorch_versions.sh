#!/usr/bin/env bash
# Which LibTorch makes cifar100 faster on this machine: the same sources built against Debian's LibTorch 1.13
# (build-debian/, scripts/build.sh --torch debian) and against the PyPI wheel's LibTorch 2.x with CUDA
# (build-cuda/, scripts/build.sh --torch venv), measured in one run, alternating between the two:
#   1. training throughput of WRN-16-4 (DEPTH/WIDTH), batch 128, fp32 and bf16 autocast, on the real data with
#      the loader: the second epoch's images/s of STEPS steps, ROUNDS rounds, medians;
#   2. the main job (configs/fast-cpu.yaml, precision auto): wall time of the whole command and its test top-1,
#      MAIN_ROUNDS rounds (0 skips it).
# Both use THREADS threads (default: all cores). Prints a table and writes RESULT (default
# bench/results/libtorch-versions.json) with the figures, the CPU model, its bf16 support and the date.
#   bench/libtorch_versions.sh      (needs both builds and CIFAR100_ARCHIVE, or ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTH="${DEPTH:-16}"; WIDTH="${WIDTH:-4}"; BATCH="${BATCH:-128}"; STEPS="${STEPS:-20}"; ROUNDS="${ROUNDS:-2}"
MAIN_ROUNDS="${MAIN_ROUNDS:-1}"; THREADS="${THREADS:-$(nproc)}"; RESULT="${RESULT:-bench/results/libtorch-versions.json}"
declare -A BUILDS=([debian]=build-debian [venv]=build-cuda)
for b in "${!BUILDS[@]}"; do
  [ -x "${BUILDS[$b]}/cifar100" ] || { echo "missing ${BUILDS[$b]}/cifar100: scripts/build.sh --torch $b" >&2; exit 2; }
done
if [ -z "${CIFAR100_ARCHIVE:-}" ] && [ -f ../shared/data/cifar-100-binary.tar.gz ]; then
  CIFAR100_ARCHIVE="$(cd ../shared/data && pwd)/cifar-100-binary.tar.gz"
  export CIFAR100_ARCHIVE
fi
PY=/usr/bin/python3
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# The data set is extracted once, before any clock starts.
./build-debian/cifar100 data download >/dev/null 2>&1 || ./build-debian/cifar100 data download

throughput() {  # build precision -> images/s of the second epoch
  local b=$1 p=$2 out="$tmp/tp-$1-$2"
  "${BUILDS[$b]}/cifar100" train --out "$out" --resume none --overwrite --set depth="$DEPTH" --set width="$WIDTH" \
    --set batch_size="$BATCH" --set train_limit=$((BATCH * STEPS)) --set epochs=2 --set val_size=100 \
    --set warmup_epochs=0 --set mixup_alpha=0 --set dropout=0 --set precision="$p" --set threads="$THREADS" \
    --set log_interval=0 --set tensorboard=false >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  $PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[1])['images_per_second'])" "$out/metrics.jsonl"
}

main_job() {  # build -> "wall_seconds test_top1 precision"
  local b=$1 out="$tmp/main-$1" t0
  t0=$(date +%s.%N)
  "${BUILDS[$b]}/cifar100" train --config configs/fast-cpu.yaml --out "$out" --resume none --overwrite \
    --set threads="$THREADS" >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  $PY -c "import json,sys,time; r=json.load(open(sys.argv[1])); print(f'{time.time()-float(sys.argv[2]):.1f}', r['test_top1'], r['precision'])" \
    "$out/results.json" "$t0"
}

cpu=$(lscpu | sed -n 's/^Model name: *//p')
echo "WRN-$DEPTH-$WIDTH, batch $BATCH, $STEPS steps, $THREADS threads, $ROUNDS rounds; main job $MAIN_ROUNDS round(s); $cpu"
rows="$tmp/rows"
: >"$rows"
for _ in $(seq "$ROUNDS"); do
  for p in fp32 bf16; do
    for b in debian venv; do
      v=$(throughput "$b" "$p")
      echo "throughput $b $p $v" | tee -a "$rows"
    done
  done
done
for _ in $(seq "$MAIN_ROUNDS"); do
  for b in debian venv; do
    v=$(main_job "$b")
    echo "main $b $v" | tee -a "$rows"
  done
done
versions=$(for b in debian venv; do printf '%s=%s\n' "$b" "$("${BUILDS[$b]}/cifar100" --version)"; done)
mkdir -p "$(dirname "$RESULT")"
$PY - "$rows" "$RESULT" "$cpu" "$DEPTH" "$WIDTH" "$BATCH" "$STEPS" "$THREADS" "$versions" <<'PY'
import json, statistics as st, subprocess, sys, datetime
rows_path, result, cpu, depth, width, batch, steps, threads, versions = sys.argv[1:]
flags = open("/proc/cpuinfo").read()
bf16 = "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none"
tp, main = {}, {}
for line in open(rows_path):
    f = line.split()
    if f[0] == "throughput":
        tp.setdefault((f[1], f[2]), []).append(float(f[3]))
    else:
        main.setdefault(f[1], []).append({"wall_seconds": float(f[2]), "test_top1": float(f[3]), "precision": f[4]})
out = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cpu_bf16": bf16, "threads": int(threads),
       "builds": dict(v.split("=", 1) for v in versions.splitlines()),
       "throughput": {"model": f"WRN-{depth}-{width}", "batch": int(batch), "steps": int(steps), "images_per_second": {}},
       "main_job": {"config": "configs/fast-cpu.yaml", "runs": main}}
print(f"\n{'':24} {'Debian 1.13':>12} {'wheel 2.x':>12} {'2.x / 1.13':>11}")
for p in ("fp32", "bf16"):
    d, v = st.median(tp[("debian", p)]), st.median(tp[("venv", p)])
    out["throughput"]["images_per_second"][p] = {"debian": tp[("debian", p)], "venv": tp[("venv", p)],
                                                 "median_ratio_venv_over_debian": round(v / d, 3)}
    print(f"WRN-{depth}-{width} {p} images/s   {d:12.1f} {v:12.1f} {v / d:10.2f}x")
if main:
    d = st.median(r["wall_seconds"] for r in main["debian"]); v = st.median(r["wall_seconds"] for r in main["venv"])
    da = st.median(r["test_top1"] for r in main["debian"]); va = st.median(r["test_top1"] for r in main["venv"])
    out["main_job"]["median_speedup_venv_over_debian"] = round(d / v, 3)
    print(f"main job wall seconds    {d:12.1f} {v:12.1f} {d / v:10.2f}x faster")
    print(f"main job test top-1      {100 * da:11.2f}% {100 * va:11.2f}%   (precision {main['venv'][0]['precision']})")
with open(result, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"wrote {result}")
PY
