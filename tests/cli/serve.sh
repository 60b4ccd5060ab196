# llm-serve end to end on a model llm-pretrain made (random words), on loopback: the usage errors; the API's
# statuses, bodies and headers (401, 400, 404, 413, 503 shapes); greedy text equal to llm-eval's
# engine and the same alone or under load; misbehaving clients (garbage HTTP, truncated bodies,
# a 100 MB body, slow clients, clients gone mid-stream, many connections) leave the server
# serving, with no sequence or KV block left behind, and a client gone before its whole answer
# stops its sequence; SIGTERM drains (streams end with finish
# "length" and [DONE], exit 0); LoRA adapters chosen by model name, mixed in one server; and
# OpenAI's Node client against it (SKIPPED without the peer).
. "$(dirname "$0")/lib.sh"

word_shards 300
python3 - <<'PY'
import json
with open("gen.jsonl", "w") as f:
    for p in ["the model of", "a batch", "step loss rank", "token token"]:
        f.write(json.dumps({"prompt": p, "answer": "x"}) + "\n")
PY
# The tokenizer again, with ChatML's markers for the chat endpoint.
run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
run llm-tok encode -m tok.model -o chat-shards docs.jsonl
run llm-pretrain --model llama-tiny --train 'chat-shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
  --micro-batch 8 --steps 12 --lr 3e-3 --warmup 2 --eval-every 0 --threads 2
expect_rc 0 "the model"

# ---- usage -----------------------------------------------------------------------------------
run llm-serve
expect_rc 2 "no --model"
expect_err_contains "llm-serve: --model is required"
run llm-serve --model base --max-seqs 8 --max-batch-tokens 4
expect_rc 2 "batch rows below sequences"
run llm-serve --model base --api-key a --api-key-file k
expect_rc 2 "two keys"
run llm-serve --model nowhere --port 0
expect_rc 1 "a missing model"
expect_err_contains "nowhere"
run llm-serve --help
expect_rc 0 "--help"
expect_out_contains "--max-seqs"

# ---- a server ----------------------------------------------------------------------------------
# start NAME ARGS...: llm-serve in the background on a free port; $URL, $PID.
start() {
  local name=$1
  shift
  rm -f "$name.port"
  llm-serve --model "${SERVE_MODEL:-base}" --port 0 --port-file "$name.port" --threads 2 "$@" > "$name.out" 2> "$name.err" &
  PID=$!
  for _ in $(seq 1 100); do
    [ -s "$name.port" ] && curl -sf "http://$(cat "$name.port")/health" > /dev/null && break
    sleep 0.1
  done
  URL="http://$(cat "$name.port")"
}
# req METHOD PATH [BODY] [CURL ARGS...]: status in $code, body in $T/body, headers in $T/headers.
req() {
  local method=$1 path=$2 body=${3:-}
  shift 3 2> /dev/null || shift $#
  code=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$method" "$URL$path" -H 'Content-Type: application/json' \
    ${body:+--data-binary "$body"} "$@")
}
body_has() { if grep -qF -- "$1" "$T/body"; then ok; else fail "body lacks '$1': $(head -c 400 "$T/body")"; fi; }
field() { python3 -c "import json,sys; j=json.load(open('$T/body')); print($1)"; }
metric() { curl -s "$URL/metrics" | awk -v m="llmkit:$1" '$1 == m {print $2}'; }

printf 'sekret\n' > key
start main --api-key-file key --max-seqs 8 --max-queue 16 --max-body 1M
AUTH="Authorization: Bearer sekret"
req GET /health
expect_eq "$code" "200" "/health"
req GET /v1/models "" -H "$AUTH"
expect_eq "$code:$(field 'j["data"][0]["id"], j["data"][0]["max_model_len"]')" "200:base 512" "/v1/models"

# Keys: none, wrong, right.
req POST /v1/completions '{"prompt":"the","max_tokens":2}'
expect_eq "$code:$(field 'j["error"]["type"], j["error"]["code"]')" "401:authentication_error invalid_api_key" "no key: 401"
req POST /v1/completions '{"prompt":"the","max_tokens":2}' -H "Authorization: Bearer sekreT"
expect_eq "$code" "401" "a wrong key"
req POST /v1/completions '{"prompt":"the","max_tokens":2}' -H "Authorization: Bearer sekret2"
expect_eq "$code" "401" "a longer key"

