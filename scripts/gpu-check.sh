#!/usr/bin/env bash
# Every GPU check of the project in one prepared script, for the GPU machine (one H200, PyTorch 2.x with its
# LibTorch, nvcc, CMake, ninja; no network, no Debian packages). Run it there through the device tool, in two
# calls on the same warm machine (each under the 10-minute limit of one call; the durations are estimates,
# nothing of this has run on the GPU yet):
#   run(command="bash scripts/gpu-check.sh build", carry=[".gpu-bundle"], timeout_s=480)
#   run(command="bash scripts/gpu-check.sh checks speed", timeout_s=590)
# after `scripts/gpu-bundle.sh` here (it packs the non-Torch dependencies into .gpu-bundle/, about 17 MB).
#
# Stages:
#   build   unpack the bundle; configure against python3's torch (its LibTorch, CUDA on); build; report versions
#   checks  unit_torch and the allocator stress test on the 2.x build; WRN-28-10 on CUDA for 3 epochs (20,000
#           images) with checkpoints, best/final weights, the artifact, the test and exit, with core dumps on and
#           a backtrace if it crashes; SIGTERM mid-epoch and resume on CUDA; compute-sanitizer memcheck of a short
#           run with overlapping saves; fp16 with the loss scaler and EMA; SAM; the artifact exported as ONNX
#           (float and uint8 input) and run in onnxruntime against the PyTorch reference
#   speed   the epoch time of WRN-28-10 (45,000 images) against PyTorch (tools/reference/bench_gpu.py: the same
#           model, recipe and data, eager and torch.compile)
#   all     all three (stages can also be listed: `checks speed`)
#   --dry-run  the same steps on this CPU machine with the existing build/ and tiny sizes (device=cpu, no
#           compute-sanitizer), to check the script itself; CI runs it (ctest gpu.dry_run).
# Results: $OUT/gpu-check.log (everything) and $OUT/summary.md (one line per check, with figures). A failing
# check is recorded and the next one still runs; the exit status is the number of failed checks (0 = all passed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
STAGES=""
DRY=0
for a in "$@"; do
  case "$a" in
    build|checks|speed) STAGES="$STAGES $a" ;;
    all) STAGES="build checks speed" ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument '$a' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$STAGES" ] || STAGES="build checks speed"
[ "$DRY" = 1 ] && STAGES="${STAGES/build/}"   # the dry run uses the existing CPU build
want() { [[ " $STAGES " == *" $1 "* ]]; }
OUT="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
SUM="$OUT/summary.md"
[ -f "$LOG" ] && mv -f "$LOG" "$LOG.prev"   # checks read this run's log only
[ -f "$SUM" ] && mv -f "$SUM" "$SUM.prev"
WORK="${GPU_CHECK_WORK:-/tmp/gpu-check-work}"
mkdir -p "$WORK"
PY=python3
[ -x /usr/bin/python3 ] && [ "$DRY" = 1 ] && PY=/usr/bin/python3
FAILED=0

log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
record() { echo "| $1 | $2 | $3 |" >>"$SUM"; log "RESULT $1: $2 - $3"; [ "$2" = PASS ] || [ "$2" = INFO ] || FAILED=$((FAILED + 1)); }
# step NAME TIMEOUT CMD...: runs CMD with a time limit, its output into the log; returns its status.
step() {
  local name=$1 limit=$2
  shift 2
  log "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  log "=== $name: exit $rc after $((SECONDS - t0)) s"
  return $rc
}
[ -f "$SUM" ] || printf '| check | result | details |\n| --- | --- | --- |\n' >"$SUM"

if [ "$DRY" = 1 ]; then
  BUILD=${GPU_CHECK_BUILD:-$ROOT/build}
  DEVICE=cpu
  PREC=auto   # bf16 where the CPU has it natively; emulated bf16 would make the dry run crawl
  LOGI=2
  # Tiny sizes: the point is the script's logic, not the figures.
  N_TRAIN=800; N_TEST=200; VAL=160; DEPTH=10; WIDTH=1; BATCH=64; WORKERS=1; SHORT=320; MID_DEPTH=10; MID_WIDTH=1
else
  BUILD=$ROOT/build-gpu
  DEVICE=cuda
  PREC=bf16
  LOGI=20
  N_TRAIN=50000; N_TEST=10000; VAL=5000; DEPTH=28; WIDTH=10; BATCH=256; WORKERS=8; SHORT=10000; MID_DEPTH=16; MID_WIDTH=8
