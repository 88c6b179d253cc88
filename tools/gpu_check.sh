#!/usr/bin/env bash
# The checks to run when a session is lent a machine with a CUDA GPU (the course's CI has none):
# the device choice, bf16 MFU and fp32 speed (benchmarks/gpu_training.py), fp16 with a GradScaler
# (chapter 08a's GPU cell), DDP over NCCL, `python -m labkit train` under torchrun on the GPU,
# two ranks on one GPU (refused, with the fix), two ranks on the CPU (gloo), and the unit tests
# that train or pick a device, with CUDA present. About 6 minutes on an H200.
#
#     bash tools/gpu_check.sh            # logs into $OUT (default /tmp/gpu_check)
#
# It uses the machine's own python3 and packages (the GPU machine has PyTorch, not the course's
# .venv): set PYTHON to use another.
#
# The session's device tool sends the working tree, at most 64 MiB; the course's tracked files are
# about 176 MB. Move aside what these checks do not read, call the tool, and restore it:
#     rm -rf datasets/FashionMNIST datasets/MNIST datasets/spoken_digits datasets/fonts \
#            checkpoints/{base_bpe,instruct_bpe,tang_char}/model.safetensors     # about 47 MB remain
#     ... run `bash tools/gpu_check.sh` there ...
#     git checkout -- datasets checkpoints
# (tests/test_checkpoints.py then fails for the three checkpoints moved aside: expected there.)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
start=$(date +%s)
stage() { echo; echo "== $1 (at $(( $(date +%s) - start )) s)"; }

stage "machine"
nvidia-smi -L
$PYTHON -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'

stage "device choice: python -m labkit doctor"
timeout 90 $PYTHON -m labkit doctor

stage "speed: benchmarks/gpu_training.py"
timeout 240 $PYTHON benchmarks/gpu_training.py

stage "torchrun --nproc_per_node=1 -m labkit train shakespeare_char (the GPU recipe, 300 steps)"
timeout 120 torchrun --standalone --nproc_per_node=1 -m labkit train shakespeare_char --steps 300 \
    --run-dir /tmp/gpu_runs --out /tmp/gpu_checkpoints 2>&1 | grep -v '^ *"' | tail -25

stage "torchrun --nproc_per_node=2 on one GPU: refused, with the fix"
timeout 90 torchrun --standalone --nproc_per_node=2 -m labkit train shakespeare_char --steps 20 \
    --run-dir /tmp/gpu_runs2 --out /tmp/gpu_checkpoints2 2>&1 | grep -E "RuntimeError|Error|nproc_per_node" | sort | uniq | head -6

stage "LABKIT_DEVICE=cpu torchrun --nproc_per_node=2 (gloo on the CPU), 40 steps"
LABKIT_DEVICE=cpu OMP_NUM_THREADS=4 timeout 150 torchrun --standalone --nproc_per_node=2 -m labkit train shakespeare_char \
    --steps 40 --run-dir /tmp/gpu_runs3 --out /tmp/gpu_checkpoints3 2>&1 | grep -v '^ *"' | tail -8

stage "unit tests that train or pick a device, with CUDA present"
timeout 240 $PYTHON -m pytest -q -p no:cacheprovider -n 12 --timeout 200 -rfE \
    tests/test_distributed.py tests/test_recipes.py tests/test_gpt.py tests/test_lm.py tests/test_loop.py \
    tests/test_training.py tests/test_doctor.py tests/test_memory.py tests/test_finetune.py tests/test_moe.py \
    tests/test_align.py tests/test_instruct.py tests/test_distill.py tests/test_compress.py tests/test_metrics.py \
    tests/test_checkpoints.py tests/test_optimizers.py tests/test_parallelism.py tests/test_scaling.py \
    > "$OUT/pytest.txt" 2>&1
tail -40 "$OUT/pytest.txt"
stage "done"
