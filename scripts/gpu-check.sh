#!/usr/bin/env bash
# The GPU checks of cifar100, prepared for the lent GPU machine (one H100 or H200 with PyTorch 2.x and its
# LibTorch, nvcc, CMake, ninja, 16 cores; no network, no Debian packages), in two calls of the device tool.
# Nothing here has run on a GPU yet: every duration below is an estimate for an H100.
#
# First, on this machine: scripts/build.sh (any build) and scripts/gpu-bundle.sh (.gpu-bundle/bundle.tar.xz,
# ~17 MB: the non-Torch dependencies, unpacked there into /opt/cifar100-deps). Then:
#
#   run(command="bash scripts/gpu-check.sh main", carry=[".gpu-bundle"], timeout_s=540)
#     The answers that matter most, within GPU_CHECK_BUDGET=520 s (estimated ~400 s in all):
#       info            GPU name and memory, driver, torch and its CUDA version, glibc, tools        ~10 s
#       unpack, build   the bundle; configure against python3's torch (CUDA required) and build only
#                       cifar100, cifar100-engine and make_fake_cifar (74 files) with 16 jobs       ~180 s
#       data            make_fake_cifar: 50,000 training and 10,000 test images                        ~3 s
#       wrn_crash       WRN-28-10 bf16, 3 epochs of 12,000 images with every save path: time-based
#                       checkpoints (every 1.8 s), end-of-epoch (best/periodic) checkpoints, best.pt,
#                       final.pt, the artifact, the test and exit; core dumps on, gdb backtrace on a crash  ~45 s
#       augment_on_device, bf16   from that run: its log says the augmentation ran on cuda (auto), its
#                       results.json says bf16
#       sigterm_resume  WRN-28-10, 3 epochs of 6,000 images: SIGTERM mid-epoch 2, then the same command
#                       resumes there and runs to the end                                             ~45 s
#       fp16_ema        WRN-16-8 fp16 with the loss scaler, plus EMA: 2 epochs of 10,000 images       ~20 s
#       sam_ema         WRN-16-8 bf16 with SAM and EMA: 1 epoch of 10,000 images                      ~15 s
#       speed           WRN-28-10 bf16, batch 256, 20,000 images: our second epoch against one epoch of
#                       PyTorch eager (tools/reference/bench_gpu.py: same model, recipe, data, batch)  ~60 s
#
#   run(command="GPU_CHECK_BUDGET=300 bash scripts/gpu-check.sh extra", carry=[".gpu-bundle"], timeout_s=320)
#     Optional, in the device time main leaves (GPU_CHECK_BUDGET: that time, less ~20 s for timeout_s; in
#     all ~400 s with a warm build). Right after main, on the still-warm machine, build-gpu/ is reused and only
#     unit_torch's 7 files compile (~45 s); on a fresh machine the build takes ~4 min. Steps in this order,
#     each cut to the time left, the rest SKIPPED:
#       unit_torch      build and run all unit_torch tests against python3's LibTorch                 ~20 s
#       memcheck        compute-sanitizer memcheck over 2 short epochs with a checkpoint every step   ~120 s
#       onnx            WRN-28-10 artifact exported as ONNX (float and uint8 input) and run in onnxruntime
#                       against the PyTorch reference (tools/reference/onnx_check.py); INFO when python3
#                       has no onnxruntime                                                            ~50 s
#       compile         the PyTorch peer with torch.compile (same sizes as main's speed row)          ~120 s
#
#   bash scripts/gpu-check.sh --dry-run [main|extra]   (both stages when none is named)
#     Here, on the CPU: the same steps with tiny sizes and device=cpu against build-cuda/ (GPU_CHECK_BUILD),
#     configured with exactly scripts/build.sh --torch venv's arguments (so nothing is rebuilt), the venv's
#     Python; no bundle, compute-sanitizer or torch.compile. CI runs it (ctest integration.gpu_check_dry_run).
#
# Results: $OUT/summary.md (one row per check: result, seconds, figures; environment rows first) and
# $OUT/gpu-check.log (each step's last 400 lines; full outputs, runs and core files stay in GPU_CHECK_WORK,
# default /tmp/gpu-check-work). Results: PASS, FAIL (an exit status), TIMEOUT (after N s), SKIPPED (no time
# left), INFO (figures, or not applicable). The exit status is the number of FAIL, TIMEOUT and SKIPPED rows.
# LD_LIBRARY_PATH (the bundle's libraries) is given only to our binaries, never to Python.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

STAGES=()
DRY=0
for a in "$@"; do
  case "$a" in
    main|extra) STAGES+=("$a") ;;
    all) STAGES=(main extra) ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument '$a' (see --help)" >&2; exit 2 ;;
  esac
