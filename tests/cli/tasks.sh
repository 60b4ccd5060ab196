# The task converters of share/llmkit/tasks (hellaswag, mmlu, arc, gsm8k): tiny fake inputs in
# the public layouts, and the exact contexts, choices, gold indices, descriptions and few-shot
# examples that lm-evaluation-harness's task definitions give; malformed input and usage errors.
. "$(dirname "$0")/lib.sh"

TASKS=$SRC/share/llmkit/tasks
# s FILE EXPR: EXPR over each line's object `d`, as JSON (one line each, escapes visible).
s() { jsonl "$1" "json.dumps(($2), ensure_ascii=False)"; }
had_pycache=$([ -e "$TASKS/__pycache__" ] && echo 1 || echo 0)

# --- HellaSwag (rowanz/hellaswag data/hellaswag_val.jsonl layout; fake rows) ---------------
cat > hs.jsonl <<'EOF'
{"ind": 0, "activity_label": "Fake juggling", "ctx_a": "A made-up person holds three balls.", "ctx_b": "then the PERSON", "ctx": "A made-up person holds three balls. then the PERSON", "split": "val", "split_type": "indomain", "label": 2, "endings": ["throws them  up.", " [title] Drops one [header] on purpose. ", "juggles them in a café.", "leaves."], "source_id": "fake~1"}

{"ind": 1, "activity_label": "Fake gardening", "ctx_a": "[header] How to water a pretend plant [title] Fill a cup. [step] Pour it   slowly.", "ctx_b": "", "ctx": "", "split": "val", "split_type": "zeroshot", "label": "0", "endings": ["[substeps] Wait a day.", "Sing [title] loudly.", "Stop.", "Go."], "source_id": "fake~2"}
EOF
run python3 "$TASKS/hellaswag.py" hs.jsonl -o hs-out.jsonl
expect_rc 0 "hellaswag.py"
expect_out_empty
expect_err_contains "2 examples written to hs-out.jsonl"
expect_eq "$(wc -l < hs-out.jsonl)" "2" "hellaswag: lines"
expect_eq "$(s hs-out.jsonl 'd["id"]')" '"hellaswag-0"
"hellaswag-1"' "hellaswag: ids"
# ctx_b.capitalize() lower-cases the rest; activity_label + ": " + ctx.
expect_eq "$(s hs-out.jsonl 'd["context"]')" '"Fake juggling: A made-up person holds three balls. Then the person"
"Fake gardening: How to water a pretend plant. Fill a cup. Pour it  slowly."' "hellaswag: contexts"
# strip; " [title]" -> ". "; [..] removed; one pass of "  " -> " " (three spaces leave two).
expect_eq "$(s hs-out.jsonl 'd["choices"]')" '["throws them up.", " Drops one on purpose.", "juggles them in a café.", "leaves."]
[" Wait a day.", "Sing. loudly.", "Stop.", "Go."]' "hellaswag: choices"
expect_eq "$(s hs-out.jsonl 'd["gold"]')" '2
0' "hellaswag: gold (int and string labels)"
expect_eq "$(s hs-out.jsonl 'sorted(d)')" '["choices", "context", "gold", "id"]
["choices", "context", "gold", "id"]' "hellaswag: fields (no description, no fewshot)"
grep -q 'café' hs-out.jsonl && ok || fail "hellaswag: output not written with ensure_ascii=False"
# Shots from the evaluated file itself: lm-eval draws K + 1 and drops the document.
run python3 "$TASKS/hellaswag.py" hs.jsonl -o hs-shot.jsonl --fewshot-from hs.jsonl --num-fewshot 1
expect_rc 0 "hellaswag.py --fewshot-from"
expect_eq "$(s hs-shot.jsonl '[f["context"][:14] for f in d["fewshot"]], d["fewshot"][0]["gold"]')" '[["Fake gardening"], 0]
[["Fake juggling:"], 2]' "hellaswag: shots exclude the example itself"
# Malformed input: the test split has no labels; labels out of range; broken JSON.
printf '%s\n' '{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["p", "q"], "label": 1}' \
  '{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["p", "q"], "label": 7}' > hs-bad.jsonl
