# llm-dedup's recall and precision against brute-force exact Jaccard (dedup_eval) on a generated
# corpus of originals, exact and normalised copies, and edited copies at known rates (English and
# Chinese), once per rank count: recall >= 0.95 for pairs with J >= 0.8, precision >= 0.95.
. "$(dirname "$0")/lib.sh"

run dedup_corpus --docs 3000 --seed 21 --cjk-fraction 0.1 -o corpus.jsonl
expect_rc 0 "corpus"
run llm-dedup --clusters clusters.jsonl -o out.jsonl corpus.jsonl
expect_rc 0 "llm-dedup"
run dedup_eval --json corpus.jsonl clusters.jsonl
expect_rc 0 "dedup_eval"
cp "$T/out" eval.json
expect_eq "$(json eval.json 'j["true_pairs"] > 300')" "True" "the corpus has near duplicates"
expect_eq "$(json eval.json 'j["recall"] >= 0.95, j["precision"] >= 0.95')" "True True" \
          "recall $(json eval.json 'j["recall"]'), precision $(json eval.json 'j["precision"]')"
expect_eq "$(json eval.json 'j["similarity_error_max"] < 1e-3')" "True" "reported similarity is the exact Jaccard"
expect_eq "$(json eval.json 'len(j["problems"])')" "0" "clusters rows consistent with the corpus"
# Removing the kept documents' duplicates leaves as many documents as clusters say.
expect_eq "$(wc -l < out.jsonl)" "$(( 3000 - $(jsonl clusters.jsonl 'd["kept"]' | grep -c False) ))" "survivors"
finish