done
if [ ${#STAGES[@]} -eq 0 ]; then
  [ "$DRY" = 1 ] || { echo "gpu-check: name a stage: main or extra (see --help)" >&2; exit 2; }
  STAGES=(main extra)
fi
want() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

OUT="${OUT:-/tmp/gpu-check-out}"
WORK="${GPU_CHECK_WORK:-/tmp/gpu-check-work}"
mkdir -p "$OUT" "$WORK/logs" "$WORK/runs" "$WORK/cores" || exit 2
LOG="$OUT/gpu-check.log"
SUM="$OUT/summary.md"
CORES="$WORK/cores"   # every step runs here, so that a core file named by a relative core_pattern lands here
rm -f "$CORES"/core*  # an earlier call's
: >"$LOG"
printf '| check | result | seconds | details |\n| --- | --- | --- | --- |\n' >"$SUM"
BUDGET="${GPU_CHECK_BUDGET:-520}"   # seconds for this call: no step runs past it
RESERVE=15                          # kept for a step's --kill-after and the summary
TAIL=400                            # lines of each step's output that go into the log
START=$SECONDS
FAILED=0

if [ "$DRY" = 1 ]; then
  BUILD="${GPU_CHECK_BUILD:-$ROOT/build-cuda}"
  PY="${GPU_CHECK_PYTHON:-$(./scripts/setup-python.sh --path)/bin/python}"
  DEVICE=cpu
  PREC=auto          # bf16 only where the CPU has it natively (emulated bf16 would make the dry run crawl)
  EXPECT_PREC=""     # whatever auto chose
  AUG_MODE=true      # auto means CUDA only: the dry run forces the device path on the CPU
  N_TRAIN=1200; N_TEST=200; VAL=160; BATCH=32; WORKERS=1; LOGI=2; EVAL=200
  BIG=(--set depth=10 --set width=1); MID=(--set depth=10 --set width=1); BIG_NAME=WRN-10-1; MID_NAME=WRN-10-1
  # A CPU epoch of 8 steps can end in 0.3 s, and each epoch's save resets the clock: 30 ms makes a
  # time-based save certain within an epoch on any CPU.
  CRASH_IMAGES=256; CRASH_MINUTES=0.0005; TERM_IMAGES=640; MID_IMAGES=160; SPEED_IMAGES=320; WARMUP=2
  SMALL_TRAIN=800; SMALL_TEST=100; SMALL_VAL=96; ART_IMAGES=320
else
  BUILD="${GPU_CHECK_BUILD:-$ROOT/build-gpu}"
  PY="${GPU_CHECK_PYTHON:-python3}"
  DEVICE=cuda
  PREC=bf16
  EXPECT_PREC=bf16
  AUG_MODE=auto      # on CUDA with augment=standard, auto must choose the device
  N_TRAIN=50000; N_TEST=10000; VAL=5000; BATCH=256; WORKERS=8; LOGI=20; EVAL=1000
  BIG=(--set depth=28 --set width=10); MID=(--set depth=16 --set width=8); BIG_NAME=WRN-28-10; MID_NAME=WRN-16-8
  CRASH_IMAGES=12000; CRASH_MINUTES=0.03; TERM_IMAGES=6000; MID_IMAGES=10000; SPEED_IMAGES=20000; WARMUP=20
  SMALL_TRAIN=3000; SMALL_TEST=500; SMALL_VAL=256; ART_IMAGES=1280
fi
BIN=$BUILD/cifar100
ENGINE=$BUILD/cifar100-engine
DATA=$WORK/data
SMALL=$WORK/data-small
# How our binaries are started: with the bundle's libraries on LD_LIBRARY_PATH on the GPU machine (set after
# unpacking), plain in the dry run. Python, cmake and the other tools never get it.
DEPS=""
DEPS_LIB=""
OURS=(env)

# ------------------------------------------------------------------------------------------------ helpers
log() { echo "$(date -u +%H:%M:%S) [$((SECONDS - START))s] $*" | tee -a "$LOG"; }
# record CHECK RESULT SECONDS DETAILS: one summary row; FAIL, TIMEOUT and SKIPPED count as failed.
record() {
  local details=${4//|/\/}
  echo "| $1 | $2 | $3 | $details |" >>"$SUM"
  log "RESULT $1: $2 ($3 s) $details"
  case "$2" in PASS|INFO) ;; *) FAILED=$((FAILED + 1)) ;; esac
}
left() { echo $((BUDGET - (SECONDS - START))); }
# limit_for WANT: WANT seconds, or less when the budget has less left (0 when a step cannot usefully start).
limit_for() {
  local want=$1 room
  room=$(( $(left) - RESERVE ))
  if [ "$room" -lt "$want" ] && [ "$room" -lt 20 ]; then echo 0
  elif [ "$room" -lt "$want" ]; then echo "$room"
  else echo "$want"; fi
}
# Appends the last $TAIL lines of a step's output file to the log.
append_tail() {
  local f=$1 n
  n=$(wc -l <"$f" 2>/dev/null || echo 0)
  if [ "$n" -gt "$TAIL" ]; then
    echo "    [... $((n - TAIL)) earlier lines in $f ...]" >>"$LOG"
  fi
  tail -n "$TAIL" "$f" 2>/dev/null | sed 's/^/    /' >>"$LOG"
}
signame() {
  case "$1" in
    132) echo " (SIGILL)" ;; 134) echo " (SIGABRT)" ;; 135) echo " (SIGBUS)" ;; 136) echo " (SIGFPE)" ;;
    137) echo " (SIGKILL)" ;; 139) echo " (SIGSEGV)" ;; *) echo "" ;;
  esac
}
# run_step NAME WANT CMD...: runs CMD in $CORES with a limit of WANT seconds, cut to what the budget has left.
# The full output goes to $WORK/logs/NAME.log (SLOG), its last $TAIL lines into the log. Sets RC (124 on a
# timeout, 125 when skipped), SECS, STATUS (PASS, FAIL, TIMEOUT, SKIPPED) and WHY (for a failed row).
run_step() {
  local name=$1 want=$2 limit t0
  shift 2
  SLOG=$WORK/logs/$name.log
  : >"$SLOG"
  SECS=0
  limit=$(limit_for "$want")
  if [ "$limit" -eq 0 ]; then
    RC=125; STATUS=SKIPPED; WHY="not run: $(left) s of the ${BUDGET}-s budget left"
    log "=== $name: SKIPPED ($WHY)"
    return 1
  fi
  log "=== $name (limit ${limit} s): $*"
  t0=$SECONDS
  (cd "$CORES" && exec timeout --kill-after=15 "$limit" "$@") >"$SLOG" 2>&1
  RC=$?
  SECS=$((SECONDS - t0))
  append_tail "$SLOG"
  if [ "$RC" = 124 ] || { [ "$RC" = 137 ] && [ "$SECS" -ge "$limit" ]; }; then
    RC=124; STATUS=TIMEOUT; WHY="TIMEOUT after $SECS s (limit $limit s)"
  elif [ "$RC" = 0 ]; then
    STATUS=PASS; WHY=""
  else
    STATUS=FAIL; WHY="exit $RC$(signame "$RC") after $SECS s; see gpu-check.log"
  fi
  log "=== $name: ${WHY:-exit 0 after $SECS s}"
  [ "$RC" = 0 ]
}
# Whether a process is still running (a child that exited stays a zombie until waited for).
alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [ "${s:0:1}" != Z ]
}
# wait_exit PID LIMIT: waits up to LIMIT seconds for PID to end; sets RC to its exit status, or kills it and
# sets RC=124 on a timeout.
wait_exit() {
  local pid=$1 end=$((SECONDS + $2))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$end" ]; then
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      RC=124
      return 1
    fi
    sleep 0.2
  done
  wait "$pid"
  RC=$?
  [ "$RC" = 0 ]
}
# json FILE EXPR: evaluates EXPR on the JSON object in FILE (as r), or on the list of metrics.jsonl rows (as
# rows, r = the last); prints the result, or nothing when it fails.
json() {
  timeout 60 "$PY" - "$1" "$2" 2>/dev/null <<'EOF'
import json, sys
path, expr = sys.argv[1], sys.argv[2]
text = open(path).read()
if path.endswith(".jsonl"):
    rows = [json.loads(l) for l in text.splitlines() if l.strip()]
    r = rows[-1]
else:
    rows, r = None, json.loads(text)
print(eval(expr))
EOF
}
# Counts the checkpoints of a step's output by reason: "best 3, time 5, final 1".
ckpt_reasons() {
  grep -o 'written ([a-z]*, epoch' "$1" | sed 's/written (//; s/, epoch//' | sort | uniq -c |
    awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}'
}
# backtrace NAME PROGRAM ARGS...: after a crash (a signal), the backtrace from the newest core file with gdb,
# or (no core file, gdb present, time left) from PROGRAM ARGS rerun under gdb; into the log, never into $OUT.
backtrace() {
  local name=$1 prog=$2 core dbg bt lim
  shift 2
  bt=$WORK/logs/$name.backtrace
  dbg=$(command -v gdb || command -v cuda-gdb || true)
  core=$(find "$CORES" -maxdepth 1 -name 'core*' -type f -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -1 | cut -d' ' -f2-)
  if [ -n "$core" ] && [ -n "$dbg" ]; then
    lim=$(limit_for 180)
    [ "$lim" -gt 0 ] || lim=20
    log "=== $name: backtrace from $core ($(du -h "$core" | cut -f1); limit $lim s)"
    timeout "$lim" "$dbg" -batch -ex bt -ex "thread apply all bt 15" "$prog" "$core" >"$bt" 2>&1 ||
      echo "gdb: exit $? (124: TIMEOUT after $lim s)" >>"$bt"
  elif [ -n "$core" ]; then
    echo "core file $core, but neither gdb nor cuda-gdb is installed" >"$bt"
  elif [ -n "$dbg" ] && lim=$(limit_for 240) && [ "$lim" -gt 60 ]; then
    log "=== $name: no core file (core_pattern: $(cat /proc/sys/kernel/core_pattern 2>/dev/null)); rerunning under $dbg (limit $lim s)"
    local env_cmd=()
    [ -z "$DEPS_LIB" ] || env_cmd=(-ex "set environment LD_LIBRARY_PATH $DEPS_LIB")
    (cd "$CORES" && exec timeout --kill-after=10 "$lim" "$dbg" -batch "${env_cmd[@]}" -ex run -ex bt \
      -ex "thread apply all bt 15" --args "$prog" "$@") >"$bt" 2>&1 || echo "gdb: exit $? (124: TIMEOUT after $lim s)" >>"$bt"
  else
    echo "no core file (core_pattern: $(cat /proc/sys/kernel/core_pattern 2>/dev/null)) and no gdb or no time to rerun under it" >"$bt"
  fi
  append_tail "$bt"
  [ -n "$core" ] && rm -f "$core"
  return 0
}
crashed() { [ "$RC" -gt 128 ] && [ "$RC" != 137 ] && [ "$STATUS" != TIMEOUT ]; }