# Bad requests: the status, OpenAI's error shape, the field named.
req POST /v1/completions '{"prompt": "the", ' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["type"], j["error"]["param"]')" "400:invalid_request_error None" "malformed JSON"
req POST /v1/completions '{"prompt":"the","top_p":"x","unknown_field":1}' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["param"]')" "400:top_p" "a wrong type; unknown fields ignored"
req POST /v1/completions '{"prompt":"the","stop":[1]}' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["param"]')" "400:stop" "stop of numbers"
req POST /v1/completions '{"prompt":[1,2,999999]}' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["param"]')" "400:prompt" "a token id outside the vocabulary"
req POST /v1/completions '{"prompt":"the","max_tokens":600,"stream":true}' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["code"]')" "400:context_length_exceeded" "past the context, streamed: a 400, not a cut"
body_has "maximum context length is 512 tokens"
req POST /v1/completions '{"prompt":"the","model":"gpt-4"}' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["code"]')" "404:model_not_found" "an unknown model"
req POST /v1/chat/completions '{"messages":[{"role":"wizard","content":"hi"}]}' -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["param"]')" "400:messages[0].role" "an unknown role"
req GET /v2/nothing "" -H "$AUTH"
expect_eq "$code:$(field 'j["error"]["type"]')" "404:not_found_error" "an unknown route"
req POST /detokenize '{"tokens":[2,"x"]}' -H "$AUTH"
expect_eq "$code" "400" "/detokenize of a string"

# Greedy text: the same as llm-eval's engine for the same prompts (its generations are decoded
# alone, which drops a first leading space: compared stripped), and the same alone as under load.
run llm-eval gen --model base --max-gen-tokens 12 --log-samples samples.jsonl gen.jsonl
expect_rc 0 "llm-eval gen"
python3 - "$URL" > cmp.txt <<'PY'
import json, sys, urllib.request
url = sys.argv[1]
def complete(prompt):
    r = urllib.request.Request(url + "/v1/completions", json.dumps({"prompt": prompt, "max_tokens": 12, "temperature": 0}).encode(),
                               {"Authorization": "Bearer sekret", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))["choices"][0]["text"]
same = [complete(r["prompt"]).strip() == r["generation"].strip() for r in map(json.loads, open("samples.jsonl"))]
print("equal" if all(same) else "differ %s" % same)
PY
expect_eq "$(cat cmp.txt)" "equal" "greedy text as llm-eval's engine"
python3 - "$URL" > load.txt <<'PY'
import json, sys, threading, urllib.request
url = sys.argv[1]
def complete(prompt, n):
    r = urllib.request.Request(url + "/v1/completions",
                               json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}).encode(),
                               {"Authorization": "Bearer sekret", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))["choices"][0]["text"]
alone = complete("the cat sat on the mat and", 40)
open("alone.txt", "w").write(alone + "\n")
out = {}
def worker(i):
    out[i] = complete("the cat sat on the mat and" if i == 5 else "a " * (3 + 7 * i) + "dog", 40)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
for t in threads: t.start()
for t in threads: t.join()
print("same" if out[5] == alone and len(out) == 12 else "differs: %r vs %r" % (out.get(5), alone))
PY
expect_eq "$(cat load.txt)" "same" "greedy output alone = under load (12 requests, 8 slots)"

# ---- misbehaving clients -------------------------------------------------------------------------
cat > hostile.py <<'PY'
import json, socket, sys, threading, time
host, port = sys.argv[1].split(":")
port = int(port)
def conn():
    s = socket.create_connection((host, port), timeout=20)
    return s
def status_of(data):
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "none"
def read_all(s):
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b: break
            out += b
    except socket.timeout:
        pass
    return out
def post(path, body, extra=""):
    return ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n%s\r\n" % (path, len(body), extra)).encode() + body
results = {}
# Garbage instead of HTTP.
s = conn(); s.sendall(b"\x16\x03\x01 GARBAGE / NOTHTTP\r\n\r\n"); results["garbage"] = status_of(read_all(s)); s.close()
# A body that ends early: the server waits for it, then gives up on the connection.
s = conn(); s.sendall(post("/v1/completions", b'{"prompt":"the"}')[:-5]); s.shutdown(socket.SHUT_WR)
results["truncated"] = status_of(read_all(s)); s.close()
# 100 MB announced, a first megabyte sent: 413 without reading the rest.
s = conn()
s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\nContent-Length: %d\r\n\r\n" % (100 << 20)).encode())
try:
    s.sendall(b"x" * (1 << 20))