fi
BIN=$BUILD/cifar100
export CIFAR100_DEVICE=$DEVICE

# ------------------------------------------------------------------------------------------------ build
if want build; then
  log "host: $(uname -a)"
  { nvidia-smi; nvcc --version; cmake --version | head -1; c++ --version | head -1;
    $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)';
    compute-sanitizer --version 2>&1 | head -2; } >>"$LOG" 2>&1
  [ -f .gpu-bundle/bundle.tar.xz ] || { record build FAIL ".gpu-bundle/bundle.tar.xz missing: run scripts/gpu-bundle.sh here and carry .gpu-bundle"; exit 1; }
  mkdir -p /opt/cifar100-deps && tar -xJf .gpu-bundle/bundle.tar.xz -C /opt/cifar100-deps
  # Debian's multiarch headers (openssl/opensslconf.h, curl/, jconfig.h) sit where only the system's own
  # include directory is searched: search them like system headers, after the explicit ones.
  export CPLUS_INCLUDE_PATH=/opt/cifar100-deps/usr/include/x86_64-linux-gnu
  TORCH_PREFIX=$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  if step configure 240 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_PREFIX_PATH=/opt/cifar100-deps/usr;$TORCH_PREFIX" -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCIFAR100_BUILD_BENCH=OFF &&
     step build 420 env LD_LIBRARY_PATH=/opt/cifar100-deps/usr/lib/x86_64-linux-gnu cmake --build "$BUILD" -j "$(nproc)"; then
    record build PASS "the same sources built against $($PY -c 'import torch; print(torch.__version__)')"
  else
    record build FAIL "see gpu-check.log (configure/build)"
    exit "$FAILED"
  fi
fi
want checks || want speed || exit "$FAILED"

# ------------------------------------------------------------------------------------------------ checks
[ -x "$BIN" ] || { record checks FAIL "$BIN is missing: run the build stage first (on the same warm machine)"; exit 1; }
export LD_LIBRARY_PATH=/opt/cifar100-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ulimit -c unlimited 2>/dev/null || true
[ "$DRY" = 0 ] && { echo "$WORK/core.%e.%p" >/proc/sys/kernel/core_pattern; } 2>/dev/null

if want checks && [ "$DRY" = 0 ]; then
  if step unit_torch 240 "$BUILD/tests/unit_torch" --gtest_brief=1; then record unit_torch PASS "all unit_torch tests on the 2.x build"
  else record unit_torch FAIL "see gpu-check.log"; fi
  if step alloc_stress 120 "$BUILD/tests/alloc_stress_asan" 8 8000; then record alloc_stress PASS "8 threads under ASan"
  else record alloc_stress FAIL "see gpu-check.log"; fi
fi

DATA=$WORK/data
[ -f "$DATA/cifar-100-binary/train.bin" ] || [ -f "$DATA/train.bin" ] ||
  step data 120 "$BUILD/tests/make_fake_cifar" "$DATA" --train "$N_TRAIN" --test "$N_TEST" --classes 100
TRAIN_BIN=$(find "$DATA" -name train.bin | head -1)

COMMON=(--data-dir "$DATA" --set "depth=$DEPTH" --set "width=$WIDTH" --set "batch_size=$BATCH" --set "val_size=$VAL"
        --set "precision=$PREC" --set "workers=$WORKERS" --set augment=standard --set "log_interval=$LOGI"
        --set eval_batch_size=1000 --set early_stopping_patience=0 --set warmup_epochs=1)

# A crash leaves a core file: print its backtrace (cuda-gdb is the debugger there; gdb where present).
backtrace() {
  local core
  core=$(find "$WORK" -maxdepth 1 -name 'core.*' -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -1 | cut -d' ' -f2-)
  [ -n "$core" ] || { log "no core file"; return; }
  local dbg
  dbg=$(command -v gdb || command -v cuda-gdb)
  [ -n "$dbg" ] && timeout 120 "$dbg" -batch -ex "thread apply all bt 20" "$BUILD/cifar100-engine" "$core" >>"$LOG" 2>&1
  cp "$core" "$OUT/" 2>/dev/null; rm -f "$core"
}