# ------------------------------------------------------------------------------------------------ info
info() {
  local gpu smi_cuda tor glibc tools
  if command -v nvidia-smi >/dev/null; then
    gpu=$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)
    smi_cuda=$(timeout 30 nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | head -1)
    timeout 30 nvidia-smi >>"$LOG" 2>&1
    record gpu INFO 0 "${gpu%,*}"
    record driver INFO 0 "${gpu##*, } (${smi_cuda:-CUDA version not shown})"
  else
    record gpu INFO 0 "none: no nvidia-smi (dry run: device=$DEVICE)"
  fi
  tor=$(timeout 120 "$PY" - 2>&1 <<'EOF' | tail -1
import platform, sys
import torch
c = torch.cuda.is_available()
gpu = f" ({torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)})" if c else ""
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"cuda available: {c}{gpu}; Python {platform.python_version()} ({sys.executable})")
EOF
)
  record torch INFO 0 "$tor"
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>/dev/null | head -1)
  record glibc INFO 0 "$glibc (the bundle's libraries come from Debian bookworm: glibc 2.36)"
  tools="$(uname -r); $(nproc) cores; cmake $(cmake --version 2>/dev/null | head -1 | awk '{print $3}')"
  tools+="; $(c++ --version 2>/dev/null | head -1); nvcc $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
  tools+="; gdb: $(command -v gdb || command -v cuda-gdb || echo none); compute-sanitizer: $(command -v compute-sanitizer || echo none)"
  record tools INFO 0 "$tools"
  log "core_pattern: $(cat /proc/sys/kernel/core_pattern 2>/dev/null); ulimit -c: $(ulimit -c)"
}

