// llm-serve: a model behind OpenAI's HTTP API (completions, chat completions, models, tokenize,
// metrics), with continuous batching over a paged KV cache and streaming; drains on SIGTERM.
#include <cstdio>
#include <cstdlib>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/serve.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

int serve_main(int argc, char** argv) {
  ServeOptions o;
  int64_t port = o.port, max_seqs = o.max_seqs, max_queue = o.max_queue, kv_blocks = 0, batch_tokens = o.max_batch_tokens,
          max_len = 0, http_threads = 0;
  std::string key_file, kv_memory, max_body = "8M";
  bool no_prefix = false;
  OptionParser op("llm-serve", "llm-serve --model PATH [OPTIONS]",
                  "Serves a model over OpenAI's HTTP API: POST /v1/completions, /v1/chat/completions,\n"
                  "/tokenize, /detokenize; GET /v1/models, /health, /metrics. Requests are batched\n"
                  "continuously over a paged KV cache; SIGTERM drains and exits 0.");
  op.section("Model");
  op.string("model", 'm', "PATH", &o.model, "checkpoint or run directory, model.safetensors, or .gguf (required)");
  op.string("tokenizer", 0, "MODEL", &o.tokenizer, "SentencePiece model (default: the checkpoint's)");
  op.string("chat-template", 0, "NAME", &o.chat_template,
            "chatml, llama2 or plain (default: the one the checkpoint was tuned with, else chatml)");
  op.string("served-model-name", 0, "NAME", &o.served_name, "the model's name in the API (default: the last part of PATH)");
  op.value("lora", 0, "NAME=DIR",
           [&](const std::string& v) {
             const size_t eq = v.find('=');
             if (eq == 0 || eq == std::string::npos || eq + 1 == v.size()) throw UsageError("--lora: give NAME=DIR");
             o.loras.emplace_back(v.substr(0, eq), v.substr(eq + 1));
           },
           "a LoRA adapter of the model (llm-sft --lora), served as NAME (repeatable)");
  op.string("device", 0, "DEV", &o.device, "auto (default), cpu, cuda, cuda:N");
  op.string("precision", 0, "P", &o.precision, "GPU matmuls: fp32 (default), tf32, bf16");
  op.integer("max-model-len", 0, "N", &max_len, "context in tokens, prompt and completion (default: the model's)");
  op.section("Network");
  op.string("host", 0, "ADDR", &o.host, "address to listen on (default 127.0.0.1: this machine only)");
  op.integer("port", 'p', "N", &port, "port (default 8000; 0: any free port, see --port-file)");
  op.string("port-file", 0, "FILE", &o.port_file, "write HOST:PORT here once listening");
  op.string("api-key", 0, "KEY", &o.api_key, "ask clients for this key (default: $LLMKIT_API_KEY; none if unset)");
  op.string("api-key-file", 0, "FILE", &key_file, "the key from a file's first line (keeps it out of ps)");
  op.string("max-body", 0, "SIZE", &max_body, "largest request body (default 8M); larger ones get 413");
  op.integer("http-threads", 0, "N", &http_threads, "connections served at once (default: max-seqs + max-queue + 8)");
  op.section("Batching and memory");
  op.integer("max-seqs", 0, "N", &max_seqs, "sequences decoded together (default 16)");
  op.integer("max-queue", 0, "N", &max_queue, "sequences waiting beyond those; more get 429 (default 64)");
  op.integer("kv-blocks", 0, "N", &kv_blocks, "KV pool in blocks of 16 positions (default: max-seqs full contexts)");
  op.string("kv-memory", 0, "SIZE", &kv_memory, "KV pool in bytes (e.g. 2G), instead of --kv-blocks");
  op.integer("max-batch-tokens", 0, "N", &batch_tokens, "rows of one forward pass: decodes and prefill chunks (default 512)");
  op.flag("no-prefix-caching", 0, &no_prefix, "prefill every prompt in full (default: reuse cached blocks)");
  op.number("drain-timeout", 0, "SEC", &o.drain_timeout,
            "on SIGTERM, let running requests finish this long, then cut them (default 30)");
  op.epilog(
      "Exit status: 0 drained after SIGTERM/SIGINT, 1 runtime error, 2 usage error. See llm-serve(1).\n\n"
      "Examples:\n"
      "  llm-serve --model runs/sft --port 8000\n"
      "  curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
      "    -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":32}'");
  std::vector<std::string> args = op.parse(argc, argv);
  if (!args.empty()) throw UsageError("unexpected argument '" + args[0] + "'");
  if (o.model.empty()) throw UsageError("--model is required");
  if (port < 0 || port > 65535) throw UsageError("--port: 0 to 65535");
  if (max_seqs < 1 || max_queue < 0 || kv_blocks < 0 || batch_tokens < 1 || max_len < 0 || http_threads < 0)
    throw UsageError("--max-seqs, --max-batch-tokens must be 1 or more; --max-queue, --kv-blocks, --max-model-len, --http-threads 0 or more");
  if (batch_tokens < max_seqs) throw UsageError("--max-batch-tokens must be at least --max-seqs (a row per running sequence)");
  if (o.drain_timeout < 0) throw UsageError("--drain-timeout must be 0 or more");
  if (kv_blocks > 0 && !kv_memory.empty()) throw UsageError("--kv-blocks and --kv-memory exclude each other");
  if (!o.api_key.empty() && !key_file.empty()) throw UsageError("--api-key and --api-key-file exclude each other");
  if (!key_file.empty()) {
    std::string k = read_file(key_file);
    k = k.substr(0, k.find_first_of("\r\n"));
    if (k.empty()) throw Error(key_file, "holds no key on its first line");
    o.api_key = k;
  } else if (o.api_key.empty()) {
    if (const char* env = std::getenv("LLMKIT_API_KEY")) o.api_key = env;
  }
  o.port = static_cast<int>(port);
  o.max_seqs = static_cast<int>(max_seqs);
  o.max_queue = static_cast<int>(max_queue);
  o.kv_blocks = static_cast<int>(kv_blocks);
  o.kv_memory = kv_memory.empty() ? 0 : parse_bytes(kv_memory, "--kv-memory");
  o.max_body = parse_bytes(max_body, "--max-body");
  o.max_batch_tokens = static_cast<int>(batch_tokens);
  o.max_model_len = static_cast<int>(max_len);
  o.http_threads = static_cast<int>(http_threads);
  o.prefix_caching = !no_prefix;
  check_output_file(o.port_file, "--port-file");
  Stats stats;
  const int rc = serve(o, stats);
  stats.write(op.common().stats_file, "llm-serve", Comm::world());
  return rc;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-serve", argc, argv, serve_main); }
