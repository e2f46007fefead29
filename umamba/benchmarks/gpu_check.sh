#!/usr/bin/env bash
# GPU check: the kernel and network tests on the GPU, then the training benchmarks side by side.
#
#   umamba/benchmarks/gpu_check.sh [STAGE ...]        (from the repository root; default: tests step epoch)
#
# Stages (each also runs alone, so that each fits a time-limited machine; all of them write to $OUT):
#   tests      every scan backend (mamba-ssm's cuda, umamba's triton, portable) and the Triton conv1d/LayerNorm/
#              InstanceNorm+LeakyReLU
#              against float64 references on the GPU; the Bot/Enc networks against their stored expected outputs
#   step       umamba bench train-step: one training step, Bot and Enc 3D, patch 128³, each kernel arm; then the
#              triton arm again with the opt-in fused InstanceNorm+LeakyReLU (UMAMBA_NORM_BACKEND=triton)
#   epoch      umamba bench train-epoch: `umamba train` itself on a synthetic 128³ set and on the spinal-cord set
#              (SPINAL_CORD=DIR, a raw nnU-Net dataset folder; skipped when unset), Enc and Bot:
#              umamba vs the original U-Mamba layer (mamba-ssm) vs plain nnU-Net
#   ddp        (2+ GPUs) `umamba train --num-gpus 2` killed after epoch 1 and continued (test_train_ddp.py), then
#              umamba bench train-epoch --num-gpus 1 vs 2 on the synthetic set, global batch 2 and 4
#
# Environment: PYTHON (default python), OUT (default gpu_check_output), ITERATIONS (default 30), SPINAL_CORD.
# Exit status: non-zero when a test or benchmark failed. Nothing here is downloaded.
set -uo pipefail

PYTHON=${PYTHON:-python}
OUT=${OUT:-gpu_check_output}
ITERATIONS=${ITERATIONS:-30}
WORKSPACE="$OUT/workspace"
mkdir -p "$OUT"
: >"$OUT/summary.txt"
status=0

step() {  # step NAME COMMAND...: run, keep its output in $OUT/NAME.log, remember a failure
    local name=$1
    shift
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}

gpus=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
{ nvidia-smi -L; "$PYTHON" -m umamba --version; "$PYTHON" -c "import torch; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"; } \
    2>&1 | tee "$OUT/device.txt"

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(tests step epoch)
for stage in "${stages[@]}"; do
    case $stage in
    tests)
        step tests "$PYTHON" -m pytest -p no:cacheprovider -o addopts= -ra -q \
            umamba/tests/test_scan_gpu_reference.py umamba/tests/test_nets_expected_outputs.py \
            umamba/tests/test_scan_triton.py umamba/tests/test_conv_triton.py \
            umamba/tests/test_channel_norm_triton.py umamba/tests/test_instance_norm_act_triton.py \
            umamba/tests/test_scan_backends.py
        ;;
    step)
        step train_step "$PYTHON" -m umamba bench train-step
        # the opt-in Triton InstanceNorm+LeakyReLU of the conv blocks, next to the default (torch's modules)
        step train_step_fused_norm env UMAMBA_NORM_BACKEND=triton "$PYTHON" -m umamba bench train-step --backends triton
        ;;
    epoch)
        for variant in enc bot; do
            step "epoch_synthetic_$variant" "$PYTHON" -m umamba bench train-epoch synthetic --variant "$variant" \
                --iterations "$ITERATIONS" --workspace "$WORKSPACE"
            if [ -n "${SPINAL_CORD:-}" ]; then
                step "epoch_spinal_cord_$variant" "$PYTHON" -m umamba bench train-epoch "$SPINAL_CORD" \
                    --variant "$variant" --iterations "$ITERATIONS" --workspace "$WORKSPACE"
            fi
        done
        ;;
    ddp)
        if [ "$gpus" -lt 2 ]; then
            echo "== ddp: skipped, $gpus GPU(s) here" | tee -a "$OUT/summary.txt"
            continue
        fi
        step ddp_tests "$PYTHON" -m pytest -p no:cacheprovider -o addopts= -ra -q umamba/tests/test_train_ddp.py
        for batch in 2 4; do
            for n in 1 2; do
                step "ddp_enc_batch${batch}_gpus$n" "$PYTHON" -m umamba bench train-epoch synthetic --variant enc \
                    --arms umamba --num-gpus "$n" --batch-size "$batch" --iterations "$ITERATIONS" \
                    --workspace "$WORKSPACE"
            done
        done
        ;;
    *)
        echo "unknown stage $stage (tests, step, epoch, ddp)" >&2
        exit 2
        ;;
    esac
done
cat "$OUT/summary.txt"
exit $status