run python3 "$TASKS/hellaswag.py" hs-bad.jsonl -o hs-bad-out.jsonl
expect_rc 1 "hellaswag: label out of range"
expect_err_contains "hs-bad.jsonl:2: label 7 is not an index of the 2 endings"
expect_no_file hs-bad-out.jsonl
printf '%s\n' '{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["p", "q"]}' > hs-test.jsonl
run python3 "$TASKS/hellaswag.py" hs-test.jsonl -o x.jsonl
expect_rc 1 "hellaswag: unlabelled"
expect_err_contains "hs-test.jsonl:1: no label"
printf '%s\n' '{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["p"], "label": 0}' '{"ctx_a": ' > hs-json.jsonl
run python3 "$TASKS/hellaswag.py" hs-json.jsonl -o x.jsonl
expect_rc 1 "hellaswag: invalid JSON"
expect_err_contains "hs-json.jsonl:2: invalid JSON"
run python3 "$TASKS/hellaswag.py" missing.jsonl -o x.jsonl
expect_rc 1 "hellaswag: missing input"
expect_err_contains "missing.jsonl: No such file or directory"
expect_no_file x.jsonl

# --- MMLU (hendrycks data.tar layout: data/test/SUBJECT_test.csv, data/dev/SUBJECT_dev.csv) --
mkdir -p data/test data/dev
cat > data/test/fake_subject_test.csv <<'EOF'
"  What is 2+2 in the fake system?  ",3, 4 ,five,"six, or so",B
"Which line
breaks?",one,two,three,four,D
EOF
echo '"Alpha question?",a1,a2,a3,a4,C' > data/test/alpha_test.csv
printf '%s\n' '"Dev q1?",w,x,y,z,A' '"Dev q2?",w,x,y,z,D' '"Dev q3?",w,x,y,z,B' > data/dev/fake_subject_dev.csv
printf '%s\n' '"Alpha dev 1?",p,q,r,s,B' '"Alpha dev 2?",p,q,r,s,C' > data/dev/alpha_dev.csv
run python3 "$TASKS/mmlu.py" data/test -o mmlu.jsonl --fewshot-dir data/dev --num-fewshot 2
expect_rc 0 "mmlu.py"
expect_err_contains "3 examples written to mmlu.jsonl (2 subjects, 2-shot)"
expect_eq "$(s mmlu.jsonl 'd["id"]')" '"mmlu-alpha-0"
"mmlu-fake_subject-0"
"mmlu-fake_subject-1"' "mmlu: ids, subjects in file-name order"
# question.strip(); the choices verbatim (not stripped); quoted CSV fields with "," and newlines.
expect_eq "$(s mmlu.jsonl 'd["context"]')" '"Alpha question?\nA. a1\nB. a2\nC. a3\nD. a4\nAnswer:"
"What is 2+2 in the fake system?\nA. 3\nB.  4 \nC. five\nD. six, or so\nAnswer:"
"Which line\nbreaks?\nA. one\nB. two\nC. three\nD. four\nAnswer:"' "mmlu: contexts"
expect_eq "$(s mmlu.jsonl 'd["choices"], d["gold"]' | sort -u)" '[["A", "B", "C", "D"], 1]
[["A", "B", "C", "D"], 2]
[["A", "B", "C", "D"], 3]' "mmlu: choices are the bare letters, gold the letter's index"
expect_eq "$(s mmlu.jsonl 'd["description"]')" '"The following are multiple choice questions (with answers) about alpha.\n\n"
"The following are multiple choice questions (with answers) about fake subject.\n\n"
"The following are multiple choice questions (with answers) about fake subject.\n\n"' "mmlu: description"
expect_eq "$(s mmlu.jsonl '[(f["context"], f["choices"], f["gold"]) for f in d["fewshot"]]' | sed -n 2p)" \
  '[["Dev q1?\nA. w\nB. x\nC. y\nD. z\nAnswer:", ["A", "B", "C", "D"], 0], ["Dev q2?\nA. w\nB. x\nC. y\nD. z\nAnswer:", ["A", "B", "C", "D"], 3]]' \
  "mmlu: the first K dev rows as shots"
