#!/usr/bin/env bash
# The GPU path, checked on a machine with CUDA in under 10 minutes on one GPU:
#   1. tests/test_cuda.py (training, bf16, torch.compile, evaluation, resume; DDP over NCCL
#      when two GPUs are present), which skip on a machine without CUDA;
#   2. benchmarks/throughput.py on the GPU (the MLP at batch 128 and 512, fp32 and bf16);
#   3. a 5-minute mnist-vamp on the GPU, scored with K = 1000;
# then one table of what each step gave.
#
#   VAELAB_DATA=path/to/mnist benchmarks/gpu_check.sh        (PYTHON=... to choose the interpreter)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
if [ -z "${VAELAB_DATA:-}" ]; then
  echo "gpu_check: set VAELAB_DATA to the folder of the four MNIST IDX files" >&2
  exit 2
fi
if ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: no CUDA device here; run it on a machine with a GPU" >&2
  exit 2
fi
out=$(mktemp -d)
gpu=$("$python" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, compute capability {p.major}.{p.minor}, {torch.cuda.device_count()} GPU(s)')")
echo "gpu_check: $gpu; output in $out"

start=$SECONDS
"$python" -m pytest -q -rs "$root/tests/test_cuda.py" -p no:cacheprovider >"$out/tests.txt" 2>&1
tests_status=$?
tests=$(tail -n 1 "$out/tests.txt")
tests_seconds=$((SECONDS - start))

start=$SECONDS
"$python" "$root/benchmarks/throughput.py" --device cuda --rows mlp-128 mlp-512 --rounds 1 \
  --epochs 3 --compile both --floor compiled >"$out/throughput.txt" 2>&1
throughput_status=$?
throughput_seconds=$((SECONDS - start))

start=$SECONDS
"$python" "$root/benchmarks/mnist_nll.py" --preset mnist-vamp --minutes 5 --device cuda \
  --k 1000 --out "$out/mnist-vamp" >"$out/mnist_nll.txt" 2>&1
vamp_status=$?
vamp_seconds=$((SECONDS - start))

echo
echo "| step | status | seconds | result |"
echo "| --- | --- | --- | --- |"
echo "| tests/test_cuda.py | $tests_status | $tests_seconds | $tests |"
grep '^| MLP' "$out/throughput.txt" | while read -r row; do
  echo "| throughput.py | $throughput_status | $throughput_seconds | ${row//|/¦} |"
done
echo "| mnist-vamp, 5 min | $vamp_status | $vamp_seconds | $(grep '^| mnist-vamp' "$out/mnist_nll.txt" | tr '|' '¦') |"
echo
echo "full output: $out/{tests,throughput,mnist_nll}.txt"
[ "$tests_status" -eq 0 ] && [ "$throughput_status" -eq 0 ] && [ "$vamp_status" -eq 0 ]
