#!/usr/bin/env bash
# Where the time of one training step goes, in PyTorch (Debian's python3-torch) on this CPU: a per-op profile
# (torch.profiler) of cifar100's training step, loader included, for fp32 and bf16, bucketed into
# convolutions, BatchNorm, pooling, elementwise ops, autocast casts, the loss, the optimizer, the loader and
# framework overhead, with the top ops and the step's GFLOP/s against the peak measured here (the fastest of a
# matmul, a 1x1-convolution GEMM and a 3x3 convolution; once, reused for bf16). The network is the preset's
# airbench (ARCH=wrn with DEPTH/WIDTH for a WideResNet), WIDTHS 32,128,128, batch 256, 10 steps after 3 of
# warm-up, 2 threads. Then whether oneDNN runs the bf16 convolutions on AMX: one bf16 step (and one fp32 step
# for contrast) at batch VERBOSE_BATCH (default 8; the ISA does not depend on it) under ONEDNN_VERBOSE=1, the
# distinct convolution implementations it reports (e.g. brg:avx512_core_amx, jit:avx2, gemm:ref), and what
# lscpu says about amx / avx512_bf16. Note: PyTorch 1.13 sends bf16 convolutions to oneDNN only on CPUs with
# AVX-512 (bw/vl/dq); elsewhere they run in ATen's slow_conv2d (im2col + a generic GEMM), far slower than
# fp32, so on an AVX2-only CPU the bf16 profile takes tens of times longer (use BATCH/STEPS/BF16_STEPS).
#   bench/profile_step.sh        (env: ARCH WIDTHS DEPTH WIDTH BATCH STEPS BF16_STEPS THREADS VERBOSE_BATCH
#                                 PEAK_SIZE; JSON_DIR=dir keeps profile-fp32.json and profile-bf16.json)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH="${ARCH:-airbench}"; WIDTHS="${WIDTHS:-32,128,128}"; DEPTH="${DEPTH:-16}"; WIDTH="${WIDTH:-2}"
BATCH="${BATCH:-256}"; STEPS="${STEPS:-10}"; BF16_STEPS="${BF16_STEPS:-$STEPS}"; THREADS="${THREADS:-2}"
VERBOSE_BATCH="${VERBOSE_BATCH:-8}"; PEAK_SIZE="${PEAK_SIZE:-1024}"
PY=/usr/bin/python3
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
out="${JSON_DIR:-$tmp}"; mkdir -p "$out"
net=(--arch "$ARCH" --widths "$WIDTHS" --depth "$DEPTH" --width "$WIDTH" --threads "$THREADS")
model="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "CPU: ${model:-unknown} ($(nproc) cores), $THREADS threads"
echo
echo "=== fp32: $STEPS steps"
$PY tools/reference/profile_step.py "${net[@]}" --batch "$BATCH" --steps "$STEPS" --precision fp32 \
  --peak-size "$PEAK_SIZE" --json "$out/profile-fp32.json"
echo
echo "=== bf16 (autocast): $BF16_STEPS steps"
$PY tools/reference/profile_step.py "${net[@]}" --batch "$BATCH" --steps "$BF16_STEPS" --precision bf16 \
  --peak-from "$out/profile-fp32.json" --json "$out/profile-bf16.json"
echo
echo "=== oneDNN: one step at batch $VERBOSE_BATCH under ONEDNN_VERBOSE=1"
for p in fp32 bf16; do
  ONEDNN_VERBOSE=1 DNNL_VERBOSE=1 $PY tools/reference/profile_step.py "${net[@]}" --batch "$VERBOSE_BATCH" \
    --precision "$p" --verbose-step >"$tmp/verbose-$p.log" 2>&1 || { cat "$tmp/verbose-$p.log"; exit 1; }
done
isa="$(grep -m1 -E '^(onednn|dnnl)_verbose,.*isa:' "$tmp/verbose-fp32.log" | sed 's/.*isa://' || true)"
echo "oneDNN: $(grep -m1 -oE 'oneDNN v[0-9.]+' "$tmp/verbose-fp32.log" || echo 'version not reported'), ISA: ${isa:-not reported}"
# Convolution primitives: impl, propagation kind and source data type (the field after "convolution"), counted.
convs() {
  grep -E '^(onednn|dnnl)_verbose,' "$1" | grep ',exec,' | awk -F, '{
    for (i = 1; i < NF; i++) if ($i == "convolution") {
      dt = "?"; if (match($(i + 3), /src_[a-z0-9]+/)) dt = substr($(i + 3), RSTART + 4, RLENGTH - 4)
      print $(i + 1), $(i + 2), dt; break
    }
  }' | sort | uniq -c | awk '{printf "  %-28s %-18s src %-5s x%d\n", $2, $3, $4, $1}'
}
others() {  # the other primitive kinds that ran, with their implementations
  grep -E '^(onednn|dnnl)_verbose,' "$1" | grep ',exec,' | awk -F, '{
    for (i = 1; i < NF; i++) if ($i == "cpu") { if ($(i + 1) != "convolution") print $(i + 1) ":" $(i + 2); break }
  }' | sort -u | tr '\n' ' '
}
for p in fp32 bf16; do
  echo "$p step ($(grep -m1 '^one step' "$tmp/verbose-$p.log" || echo '?')): oneDNN convolutions"
  c="$(convs "$tmp/verbose-$p.log" || true)"
  echo "${c:-  none: no oneDNN convolution primitive ran}"
  o="$(others "$tmp/verbose-$p.log" || true)"
  echo "  other primitives: ${o:-none}"
done
bf16_convs="$( (convs "$tmp/verbose-bf16.log" || true) | grep -E "src bf16" || true)"
if [ -z "$bf16_convs" ]; then
  kernels="$($PY -c "import json,sys; print(', '.join(json.load(open(sys.argv[1]))['conv_kernels']))" \
    "$out/profile-bf16.json")"
  echo "AMX for bf16 convolutions: NO - oneDNN ran no bf16 convolution at all; PyTorch ran them itself ($kernels)"
elif grep -q amx <<<"$bf16_convs"; then
  echo "AMX for bf16 convolutions: YES ($(awk '{print $1}' <<<"$bf16_convs" | grep amx | sort -u | tr '\n' ' '))"
else
  echo "AMX for bf16 convolutions: NO - oneDNN used $(awk '{print $1}' <<<"$bf16_convs" | sort -u | tr '\n' ' ')"
fi
flags="$(lscpu | grep -i '^flags' || true)"
line=""
for f in amx_tile amx_bf16 amx_int8 avx512f avx512bw avx512vl avx512dq avx512_bf16 avx512_vnni avx_vnni avx2 fma; do
  if grep -qw "$f" <<<"$flags"; then line+=" $f:yes"; else line+=" $f:no"; fi
done
echo "lscpu flags:$line"