expect_eq "$(s mmlu.jsonl 'd["fewshot"][1]["context"][:12]' | head -1)" '"Alpha dev 2?"' "mmlu: each subject's own dev rows"
# What the model sees, assembled as lm-eval (and llm-eval) do: description, each shot as
# context + " " + letter, "\n\n" between shots and before the question.
expect_eq "$(s mmlu.jsonl 'd["description"] + "".join(f["context"] + " " + f["choices"][f["gold"]] + "\n\n" for f in d["fewshot"]) + d["context"]' | sed -n 3p)" \
  '"The following are multiple choice questions (with answers) about fake subject.\n\nDev q1?\nA. w\nB. x\nC. y\nD. z\nAnswer: A\n\nDev q2?\nA. w\nB. x\nC. y\nD. z\nAnswer: D\n\nWhich line\nbreaks?\nA. one\nB. two\nC. three\nD. four\nAnswer:"' \
  "mmlu: the 2-shot prompt"
# 0-shot: the description stays (lm-eval's mmlu always has it), no shots. data/ finds data/test.
run python3 "$TASKS/mmlu.py" data -o mmlu0.jsonl
expect_rc 0 "mmlu.py 0-shot"
expect_eq "$(s mmlu0.jsonl '"fewshot" in d, d["description"][:18]' | sort -u)" '[false, "The following are "]' "mmlu: 0-shot"
# Explicit files keep the order given.
run python3 "$TASKS/mmlu.py" data/test/fake_subject_test.csv data/test/alpha_test.csv -o mmlu-files.jsonl
expect_eq "$(s mmlu-files.jsonl 'd["id"]' | tr '\n' ' ')" '"mmlu-fake_subject-0" "mmlu-fake_subject-1" "mmlu-alpha-0" ' "mmlu: file order"
# The default K is 5, more than the 3 dev rows: an error, as lm-eval's first_n sampler.
run python3 "$TASKS/mmlu.py" data/test -o mmlu5.jsonl --fewshot-dir data/dev
expect_rc 1 "mmlu: too few dev rows"
expect_err_contains "alpha_dev.csv: has 2 examples, 5 needed for --num-fewshot 5"
expect_no_file mmlu5.jsonl
mkdir bad
printf '%s\n' '"Fine?",a,b,c,d,A' '"Short?",a,b,c,D' > bad/short_test.csv
run python3 "$TASKS/mmlu.py" bad/short_test.csv -o x.jsonl
expect_rc 1 "mmlu: 5 columns"
expect_err_contains "bad/short_test.csv:2: expected 6 columns (question, A, B, C, D, answer), got 5"
printf '%s\n' '"Multi
line?",a,b,c,d,A' '"Bad letter?",a,b,c,d,E' > bad/letter_test.csv
run python3 "$TASKS/mmlu.py" bad/letter_test.csv -o x.jsonl
expect_rc 1 "mmlu: answer E"
expect_err_contains "bad/letter_test.csv:3: answer \"E\" is not A, B, C or D"
cp data/test/alpha_test.csv bad/alpha.csv
run python3 "$TASKS/mmlu.py" bad/alpha.csv -o x.jsonl
expect_rc 1 "mmlu: no subject in the name"
expect_err_contains "cannot tell the subject"
expect_no_file x.jsonl

