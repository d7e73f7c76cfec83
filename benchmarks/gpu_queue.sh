#!/usr/bin/env bash
# The queued GPU measurements (benchmarks/NOTES.md), in parts of under 10 minutes each, for one warm machine:
#
#   PYTHONPATH=. OUT=/some/folder bash benchmarks/gpu_queue.sh 1     # then 2, 3, 4
#
# Each command runs under its own timeout (a crash or a hang of one leaves the others' figures), with its output
# in $OUT/<name>.log and its figures in $OUT/<name>.json. Part 1: the GPU tests and beam-search generation; part 2:
# the packed sweep (with its phase split) and the training step's attention rows; part 3: cold and warm starts
# (regional compilation) and the 1,500-step end-to-end run; part 4: the whole-model cold start and the packed profile.
set -u
part="${1:?which part: 1, 2, 3 or 4}"
out="${OUT:?set OUT to a folder for the logs and figures}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-.}"

step() {  # step NAME SECONDS COMMAND...: run, log, and say how it ended
    local name="$1" seconds="$2"
    shift 2
    local start=$SECONDS
    timeout "$seconds" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - start)) s"
    tail -n 4 "$out/$name.log"
}

case "$part" in
1)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    step gpu-tests 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_attention_choice.py tests/test_fastpath.py \
        tests/test_loop_fastpath.py
    step generation-beams5 150 python3 -X faulthandler benchmarks/generation.py --beams 5 --repeats 3 \
        --out "$out/generation-beams5.json"
    step generation-beams5-graphs 150 python3 -X faulthandler benchmarks/generation.py --beams 5 --repeats 3 \
        --compile-mode reduce-overhead --out "$out/generation-beams5-graphs.json"
    ;;
2)
    step packed-adapt 330 python3 benchmarks/packed_adapt.py --arms dept-transfer --modes "off,on" \
        --out "$out/packed-adapt.json"
    step train-step 230 python3 benchmarks/train_step.py --size base --workloads glue,full256 --no-vl --no-generate \
        --rows reference,dept_fast_biased,dept_fast_cudnn,dept_fast_auto,dept_eager --out "$out/train-step.json"
    ;;
3)
    step cold-start-blocks 200 python3 benchmarks/cold_start.py --scopes blocks --timeout 100 \
        --out "$out/cold-start-blocks.json"
    step end-to-end 380 python3 benchmarks/cold_start.py --scopes eager,auto --steps 1500 --cold-only --log-every 50 \
        --timeout 180 --out "$out/end-to-end.json"
    ;;
4)
    step cold-start-model 420 python3 benchmarks/cold_start.py --scopes model --cold-only --timeout 400 \
        --out "$out/cold-start-model.json"
    step packed-profile 150 python3 benchmarks/packed_adapt.py --arms dept-transfer --modes on --steps 20 \
        --test-size 300 --profile "$out/packed-profile.txt" --out "$out/packed-profile.json"
    ;;
*)
    echo "unknown part $part: 1, 2, 3 or 4" >&2
    exit 2
    ;;
esac
