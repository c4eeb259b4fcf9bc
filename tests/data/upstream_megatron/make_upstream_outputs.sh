#!/usr/bin/env bash
# Regenerates the .bin/.idx files in this folder with Megatron-LM's OWN tools (not ours).
# Usage: make_upstream_outputs.sh MEGATRON_LM_CHECKOUT PYTHON SCRATCH_DIR
# A rerun on the same SCRATCH_DIR resumes: cases whose output is there are not run again.
# PYTHON needs torch, transformers, tiktoken, nltk (the project's .venv has them); the checkout's
# own megatron/ package is put first on PYTHONPATH. Nothing is downloaded (HF_HUB_OFFLINE=1);
# the punkt parameters come from tests/data/nltk_data via HOME/nltk_data (upstream reads
# $NLTK_DATA as a pickle path, so NLTK_DATA stays unset).
set -euo pipefail
MLM=$(realpath "$1"); PY=$2; SCRATCH=$(realpath -m "$3")
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../../.." && pwd)
QWEN=$(cd "$REPO" && PYTHONPATH=$REPO "$PY" -c 'from megatron_agentic.testing.data_fixtures import qwen3_tokenizer_dir; print(qwen3_tokenizer_dir())')
mkdir -p "$SCRATCH/home" "$SCRATCH/hf/hub"
ln -sfn "$REPO/tests/data/nltk_data" "$SCRATCH/home/nltk_data"
# GPT2BPETokenizer makes transformers look up the hub model "gpt2" (for its config) even when
# --vocab-file/--merge-file are given: an offline cache entry with only a config.json serves it.
SNAP="$SCRATCH/hf/hub/models--gpt2/snapshots/0000000000000000000000000000000000000000"
mkdir -p "$SNAP" "$SCRATCH/hf/hub/models--gpt2/refs"
echo -n 0000000000000000000000000000000000000000 > "$SCRATCH/hf/hub/models--gpt2/refs/main"
echo '{"model_type": "gpt2"}' > "$SNAP/config.json"
(cd "$REPO" && PYTHONPATH=$REPO "$PY" -c "from pathlib import Path; from megatron_agentic.testing.data_fixtures import cl100k_json_vocab; cl100k_json_vocab(Path('$SCRATCH/cl100k_2000.json'))")
export HOME=$SCRATCH/home HF_HOME=$SCRATCH/hf HF_HUB_OFFLINE=1 PYTHONPATH=$MLM
unset NLTK_DATA

pre() {  # pre CASE INPUT ARGS... : upstream preprocess_data.py on a fresh copy of INPUT
  local case=$1 input=$2; shift 2
  ls "$SCRATCH/$case"/out_text_*.idx > /dev/null 2>&1 && return 0  # made by an earlier run
  mkdir -p "$SCRATCH/$case"; cp -n "$HERE/inputs/$input" "$SCRATCH/$case/"
  (cd "$MLM" && "$PY" tools/preprocess_data.py --input "$SCRATCH/$case/$input" \
      --output-prefix "$SCRATCH/$case/out" "$@" > "$SCRATCH/$case/log" 2>&1)
}
QW=(--tokenizer-type HuggingFaceTokenizer --tokenizer-model "$QWEN")
pre qwen_plain docs.jsonl "${QW[@]}" --workers 1
pre qwen_eod docs.jsonl "${QW[@]}" --workers 1 --append-eod
pre nan nan.jsonl "${QW[@]}" --workers 1 --append-eod
pre presplit presplit.jsonl "${QW[@]}" --workers 1 --append-eod
pre part2 docs.jsonl "${QW[@]}" --workers 2 --partitions 2 --append-eod
pre part2_seq docs.jsonl "${QW[@]}" --workers 2 --partitions 2 --keep-sequential-samples --append-eod
pre part3 docs.jsonl "${QW[@]}" --workers 3 --partitions 3 --append-eod
# --split-sentences with one partition: upstream's first run only writes docs_ss.jsonl, the
# second encodes it (run twice, as upstream users do).
for case in split split_keepnl split_german; do
  extra=(); [ $case = split_keepnl ] && extra=(--keep-newlines); [ $case = split_german ] && extra=(--lang german)
  pre $case docs.jsonl "${QW[@]}" --workers 1 --append-eod --split-sentences "${extra[@]}"
  pre $case docs.jsonl "${QW[@]}" --workers 1 --append-eod --split-sentences "${extra[@]}"
done
pre tiktoken docs.jsonl --tokenizer-type TikTokenizer --tokenizer-model "$SCRATCH/cl100k_2000.json" \
  --vocab-size 3000 --workers 1 --append-eod
pre gpt2 docs.jsonl --tokenizer-type GPT2BPETokenizer --vocab-file "$HERE/../gpt2_tiny/vocab.json" \
  --merge-file "$HERE/../gpt2_tiny/merges.txt" --workers 1 --append-eod
# merge_datasets.py --input DIR: three datasets in one directory, merged in name order
rm -rf "$SCRATCH/merge_dir"; mkdir -p "$SCRATCH/merge_dir/in"
for case in nan presplit qwen_eod; do
  cp "$SCRATCH/$case/out_text_document.bin" "$SCRATCH/merge_dir/in/$case.bin"
  cp "$SCRATCH/$case/out_text_document.idx" "$SCRATCH/merge_dir/in/$case.idx"
done
(cd "$MLM" && "$PY" tools/merge_datasets.py --input "$SCRATCH/merge_dir/in" --output-prefix "$SCRATCH/merge_dir/out" > "$SCRATCH/merge_dir/log" 2>&1)

for case in qwen_plain qwen_eod nan presplit part2 part2_seq part3 tiktoken gpt2; do
  cp "$SCRATCH/$case/out_text_document.bin" "$HERE/$case.bin"; cp "$SCRATCH/$case/out_text_document.idx" "$HERE/$case.idx"
done
for case in split split_keepnl split_german; do
  cp "$SCRATCH/$case/out_text_sentence.bin" "$HERE/$case.bin"; cp "$SCRATCH/$case/out_text_sentence.idx" "$HERE/$case.idx"
done
cp "$SCRATCH/merge_dir/out.bin" "$HERE/merge_dir.bin"; cp "$SCRATCH/merge_dir/out.idx" "$HERE/merge_dir.idx"
echo "upstream commit: $(git -C "$MLM" rev-parse HEAD 2>/dev/null || cat "$MLM/UPSTREAM_COMMIT")"