# --- ARC (ARC-V1-Feb2018 *.jsonl layout; also Hugging Face's ai2_arc layout) ----------------
cat > arc.jsonl <<'EOF'
{"id": "Fake_1", "question": {"stem": "Which fake planet is blue?", "choices": [{"text": "Zorb", "label": "A"}, {"text": "Blip", "label": "B"}, {"text": "Quux", "label": "C"}, {"text": "Narf", "label": "D"}]}, "answerKey": "C"}
{"id": "Fake_2", "question": {"stem": "How many fake moons?", "choices": [{"text": "one", "label": "1"}, {"text": "two", "label": "2"}, {"text": "three", "label": "3"}]}, "answerKey": "2"}
{"id": "Fake_3", "question": {"stem": "Pick the  last one.", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}, {"text": "c", "label": "C"}, {"text": "d", "label": "D"}, {"text": " e ", "label": "E"}]}, "answerKey": "E"}
EOF
echo '{"id": "Fake_T1", "question": "Which is wet?", "choices": {"text": ["water", "sand"], "label": ["A", "B"]}, "answerKey": "A"}' > arc-train.jsonl
run python3 "$TASKS/arc.py" arc.jsonl -o arc-out.jsonl
expect_rc 0 "arc.py"
expect_err_contains "3 examples written to arc-out.jsonl"
expect_eq "$(s arc-out.jsonl 'd["id"], d["context"], d["choices"], d["gold"]')" '["arc-0", "Question: Which fake planet is blue?\nAnswer:", ["Zorb", "Blip", "Quux", "Narf"], 2]
["arc-1", "Question: How many fake moons?\nAnswer:", ["one", "two", "three"], 1]
["arc-2", "Question: Pick the  last one.\nAnswer:", ["a", "b", "c", "d", " e "], 4]' "arc: letter and number labels, texts verbatim"
run python3 "$TASKS/arc.py" arc-train.jsonl -o arc-hf.jsonl --id-prefix arc_easy
expect_eq "$(s arc-hf.jsonl 'd')" '{"id": "arc_easy-0", "context": "Question: Which is wet?\nAnswer:", "choices": ["water", "sand"], "gold": 0}' "arc: Hugging Face layout"
run python3 "$TASKS/arc.py" arc.jsonl -o arc-shot.jsonl --fewshot-from arc-train.jsonl --num-fewshot 1
expect_rc 0 "arc.py --fewshot-from"
expect_eq "$(s arc-shot.jsonl 'd["fewshot"]' | sort -u)" '[{"context": "Question: Which is wet?\nAnswer:", "choices": ["water", "sand"], "gold": 0}]' "arc: shots"
sed 's/"answerKey": "2"/"answerKey": "B"/' arc.jsonl > arc-bad.jsonl
run python3 "$TASKS/arc.py" arc-bad.jsonl -o x.jsonl
expect_rc 1 "arc: answerKey not a label"
expect_err_contains "arc-bad.jsonl:2: answerKey \"B\" is not one of the labels 1, 2, 3"
echo '{"id": "x", "answerKey": "A"}' > arc-noq.jsonl
run python3 "$TASKS/arc.py" arc-noq.jsonl -o x.jsonl
expect_rc 1 "arc: no question"
expect_err_contains "arc-noq.jsonl:1: missing field \"question\""