# ------------------------------------------------------------------------------------------------ build
# The build step of both machines: scripts/build.sh --torch venv with only the named targets. In the dry run
# that is exactly build.sh's configure line on build-cuda/ (nothing is rebuilt); on the GPU machine its torch
# is python3's, and the bundle is on the prefix path.
unpack() {
  [ "$DRY" = 1 ] && return 0
  [ -n "$DEPS" ] && return 0
  if [ ! -f "$ROOT/.gpu-bundle/bundle.tar.xz" ]; then
    record unpack FAIL 0 ".gpu-bundle/bundle.tar.xz is missing: run scripts/gpu-bundle.sh here and carry .gpu-bundle"
    return 1
  fi
  DEPS=/opt/cifar100-deps
  mkdir -p "$DEPS" 2>/dev/null && [ -w "$DEPS" ] || DEPS=$WORK/deps
  mkdir -p "$DEPS"
  if ! run_step unpack 90 tar -xJf "$ROOT/.gpu-bundle/bundle.tar.xz" -C "$DEPS"; then
    record unpack "$STATUS" "$SECS" "$WHY"
    DEPS=""
    return 1
  fi
  DEPS_LIB=$DEPS/usr/lib/x86_64-linux-gnu
  OURS=(env "LD_LIBRARY_PATH=$DEPS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  # Core files for a crash's backtrace, next to the steps (needs a writable /proc/sys; else the log says where).
  echo "$CORES/core.%e.%p" >/proc/sys/kernel/core_pattern 2>/dev/null
  return 0
}
# build_targets NAME WANT TARGET...
build_targets() {
  local name=$1 want=$2 rebuilt
  shift 2
  local env_args=(env "BUILD_DIR=$BUILD" "TARGETS=$*")
  if [ "$DRY" = 1 ]; then
    run_step "$name" "$want" "${env_args[@]}" "$ROOT/scripts/build.sh" --torch venv
  else
    unpack || return 1
    [ -x "$(command -v nvcc)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH=$PATH:/usr/local/cuda/bin
    # Debian's multiarch headers (openssl/opensslconf.h, curl/, jconfig.h) sit where only the system's own
    # include directory is searched: CPLUS_INCLUDE_PATH searches them like system headers. The bundle's
    # libraries are found at link time through -rpath-link, and gtest discovery waits for ctest, so the build
    # itself runs none of our binaries and needs no LD_LIBRARY_PATH.
    run_step "$name" "$want" "${env_args[@]}" "JOBS=$(nproc)" "TORCH_PYTHON=$PY" TORCH_CUDA_ARCH_LIST=9.0 \
      "CPLUS_INCLUDE_PATH=$DEPS/usr/include/x86_64-linux-gnu" \
      "$ROOT/scripts/build.sh" --torch venv "-DCMAKE_PREFIX_PATH=$DEPS/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCIFAR100_BUILD_BENCH=OFF "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$DEPS_LIB" \
      -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST
  fi
  if [ "$RC" = 0 ]; then
    if grep -q 'no work to do' "$SLOG"; then rebuilt="nothing rebuilt"
    else rebuilt="$(grep -c '^\[[0-9]*/[0-9]*\]' "$SLOG") build steps"; fi
    record "$name" PASS "$SECS" "$* in $BUILD against $(torch_of_build); $rebuilt"
  else
    record "$name" "$STATUS" "$SECS" "$WHY"
  fi
  [ "$RC" = 0 ]
}
torch_of_build() {
  local dir
  dir=$(sed -n 's/^CIFAR100_TORCH_DIR:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
  echo "the LibTorch of $dir ($(sed -n "s/^__version__ = '\(.*\)'/torch \1/p" "$dir/version.py" 2>/dev/null))"
}

DATA_MADE=0
make_data() {
  [ "$DATA_MADE" = 1 ] && return 0
  rm -rf "$DATA" "$SMALL"
  if run_step data 120 "${OURS[@]}" "$BUILD/tests/make_fake_cifar" "$DATA" --train "$N_TRAIN" --test "$N_TEST" --classes 100 &&
     run_step data_small 60 "${OURS[@]}" "$BUILD/tests/make_fake_cifar" "$SMALL" --train "$SMALL_TRAIN" --test "$SMALL_TEST" --classes 100; then
    DATA_MADE=1
    return 0
  fi
  record data "$STATUS" "$SECS" "$WHY"
  return 1
}

COMMON=(--set "device=$DEVICE" --set "batch_size=$BATCH" --set "val_size=$VAL" --set "precision=$PREC"
        --set "workers=$WORKERS" --set augment=standard --set "log_interval=$LOGI" --set "eval_batch_size=$EVAL"
        --set early_stopping_patience=0 --set warmup_epochs=1)

# ------------------------------------------------------------------------------------------------ main
wrn_crash() {
  local run=$WORK/runs/crash files=() missing="" reasons
  rm -rf "$run"
  local args=(train --data-dir "$DATA" "${COMMON[@]}" "${BIG[@]}" --set "augment_on_device=$AUG_MODE" --out "$run" --set epochs=3
              --set "train_limit=$CRASH_IMAGES" --set checkpoint_every_epochs=1
              --set "checkpoint_every_minutes=$CRASH_MINUTES")
  run_step wrn_crash 200 "${OURS[@]}" "$BIN" "${args[@]}"
  local slog=$SLOG secs=$SECS ok=$RC
  # The augmentation's device is logged at the start: judged even when the run failed later.
  if grep -q "augmentation runs on $DEVICE" "$slog"; then
    record augment_on_device PASS 0 "augment_on_device=$AUG_MODE: $(grep -o "augmentation runs on $DEVICE.*" "$slog" | head -1)"
  else
    record augment_on_device FAIL 0 "no 'augmentation runs on $DEVICE' in the run's log: $(grep -o 'augmentation runs .*' "$slog" | head -1)"
  fi
  if [ "$ok" != 0 ]; then
    record wrn_crash "$STATUS" "$secs" "$BIG_NAME, 3 epochs of $CRASH_IMAGES: $WHY$(crashed && echo "; backtrace in gpu-check.log"); checkpoints before: $(ckpt_reasons "$slog")"
    crashed && backtrace wrn_crash "$ENGINE" "${args[@]/$run/$run-gdb}"
    return
  fi
  for f in results.json best.pt final.pt model/model.safetensors model/config.json report.html; do
    if [ -f "$run/$f" ]; then files+=("$f"); else missing+=" $f"; fi
  done
  reasons=$(ckpt_reasons "$slog")
  if [ -z "$missing" ] && [[ "$reasons" == *time* ]] && [[ "$reasons" == *final* ]] &&
     [[ "$reasons" == *best* || "$reasons" == *epoch* ]]; then
    record wrn_crash PASS "$secs" "$BIG_NAME, 3 epochs of $CRASH_IMAGES: exit 0; checkpoints: $reasons; ${files[*]}; test top-1 $(json "$run/results.json" "'%.4f' % r['test_top1']"); epoch 3: $(json "$run/metrics.jsonl" "'%.0f' % r['images_per_second']") img/s"
  else
    record wrn_crash FAIL "$secs" "exit 0, but missing:${missing:- none}; checkpoints: ${reasons:-none} (want time, final, best or epoch)"
  fi
  local prec
  prec=$(json "$run/results.json" "r.get('precision')")
  if [ -n "$prec" ] && { [ -z "$EXPECT_PREC" ] || [ "$prec" = "$EXPECT_PREC" ]; }; then
    record "${EXPECT_PREC:-precision}" PASS 0 "results.json: precision $prec (asked: $PREC); train loss by epoch: $(json "$run/metrics.jsonl" "', '.join('%.3f' % x['train_loss'] for x in rows)")"
  else
    record "${EXPECT_PREC:-precision}" FAIL 0 "results.json: precision '${prec}' (asked: $PREC)"
  fi
}

sigterm_resume() {
  local run=$WORK/runs/term limit pid t0 stop resume
  rm -rf "$run"
  local args=(train --data-dir "$DATA" "${COMMON[@]}" "${BIG[@]}" --out "$run" --set epochs=3
              --set "train_limit=$TERM_IMAGES" --set log_interval=4 --set checkpoint_every_epochs=1)
  limit=$(limit_for 120)
  if [ "$limit" -eq 0 ]; then
    record sigterm_resume SKIPPED 0 "not run: $(left) s of the ${BUDGET}-s budget left"
    return
  fi
  SLOG=$WORK/logs/sigterm_first.log
  log "=== sigterm_first (limit $limit s): SIGTERM at the first progress line of epoch 2/3: ${OURS[*]} $BIN ${args[*]}"
  t0=$SECONDS
  (cd "$CORES" && exec "${OURS[@]}" "$BIN" "${args[@]}") >"$SLOG" 2>&1 &
  pid=$!   # env execs cifar100, which execs the engine in place: this is the training process
  while ! grep -q "progress: epoch 2/3" "$SLOG" 2>/dev/null; do
    alive "$pid" || break
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
      kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      append_tail "$SLOG"
      record sigterm_resume TIMEOUT $((SECONDS - t0)) "TIMEOUT after $((SECONDS - t0)) s waiting for epoch 2/3 (limit $limit s)"
      return
    fi
    sleep 0.1
  done
  if ! alive "$pid"; then
    wait "$pid"; RC=$?
    append_tail "$SLOG"
    STATUS=FAIL; crashed && backtrace sigterm_first "$ENGINE" "${args[@]/$run/$run-gdb}"
    record sigterm_resume FAIL $((SECONDS - t0)) "the first run ended (exit $RC$(signame "$RC")) before epoch 2"
    return
  fi
  kill -TERM "$pid"
  log "SIGTERM sent after $((SECONDS - t0)) s: $(grep "progress: epoch 2/3" "$SLOG" | tail -1 | grep -o 'step [0-9]*/[0-9]*')"
  if ! wait_exit "$pid" "$((limit - (SECONDS - t0) > 30 ? limit - (SECONDS - t0) : 30))"; then
    append_tail "$SLOG"
    if [ "$RC" = 124 ]; then
      record sigterm_resume TIMEOUT $((SECONDS - t0)) "TIMEOUT after $((SECONDS - t0)) s: no exit after SIGTERM (killed)"
    else
      STATUS=FAIL; crashed && backtrace sigterm_first "$ENGINE" "${args[@]/$run/$run-gdb}"
      record sigterm_resume FAIL $((SECONDS - t0)) "exit $RC$(signame "$RC") after SIGTERM (want 0)"
    fi
    return
  fi
  append_tail "$SLOG"
  local first=$((SECONDS - t0))
  log "=== sigterm_first: exit 0 after $first s"
  stop=$(grep -o 'stopped by SIGTERM at epoch [0-9]*, batch [0-9]*/[0-9]*' "$SLOG" | tail -1)
  if [ -z "$stop" ]; then
    record sigterm_resume FAIL "$first" "exit 0 after SIGTERM, but no 'stopped by SIGTERM at epoch E, batch B/N' line"
    return
  fi
  if ! run_step sigterm_resume 120 "${OURS[@]}" "$BIN" "${args[@]}"; then
    record sigterm_resume "$STATUS" $((first + SECS)) "first run: $stop; the resumed run: $WHY"
    crashed && backtrace sigterm_resume "$ENGINE" "${args[@]/$run/$run-gdb}"
    return
  fi
  resume=$(grep -o 'resuming at epoch [0-9]*, batch [0-9]*/[0-9]*' "$SLOG" | tail -1)
  local b=${resume##*batch } 
  if [ -n "$resume" ] && [ "${b%%/*}" -gt 0 ] && [ "${b%%/*}" -lt "${b##*/}" ] && [ -f "$run/results.json" ] &&
     [ "$(json "$run/results.json" "r['resumed']")" = True ]; then
    record sigterm_resume PASS $((first + SECS)) "$stop, exit 0 ($(grep -o 'checkpoint written in [0-9.]* s' "$WORK/logs/sigterm_first.log" | tail -1)); the same command: $resume, finished $(json "$run/metrics.jsonl" "len(rows)") epochs, test top-1 $(json "$run/results.json" "'%.4f' % r['test_top1']")"
  else
    record sigterm_resume FAIL $((first + SECS)) "first run: $stop; resumed run: '${resume:-no resuming line}' (want mid-epoch), results.json $([ -f "$run/results.json" ] && echo present || echo missing)"
  fi
}

fp16_ema() {
  local run=$WORK/runs/fp16
  rm -rf "$run"
  local args=(train --data-dir "$DATA" "${COMMON[@]}" "${MID[@]}" --out "$run" --set epochs=2
              --set "train_limit=$MID_IMAGES" --set ema_decay=0.999)
  if [ "$DRY" = 1 ]; then
    # fp16 is CUDA only: the CPU must refuse it (exit 2); EMA then runs with the dry run's precision.
    run_step fp16_refused 60 "${OURS[@]}" "$BIN" "${args[@]}" --set precision=fp16
    if [ "$RC" = 2 ] && grep -qi fp16 "$SLOG"; then record fp16_refused PASS "$SECS" "precision=fp16 on the CPU: exit 2, $(grep -i -m1 -o 'ERROR.*' "$SLOG" | cut -c1-120)"
    else record fp16_refused FAIL "$SECS" "${WHY:-exit 0}: want exit 2 for precision=fp16 on the CPU"; fi
    rm -rf "$run"
  else
    args+=(--set precision=fp16)
  fi
  if ! run_step fp16_ema 120 "${OURS[@]}" "$BIN" "${args[@]}"; then
    record fp16_ema "$STATUS" "$SECS" "$WHY"
    crashed && backtrace fp16_ema "$ENGINE" "${args[@]/$run/$run-gdb}"
    return
  fi
  local m=$run/metrics.jsonl ok
  if [ "$DRY" = 1 ]; then
    ok=$(json "$m" "all('ema_top1' in x for x in rows) and r['train_loss'] == r['train_loss']")
  else
    ok=$(json "$m" "all('ema_top1' in x and x.get('loss_scale', 0) > 0 for x in rows) and r['train_loss'] == r['train_loss'] and r['skipped_steps'] < 20")
  fi
  local fig
  fig=$(json "$m" "'; '.join('epoch %d: loss %.3f, loss_scale %s, skipped_steps %s, ema_top1 %.4f' % (x['epoch'], x['train_loss'], x.get('loss_scale', '-'), x.get('skipped_steps', '-'), x['ema_top1']) for x in rows)")
  if [ "$ok" = True ]; then record fp16_ema PASS "$SECS" "$MID_NAME $(json "$run/results.json" "r.get('precision')"): $fig"
  else record fp16_ema FAIL "$SECS" "exit 0, but: ${fig:-no metrics}"; fi
}

sam_ema() {
  local run=$WORK/runs/sam
  rm -rf "$run"
  local args=(train --data-dir "$DATA" "${COMMON[@]}" "${MID[@]}" --out "$run" --set epochs=1 --set warmup_epochs=0.5
              --set "train_limit=$MID_IMAGES" --set sam_rho=0.05 --set ema_decay=0.999)
  if run_step sam_ema 120 "${OURS[@]}" "$BIN" "${args[@]}" && [ "$(json "$run/metrics.jsonl" "'ema_top1' in r and r['train_loss'] == r['train_loss']")" = True ]; then
    record sam_ema PASS "$SECS" "$MID_NAME SAM rho 0.05 + EMA: $(json "$run/metrics.jsonl" "'loss %.3f, ema_top1 %.4f, %.0f img/s' % (r['train_loss'], r['ema_top1'], r['images_per_second'])")"
  else
    record sam_ema "${STATUS/PASS/FAIL}" "$SECS" "${WHY:-exit 0, but no finite loss or EMA figures in metrics.jsonl}"
    crashed && backtrace sam_ema "$ENGINE" "${args[@]/$run/$run-gdb}"
  fi
}

speed() {
  local run=$WORK/runs/speed ours ours_ips gmac peer peer_ips
  rm -rf "$run"
  local args=(train --data-dir "$DATA" "${COMMON[@]}" "${BIG[@]}" --set "augment_on_device=$AUG_MODE" --out "$run" --set epochs=2
              --set "train_limit=$SPEED_IMAGES" --set log_interval=0 --set checkpoint_every_epochs=0)
  if ! run_step speed_ours 150 "${OURS[@]}" "$BIN" "${args[@]}"; then
    record speed "$STATUS" "$SECS" "ours: $WHY"
    crashed && backtrace speed_ours "$ENGINE" "${args[@]/$run/$run-gdb}"
    return
  fi
  local secs=$SECS
  ours=$(json "$run/metrics.jsonl" "'%.2f' % r['train_seconds']")
  ours_ips=$(json "$run/metrics.jsonl" "'%.0f' % r['images_per_second']")
  gmac=$(grep -o '[0-9.]* GMAC per image' "$SLOG" | tail -1 | cut -d' ' -f1)
  # PyTorch reads the first SPEED_IMAGES records of train.bin; ours its first SPEED_IMAGES after the validation
  # split: the same count, and epoch times do not depend on pixel values.
  local peer_args=("$DATA/train.bin" "$SPEED_IMAGES" "${BIG[1]#depth=}" "${BIG[3]#width=}" "$BATCH" --device "$DEVICE"
                   --workers "$WORKERS" --warmup-steps "$WARMUP")
  if ! run_step speed_pytorch_eager 150 env PYTHONUNBUFFERED=1 "$PY" "$ROOT/tools/reference/bench_gpu.py" "${peer_args[@]}"; then
    record speed "$STATUS" $((secs + SECS)) "ours ${ours} s/epoch (${ours_ips} img/s); PyTorch eager: $WHY"
    return
  fi
  peer=$(grep -o 'epoch_seconds=[0-9.]*' "$SLOG" | tail -1 | cut -d= -f2)
  peer_ips=$(grep -o 'images_per_second=[0-9.]*' "$SLOG" | tail -1 | cut -d= -f2)
  record speed INFO $((secs + SECS)) "$BIG_NAME $PREC batch $BATCH, $SPEED_IMAGES images: ours ${ours} s (epoch 2, ${ours_ips} img/s), PyTorch $(timeout 60 "$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null) eager ${peer} s (${peer_ips} img/s): ours/PyTorch images/s = $(timeout 60 "$PY" -c "print('%.2f' % ($ours_ips / $peer_ips))" 2>/dev/null)x; ours ~$(timeout 60 "$PY" -c "print('%.0f' % (6 * ${gmac:-0} * 1e9 * $ours_ips / 1e12))" 2>/dev/null) TFLOP/s (6 x MACs x images/s)"
}

# ------------------------------------------------------------------------------------------------ extra
unit_torch() {
  local passed failed
  # Core dumps off: some tests abort a forked child on purpose (a crash of unit_torch itself is rerun under gdb).
  run_step unit_torch 120 bash -c 'ulimit -c 0; exec "$@"' unit_torch "${OURS[@]}" "$BUILD/tests/unit_torch"
  passed=$(grep -o '\[  PASSED  \] [0-9]* test' "$SLOG" | grep -o '[0-9]*' | tail -1)
  failed=$(grep '^\[  FAILED  \] [A-Za-z]' "$SLOG" | sed 's/^\[  FAILED  \] //; s/ (.*//' | sort -u | head -8 | paste -sd, -)
  if [ "$RC" = 0 ]; then record unit_torch PASS "$SECS" "${passed:-?} tests passed"
  elif crashed || [ "$STATUS" = TIMEOUT ]; then
    record unit_torch "$STATUS" "$SECS" "$WHY; the last test started: $(grep '^\[ RUN      \]' "$SLOG" | tail -1 | sed 's/.*\] //')"
    crashed && backtrace unit_torch "$BUILD/tests/unit_torch"
  else record unit_torch "$STATUS" "$SECS" "$WHY; ${passed:-0} passed; failed: ${failed:-?}"; fi
}

memcheck() {
  local san f run=$WORK/runs/memcheck
  san=$(command -v compute-sanitizer)
  for f in /usr/local/cuda*/bin/compute-sanitizer; do [ -n "$san" ] || [ ! -x "$f" ] || san=$f; done
  if [ "$DRY" = 1 ] || [ -z "$san" ]; then
    record memcheck INFO 0 "not run: $([ "$DRY" = 1 ] && echo "dry run (no CUDA)" || echo "no compute-sanitizer on this machine")"
    return
  fi
  rm -rf "$run"
  if run_step memcheck 240 "${OURS[@]}" "$san" --tool memcheck --error-exitcode 99 --print-limit 30 "$ENGINE" train \
       --data-dir "$SMALL" --out "$run" --set device=cuda --set depth=10 --set width=2 --set batch_size=128 \
       --set val_size=128 --set train_limit=1024 --set epochs=2 --set warmup_epochs=1 --set precision=bf16 \
       --set checkpoint_every_minutes=0.0001 --set workers=2 --set log_interval=0 --set tensorboard=false; then
    record memcheck PASS "$SECS" "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$SLOG" | tail -1) over 2 epochs of 8 steps, checkpoints: $(ckpt_reasons "$SLOG")"
  else
    record memcheck "$STATUS" "$SECS" "$WHY$([ "$RC" = 99 ] && echo " (99: memcheck found errors: $(grep -o 'ERROR SUMMARY: [0-9]* errors' "$SLOG" | tail -1))")"
  fi
}

onnx() {
  local run=$WORK/runs/onnx input
  if ! timeout 60 "$PY" -c 'import onnxruntime' 2>/dev/null; then
    record onnx INFO 0 "not run: $PY has no onnxruntime"
    return
  fi
  rm -rf "$run"
  if ! run_step onnx_artifact 120 "${OURS[@]}" "$BIN" train --data-dir "$SMALL" "${COMMON[@]}" "${BIG[@]}" --out "$run" \
       --set epochs=1 --set warmup_epochs=0.5 --set "val_size=$SMALL_VAL" --set "train_limit=$ART_IMAGES" --set tensorboard=false; then
    record onnx "$STATUS" "$SECS" "training the $BIG_NAME artifact: $WHY"
    return
  fi
  for input in float uint8; do
    if run_step "onnx_export_$input" 120 "${OURS[@]}" "$BIN" export --model "$run/model" --onnx "$WORK/runs/wrn-$input.onnx" --onnx-input "$input" &&
       run_step "onnx_runtime_$input" 180 "$PY" "$ROOT/tools/reference/onnx_check.py" "$WORK/runs/wrn-$input.onnx" "$run/model"; then
      record "onnx_$input" PASS "$SECS" "$BIG_NAME ($(du -h "$WORK/runs/wrn-$input.onnx" | cut -f1)): $(grep -o 'onnx_check=.*' "$SLOG" | tail -1)"
    else
      record "onnx_$input" "$STATUS" "$SECS" "$WHY $(grep -o 'onnx_check=.*' "$SLOG" | tail -1)"
    fi
    rm -f "$WORK/runs/wrn-$input.onnx"
  done
}

compile_peer() {
  if [ "$DRY" = 1 ]; then
    record pytorch_compile INFO 0 "not run: dry run (torch.compile's inductor takes minutes on 2 CPU cores)"
    return
  fi
  if run_step pytorch_compile 300 env PYTHONUNBUFFERED=1 "$PY" "$ROOT/tools/reference/bench_gpu.py" "$DATA/train.bin" \
       "$SPEED_IMAGES" "${BIG[1]#depth=}" "${BIG[3]#width=}" "$BATCH" --device "$DEVICE" --workers "$WORKERS" \
       --warmup-steps "$WARMUP" --compile && grep -q 'compiled=yes' "$SLOG"; then
    record pytorch_compile INFO "$SECS" "$BIG_NAME $PREC batch $BATCH, $SPEED_IMAGES images, torch.compile: $(grep -o 'epoch_seconds=.*' "$SLOG" | tail -1) (compare main's speed row)"
  else
    record pytorch_compile "${STATUS/PASS/FAIL}" "$SECS" "${WHY:-ran, but not compiled: $(grep -o 'torch.compile unavailable.*' "$SLOG" | head -1)}"
  fi
}

# ------------------------------------------------------------------------------------------------ run
log "gpu-check: stages ${STAGES[*]}$([ "$DRY" = 1 ] && echo " (dry run on the CPU)"); budget $BUDGET s; build $BUILD; python $PY; work $WORK"
ulimit -c unlimited 2>/dev/null || true
info
if want main; then
  if build_targets build_main 330 cifar100 cifar100-engine make_fake_cifar && make_data; then
    wrn_crash
    sigterm_resume
    fp16_ema
    sam_ema
    speed
  fi
fi
if want extra; then
  if build_targets build_extra 360 cifar100 cifar100-engine make_fake_cifar unit_torch && make_data; then
    unit_torch
    memcheck
    onnx
    compile_peer
  fi
fi
log "done in $((SECONDS - START)) s: $FAILED failed check(s); summary in $SUM"
cat "$SUM"
exit "$FAILED"