except OSError:
    pass
results["huge"] = status_of(read_all(s)); s.close()
# A slow client: the request a few bytes at a time.
s = conn()
for i in range(0, len(m := post("/v1/completions", b'{"prompt":"the","max_tokens":3}')), 40):
    s.sendall(m[i:i + 40]); time.sleep(0.05)
results["slow"] = status_of(read_all(s)); s.close()
# Clients gone mid-stream: four long streams, closed after their first event.
def vanish():
    s = conn()
    s.sendall(post("/v1/completions", b'{"prompt":"the","max_tokens":400,"stream":true,"ignore_eos":true}'))
    got = b""
    while b"data:" not in got:
        got += s.recv(4096)
    s.close()
ts = [threading.Thread(target=vanish) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
# Many connections at once.
codes = []
lock = threading.Lock()
def small(i):
    try:
        s = conn(); s.sendall(post("/v1/completions", json.dumps({"prompt": "the " * (1 + i % 5), "max_tokens": 4}).encode()))
        c = status_of(read_all(s)); s.close()
    except OSError as e:
        c = "error"
    with lock: codes.append(c)
ts = [threading.Thread(target=small, args=(i,)) for i in range(60)]
for t in ts: t.start()
for t in ts: t.join()
results["many"] = sorted(set(codes))
results["many_ok"] = codes.count("200")
print(json.dumps(results, sort_keys=True))
PY
python3 hostile.py "$(cat main.port)" > hostile.json 2> hostile.err
expect_eq "$(python3 -c "import json; r=json.load(open('hostile.json')); print(r['garbage'], r['truncated'], r['huge'], r['slow'])")" \
  "400 none 413 200" "garbage 400, a truncated body dropped, 100 MB 413, a slow client served"
expect_eq "$(python3 -c "import json; r=json.load(open('hostile.json')); print(set(r['many']) <= {'200', '429'}, r['many_ok'] >= 1)")" \
  "True True" "60 connections at once: 200 or 429 (the queue full), never an error"
for _ in $(seq 1 50); do [ "$(metric num_requests_running)" = "0" ] && break; sleep 0.1; done
expect_eq "$(metric num_requests_running) $(metric kv_cache_usage_perc)" "0 0" "after the vanished clients: nothing running, no block held"
expect_eq "$([ "$(metric request_aborted_total)" -ge 4 ] && echo yes)" "yes" "the vanished clients' sequences aborted"
python3 - "$URL" > after.txt <<'PY'
import json, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/v1/completions", json.dumps({"prompt": "the cat sat on the mat and", "max_tokens": 40,
                           "temperature": 0, "ignore_eos": True}).encode(), {"Authorization": "Bearer sekret"})
print(json.load(urllib.request.urlopen(r))["choices"][0]["text"])
PY
expect_eq "$(cat after.txt)" "$(cat alone.txt)" "after them, a request's greedy text as before"
req GET /metrics
expect_eq "$code" "200" "/metrics"
for m in num_requests_running num_requests_waiting kv_cache_usage_perc prompt_tokens_total generation_tokens_total \
  time_to_first_token_seconds_count inter_token_latency_seconds_bucket e2e_request_latency_seconds_sum request_queue_time_seconds_count \
  num_preemptions_total prefix_cache_hits_total prefix_cache_queries_total request_aborted_total; do
  body_has "llmkit:$m"
done
kill -TERM "$PID"
wait "$PID"
rc=$?
expect_rc 0 "SIGTERM with nothing running"
grep -q "drained" main.err && ok || fail "no drain line"
grep -q " 200 stream prompt=" main.err && ok || fail "no access log line"

# ---- a whole answer whose client goes away -------------------------------------------------------
# A bigger model (llama-25m's shape with a context of 8192, one step) so that 8000 tokens take
# seconds on any CPU: the answer is written chunked after spaces while it is generated, and the
# write that fails (about half a second after the client left) stops it.
python3 -c "
import json; c = json.load(open('$SRC/share/llmkit/models/llama-25m.json')); c['max_position_embeddings'] = 8192
json.dump(c, open('big.json', 'w'))"
run llm-pretrain --model big.json --train 'chat-shards/train-*.tok' --tokenizer tok.model --out big --seq-len 64 \
  --micro-batch 1 --steps 1 --warmup 0 --eval-every 0 --threads 2