# --- GSM8K (openai/grade-school-math test.jsonl / train.jsonl layout) ------------------------
cat > gsm-test.jsonl <<'EOF'
{"question": "Fake Tom has 3 apples and buys 4 more. How many does he have?", "answer": "Tom has 3+4=<<3+4=7>>7 apples.\n#### 7"}
{"question": "A pretend box holds 10 pens. How many pens are in 2 boxes?", "answer": "2*10=<<2*10=20>>20\n#### 20"}
EOF
cat > gsm-train.jsonl <<'EOF'
{"question": "Train one?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
{"question": "Train two?", "answer": "2+2=<<2+2=4>>4\n#### 4"}
{"question": "Train three?", "answer": "3+3=<<3+3=6>>6\n#### 6"}
EOF
run python3 "$TASKS/gsm8k.py" gsm-test.jsonl -o gsm.jsonl --fewshot-from gsm-train.jsonl --num-fewshot 2
expect_rc 0 "gsm8k.py"
expect_err_contains "2 examples written to gsm.jsonl (2-shot)"
expect_eq "$(s gsm.jsonl 'd["id"], d["prompt"], d["answer"]')" '["gsm8k-0", "Question: Fake Tom has 3 apples and buys 4 more. How many does he have?\nAnswer:", "Tom has 3+4=<<3+4=7>>7 apples.\n#### 7"]
["gsm8k-1", "Question: A pretend box holds 10 pens. How many pens are in 2 boxes?\nAnswer:", "2*10=<<2*10=20>>20\n#### 20"]' "gsm8k: prompt and the whole answer"
expect_eq "$(s gsm.jsonl 'd["fewshot"]' | sort -u)" '[{"prompt": "Question: Train one?\nAnswer:", "answer": "1+1=<<1+1=2>>2\n#### 2"}, {"prompt": "Question: Train two?\nAnswer:", "answer": "2+2=<<2+2=4>>4\n#### 4"}]' "gsm8k: the first K train rows"
expect_eq "$(s gsm.jsonl '"description" in d' | sort -u)" "false" "gsm8k: no description"
# lm-eval's gsm8k prompt: "Question: q\nAnswer: a" shots joined by "\n\n", then the question.
expect_eq "$(s gsm.jsonl '"".join(f["prompt"] + " " + f["answer"] + "\n\n" for f in d["fewshot"]) + d["prompt"]' | head -1)" \
  '"Question: Train one?\nAnswer: 1+1=<<1+1=2>>2\n#### 2\n\nQuestion: Train two?\nAnswer: 2+2=<<2+2=4>>4\n#### 4\n\nQuestion: Fake Tom has 3 apples and buys 4 more. How many does he have?\nAnswer:"' \
  "gsm8k: the 2-shot prompt"
# --fewshot-seed: lm-eval's default sampler, one random.Random(SEED).sample per example.
run python3 "$TASKS/gsm8k.py" gsm-test.jsonl -o gsm-seed.jsonl --fewshot-from gsm-train.jsonl --num-fewshot 2 --fewshot-seed 1234
expect_rc 0 "gsm8k.py --fewshot-seed"
want=$(python3 -c 'import random
r = random.Random(1234)
for _ in range(2): print([["Train one?", "Train two?", "Train three?"][i] for i in r.sample(range(3), 2)])')
expect_eq "$(jsonl gsm-seed.jsonl '[f["prompt"][10:-8] for f in d["fewshot"]]')" "$want" "gsm8k: seeded shots"
run python3 "$TASKS/gsm8k.py" gsm-test.jsonl -o gsm5.jsonl --fewshot-from gsm-train.jsonl
expect_rc 1 "gsm8k: default K 5 > 3 train rows"
expect_err_contains "gsm-train.jsonl: has 3 examples, 5 needed for --num-fewshot 5"
printf '%s\n' '{"question": "q?", "answer": "#### 1"}' '{"question": "q2?"}' > gsm-bad.jsonl
run python3 "$TASKS/gsm8k.py" gsm-bad.jsonl -o x.jsonl
expect_rc 1 "gsm8k: no answer"
expect_err_contains "gsm-bad.jsonl:2: missing field \"answer\""
printf '%s\n' '{"question": "q?", "answer": "just 1"}' > gsm-nohash.jsonl
run python3 "$TASKS/gsm8k.py" gsm-nohash.jsonl -o x.jsonl
expect_rc 1 "gsm8k: no ####"
expect_err_contains "gsm-nohash.jsonl:1: answer has no \"#### \""
expect_no_file x.jsonl

# --- Usage errors (exit 2, with a usage message) ---------------------------------------------
run python3 "$TASKS/gsm8k.py" gsm-test.jsonl
expect_rc 2 "gsm8k: no -o"
expect_err_contains "usage: gsm8k.py"
run python3 "$TASKS/gsm8k.py" gsm-test.jsonl -o x.jsonl --num-fewshot 3
expect_rc 2 "gsm8k: --num-fewshot without --fewshot-from"
run python3 "$TASKS/hellaswag.py" hs.jsonl -o x.jsonl --fewshot-from hs.jsonl --num-fewshot -1
expect_rc 2 "hellaswag: --num-fewshot -1"
run python3 "$TASKS/mmlu.py" -o x.jsonl
expect_rc 2 "mmlu: no input"
expect_err_contains "usage: mmlu.py"
run python3 "$TASKS/mmlu.py" data/test -o x.jsonl --num-fewshot 5
expect_rc 2 "mmlu: --num-fewshot without --fewshot-dir"
run python3 "$TASKS/arc.py" arc.jsonl -o x.jsonl --bogus
expect_rc 2 "arc: unknown option"
expect_no_file x.jsonl
for t in hellaswag mmlu arc gsm8k; do
  run python3 "$TASKS/$t.py" --help
  expect_rc 0 "$t.py --help"
  expect_out_contains "usage: $t.py"
done

# Standard output with -o -, and nothing written into the source tree.
run python3 "$TASKS/arc.py" arc-train.jsonl -o -
expect_rc 0 "arc.py -o -"
expect_eq "$(cat "$T/out")" "$(sed 's/arc_easy-/arc-/' arc-hf.jsonl)" "arc: -o -"
if [ "$had_pycache" = 0 ]; then expect_no_file "$TASKS/__pycache__"; fi
finish