if want checks; then
# 1. The replaced module's job: WRN-28-10 for 3 epochs with every save path, the test, the artifact, exit.
RUN_A=$WORK/wrn-full
rm -rf "$RUN_A"
if step wrn_3_epochs 300 "$BIN" train "${COMMON[@]}" --out "$RUN_A" --set epochs=3 --set checkpoint_every_epochs=1 \
     --set train_limit=$((2 * SHORT)) --set checkpoint_every_minutes=0.1; then
  if [ -f "$RUN_A/results.json" ] && [ -f "$RUN_A/best.pt" ] && [ -f "$RUN_A/final.pt" ] && [ -f "$RUN_A/model/model.safetensors" ]; then
    ep=$($PY -c "import json; r=[json.loads(l) for l in open('$RUN_A/metrics.jsonl')]; print('%.2f' % r[-1]['train_seconds'])")
    record wrn_3_epochs PASS "exit 0; results, best.pt, final.pt, artifact present; epoch 3 train time ${ep} s"
    # The run's artifact as ONNX, run in onnxruntime against the PyTorch reference (Debian has no onnxruntime).
    if $PY -c "import onnxruntime" 2>/dev/null; then
      for input in float uint8; do
        if step "onnx_$input" 120 "$BIN" export --model "$RUN_A/model" --onnx "$WORK/wrn-$input.onnx" --onnx-input $input &&
           step "onnx_${input}_runtime" 180 $PY tools/reference/onnx_check.py "$WORK/wrn-$input.onnx" "$RUN_A/model"; then
          record "onnx_$input" PASS "$(grep -o 'onnx_check=.*' "$LOG" | tail -1)"
        else record "onnx_$input" FAIL "see gpu-check.log"; fi
      done
    else
      record onnx INFO "skipped: no onnxruntime for $PY"
    fi
  else
    record wrn_3_epochs FAIL "exit 0 but files are missing"
  fi
else
  rc=$?
  record wrn_3_epochs FAIL "exit $rc (139 = SIGSEGV); backtrace in gpu-check.log"
  backtrace
fi

# 2. SIGTERM mid-epoch, then the same command resumes (never exercised on CUDA before).
RUN_B=$WORK/wrn-term
rm -rf "$RUN_B"
# Three epochs, the signal during the second: even when the poll below is late, the run is still training.
TERM_ARGS=("${COMMON[@]}" --out "$RUN_B" --set epochs=3 --set "train_limit=$((2 * SHORT))" --set checkpoint_every_epochs=1)
log "=== sigterm_resume: first run, SIGTERM at epoch 2 of 3"
"$BIN" train "${TERM_ARGS[@]}" >"$WORK/term.log" 2>&1 &
pid=$!   # the command execs the engine in place: this is the training process
for _ in $(seq 1 3000); do
  grep -q "progress: epoch 2/3" "$WORK/term.log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -TERM $pid 2>/dev/null
wait $pid
rc1=$?
cat "$WORK/term.log" >>"$LOG"
if [ $rc1 = 0 ] && grep -q "stopped by SIGTERM" "$WORK/term.log" && step sigterm_resume 300 "$BIN" train "${TERM_ARGS[@]}" &&
   grep -Eq "resuming at epoch [23]" "$LOG" && [ -f "$RUN_B/results.json" ]; then
  record sigterm_resume PASS "SIGTERM wrote a checkpoint and exited 0; then the same command resumed ($(grep -Eo "resuming at epoch [0-9]+, batch [0-9]+/[0-9]+" "$LOG" | tail -1)) and finished"
else
  record sigterm_resume FAIL "first run exit $rc1; see gpu-check.log"
  backtrace
fi

# 3. compute-sanitizer memcheck over a short run whose saves overlap training (a save every step).
if [ "$DRY" = 0 ] && command -v compute-sanitizer >/dev/null; then
  RUN_C=$WORK/sanitize
  rm -rf "$RUN_C"
  if step memcheck 180 compute-sanitizer --tool memcheck --error-exitcode 99 "$BUILD/cifar100-engine" train \
       --data-dir "$DATA" --out "$RUN_C" --set depth=10 --set width=2 --set batch_size=128 --set val_size=500 \
       --set train_limit=1024 --set epochs=2 --set checkpoint_every_minutes=0.001 --set workers=2 --set log_interval=0; then
    record memcheck PASS "compute-sanitizer memcheck: no errors over 2 epochs with a checkpoint every step"
  else
    record memcheck FAIL "exit $? (99 = errors found; see gpu-check.log; on gVisor the tool does not run)"
  fi