expect_rc 0 "the bigger model"
SERVE_MODEL=big start slow --threads 1 --max-seqs 2
python3 - "$(cat slow.port)" > gone.txt <<'PY'
import json, socket, sys, time
host, port = sys.argv[1].split(":")
body = json.dumps({"prompt": "the", "max_tokens": 8000, "ignore_eos": True}).encode()
msg = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
s = socket.create_connection((host, int(port)))
s.sendall(msg)
time.sleep(0.1)
s.close()
print("closed")
PY
for _ in $(seq 1 100); do [ "$(metric request_aborted_total)" = "1" ] && [ "$(metric num_requests_running)" = "0" ] && break; sleep 0.1; done
expect_eq "$(metric request_aborted_total) $(metric num_requests_running) $(metric generation_tokens_total | awk '{print ($1 < 8000)}')" \
  "1 0 1" "a whole answer's client gone: its sequence stopped before its 8000 tokens"
grep -q "(client gone)" slow.err && ok || fail "no access log line for the client gone"
req POST /v1/completions '{"prompt":"the","max_tokens":300,"ignore_eos":true,"temperature":0}'
expect_eq "$code:$(field 'j["usage"]["completion_tokens"], j["choices"][0]["finish_reason"]')" "200:300 length" \
  "a long whole answer, read to its end: JSON after the spaces"
# Continuous batching: a short request sent while a long one streams is answered first.
python3 - "$URL" > first.txt <<'PY'
import json, sys, threading, urllib.request
url = sys.argv[1]
def post(body):
    return urllib.request.urlopen(urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                                         {"Content-Type": "application/json"}))
done = threading.Event()
def long_stream():
    with post({"prompt": "the", "max_tokens": 2000, "ignore_eos": True, "stream": True}) as r:
        for line in r:
            if line.startswith(b"data: [DONE]"): done.set()
started = threading.Thread(target=long_stream)
started.start()
import time; time.sleep(0.3)
short = json.load(post({"prompt": "a", "max_tokens": 4, "ignore_eos": True}))
print("short first" if not done.is_set() and short["usage"]["completion_tokens"] == 4 else "long first")
started.join()
print("long done" if done.is_set() else "long unfinished")
PY
expect_eq "$(tr '\n' ' ' < first.txt)" "short first long done " "a short request during a long stream finishes first"
kill -TERM "$PID"
wait "$PID"

# ---- LoRA adapters by model name -----------------------------------------------------------------------
python3 - <<'PY'
import json, random
rng = random.Random(3)
with open("chat.jsonl", "w") as f:
    for i in range(200):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        f.write(json.dumps({"messages": [{"role": "user", "content": f"add {a} and {b}"}, {"role": "assistant", "content": f"{a + b}"}]}) + "\n")
PY
for n in 1 2; do
  run llm-sft --init base --data chat.jsonl --seq-len 64 --micro-batch 8 --batch-size 16 --threads 2 --lora-rank 4 --lora-alpha 8 \
    --lr 3e-3 --steps 6 --eval-every 0 --seed $n --out lora$n
  expect_rc 0 "adapter $n"
done
run llm-serve --model lora1 --lora x=lora2 --port 0
expect_rc 1 "--lora on an adapter"
expect_err_contains "is an adapter"
start multi --lora x=lora1 --lora y=lora2
MULTI=$URL
SERVE_MODEL=lora1 start merged
MERGED=$URL
python3 - "$MULTI" "$MERGED" > lora.txt <<'PY'
import json, sys, threading, urllib.error, urllib.request
multi, merged = sys.argv[1:3]
def complete(url, model, prompt, n, **extra):
    body = dict(model=model, prompt=prompt, max_tokens=n, temperature=0, ignore_eos=True, **extra)
    r = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))
