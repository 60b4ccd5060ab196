#!/bin/sh
# GRPO's rollouts: generated tokens/s of the engine as llm-ppo grpo uses it (the G answers of a
# prompt from one prefill) against plain batched generation and one answer at a time, on
# llama-25m with random weights (speed does not depend on them), short and long prompts.
# Usage: rollout.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: rollout.sh BIN_DIR}" && pwd)
"$bin/rollout" --model llama-25m --prompts 8 --group 8 --prompt-len 32 --new 32
"$bin/rollout" --model llama-25m --prompts 8 --group 8 --prompt-len 256 --new 32