else
  record memcheck INFO "skipped (dry run or no compute-sanitizer)"
fi

# 4. fp16 with the loss scaler, EMA and SAM, end to end (fp16 needs CUDA: the dry run checks the refusal).
RUN_D=$WORK/fp16
rm -rf "$RUN_D"
if [ "$DRY" = 0 ]; then
  if step fp16_ema 300 "$BIN" train "${COMMON[@]}" --out "$RUN_D" --set depth=$MID_DEPTH --set width=$MID_WIDTH --set epochs=2 \
       --set train_limit=$SHORT --set precision=fp16 --set ema_decay=0.999; then
    record fp16_ema PASS "$(grep -o 'loss_scale=[^;]*; skipped_steps=[^;]*' "$LOG" | tail -1); $(grep -o 'ema_top1=[^;]*' "$LOG" | tail -1)"
  else record fp16_ema FAIL "see gpu-check.log"; fi
else
  if "$BIN" train "${COMMON[@]}" --out "$RUN_D" --set precision=fp16 >>"$LOG" 2>&1; then record fp16_refused FAIL "fp16 ran on the CPU"
  else record fp16_refused PASS "precision=fp16 on the CPU is refused"; fi
fi
RUN_E=$WORK/sam
rm -rf "$RUN_E"
if step sam 300 "$BIN" train "${COMMON[@]}" --out "$RUN_E" --set depth=$MID_DEPTH --set width=$MID_WIDTH --set epochs=1 \
     --set train_limit=$SHORT --set warmup_epochs=0.5 --set sam_rho=0.05 --set ema_decay=0.999; then
  record sam PASS "SAM + EMA: $(grep -o 'images_per_second=[^;]*' "$LOG" | tail -1)"
else record sam FAIL "see gpu-check.log"; fi

fi  # checks

if want speed; then
# 5. Epoch time against PyTorch: the same model, recipe (crop+flip, MixUp 0.2, label smoothing, clipping,
#    Nesterov SGD, bf16 autocast, channels-last), data and batch; the second epoch of ours (the first pays for
#    cuDNN autotuning) against one epoch of PyTorch's after 20 warm-up steps.
RUN_F=$WORK/speed
rm -rf "$RUN_F"
if step speed_ours 300 "$BIN" train "${COMMON[@]}" --out "$RUN_F" --set epochs=2 --set log_interval=0 \
     --set checkpoint_every_epochs=0; then
  ours=$($PY -c "import json; r=[json.loads(l) for l in open('$RUN_F/metrics.jsonl')]; print('%.3f' % r[-1]['train_seconds'])")
  gmac=$(grep -o '[0-9.]* GMAC per image' "$LOG" | tail -1 | cut -d' ' -f1)
  record speed_ours INFO "WRN-$DEPTH-$WIDTH epoch: ${ours} s"
  peer_args=("$TRAIN_BIN" "$((N_TRAIN - VAL))" "$DEPTH" "$WIDTH" "$BATCH" --device "$DEVICE" --workers "$WORKERS")
  [ "$DRY" = 1 ] && peer_args+=(--warmup-steps 2)
  for mode in eager compile; do
    extra=()
    [ $mode = compile ] && extra=(--compile)
    [ $mode = compile ] && [ "$DRY" = 1 ] && continue
    if step "speed_pytorch_$mode" 300 env PYTHONUNBUFFERED=1 $PY tools/reference/bench_gpu.py "${peer_args[@]}" "${extra[@]}"; then
      peer=$(grep -o 'epoch_seconds=[0-9.]*' "$LOG" | tail -1 | cut -d= -f2)
      ratio=$($PY -c "print('%.2f' % ($ours / $peer))")
      flops=$($PY -c "print('%.0f' % (6 * ${gmac:-0} * 1e9 * $((N_TRAIN - VAL)) / $ours / 1e12))")
      record "speed_vs_pytorch_$mode" INFO "ours ${ours} s, PyTorch ($mode) ${peer} s: ours/PyTorch = ${ratio}x; ours ~${flops} TFLOP/s (6 x MACs x images)"
    else
      record "speed_pytorch_$mode" FAIL "see gpu-check.log"
    fi
  done
else
  record speed_ours FAIL "see gpu-check.log"
fi
fi  # speed

log "done: $FAILED failed check(s); summary in $SUM"
cat "$SUM"
exit "$FAILED"