models = json.load(urllib.request.urlopen(multi + "/v1/models"))["data"]
print("models", [(m["id"], m["parent"]) for m in models])
# Adapter x on the base, unmerged, against the adapter merged into its base: the same distribution.
p = "the model of the batch"
top = lambda j: sorted(j["choices"][0]["logprobs"]["top_logprobs"][0].values())
x, m, base = (top(complete(u, mo, p, 1, logprobs=5)) for u, mo in ((multi, "x"), (merged, "lora1"), (multi, "base")))
print("x as merged", all(abs(a - b) < 1e-3 for a, b in zip(x, m)), "base differs", any(abs(a - b) > 1e-3 for a, b in zip(x, base)))
# Requests of the base and both adapters at once: each as it is alone.
alone = {mo: complete(multi, mo, p, 20)["choices"][0]["text"] for mo in ("base", "x", "y")}
out = {}
def go(i, mo): out[i] = (mo, complete(multi, mo, p, 20)["choices"][0]["text"])
ts = [threading.Thread(target=go, args=(i, ("base", "x", "y")[i % 3])) for i in range(9)]
for t in ts: t.start()
for t in ts: t.join()
print("mixed as alone", all(text == alone[mo] for mo, text in out.values()), "adapters differ", len(set(alone.values())) == 3)
try:
    complete(multi, "z", p, 1)
except urllib.error.HTTPError as e:
    print("unknown", e.code, "'x'" in json.load(e)["error"]["message"])
PY
expect_eq "$(sed -n 1p lora.txt)" "models [('base', None), ('x', 'base'), ('y', 'base')]" "/v1/models: the base and its adapters"
expect_eq "$(sed -n 2p lora.txt)" "x as merged True base differs True" "an adapter by name: the merged adapter's log-probs"
expect_eq "$(sed -n 3p lora.txt)" "mixed as alone True adapters differ True" "base and adapters at once, each as alone"
expect_eq "$(sed -n 4p lora.txt)" "unknown 404 True" "an unknown adapter: 404 naming the ones there are"
for p in $(pgrep -f "port-file (multi|merged).port"); do kill -TERM "$p"; done
wait

# ---- drain: streams cut with finish "length" --------------------------------------------------------
# The bigger model, 2000 tokens a stream: seconds of work on any CPU, cut 0.3 s into the drain.
SERVE_MODEL=big start drain --max-seqs 2 --drain-timeout 0.3 --stats stats.json
for i in 1 2 3 4 5; do
  curl -sN "$URL/v1/completions" \
    -d '{"prompt":"the","max_tokens":2000,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}' > "stream$i.txt" &
done
sleep 0.5
kill -TERM "$PID"
sleep 0.05
req GET /health
expect_eq "$code" "503" "draining: /health 503"
wait "$PID"
rc=$?
expect_rc 0 "drained after SIGTERM"
wait
for i in 1 2 3 4 5; do
  expect_eq "$(grep -v '^$' "stream$i.txt" | tail -1)" "data: [DONE]" "stream $i ends with [DONE]"
  expect_eq "$(grep -c '"finish_reason":"length"' "stream$i.txt")" "1" "stream $i: one finish, length"
  expect_eq "$(grep -o '"completion_tokens":[0-9]*' "stream$i.txt" | awk -F: '{print ($2 < 2000)}')" "1" "stream $i: cut before its 2000 tokens"
done
expect_eq "$(json stats.json 'j["counters"]["requests"]')" "5" "--stats: 5 requests"

# ---- OpenAI's client ------------------------------------------------------------------------------
if [ ! -f "${LLMKIT_PEERS:-}/node_modules/openai/package.json" ] || ! command -v node > /dev/null; then
  echo "SKIPPED: OpenAI's Node client is not installed in ${LLMKIT_PEERS:-} (share/llmkit/install-peers.sh)" >&2
else
  start api --api-key sekret
  node "$SRC/tests/peers/openai_client.mjs" api "$URL" sekret base > client.txt 2>&1
  rc=$?
  expect_rc 0 "the openai client: $(grep -v '^ok' client.txt | head -5)"
  expect_eq "$(grep -c '^ok' client.txt)" "26" "the openai client's checks"
  kill -TERM "$PID"; wait "$PID"
  start busy --api-key sekret --max-seqs 1 --max-queue 0
  node "$SRC/tests/peers/openai_client.mjs" busy "$URL" sekret > busy.txt 2>&1
  rc=$?
  expect_rc 0 "the openai client, a full server: $(grep -v '^ok' busy.txt | head -5)"
  kill -TERM "$PID"; wait "$PID"
fi
finish
