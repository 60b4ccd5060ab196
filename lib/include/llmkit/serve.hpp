// llm-serve's server (lib/serve/server.cpp): OpenAI's API over HTTP on cpp-httplib, one engine
// thread stepping the scheduler (llmkit/scheduler.hpp), Prometheus metrics, API keys, and a
// drain on SIGTERM.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmkit {

class Stats;

struct ServeOptions {
  std::string model;          // checkpoint or run directory, model.safetensors, .gguf
  std::string tokenizer;      // "" : the checkpoint's
  std::string chat_template;  // "" : the checkpoint's (tokenizer_config.json), else chatml
  std::string served_name;    // "" : the model path's last component
  // LoRA adapters of the model, selected by a request's "model": (name, adapter or run
  // directory). They share one rank, alpha and set of target modules.
  std::vector<std::pair<std::string, std::string>> loras;
  std::string device = "auto", precision = "fp32";
  std::string host = "127.0.0.1";
  int port = 8000;            // 0: any free port (see port_file)
  std::string port_file;      // HOST:PORT written here once listening
  std::string api_key;        // "" : no key asked
  int max_seqs = 16;          // sequences decoded together
  int max_queue = 64;         // sequences waiting beyond those; more is a 429
  int kv_blocks = 0;          // KV pool in blocks of 16 positions; 0: kv_memory, else max_seqs full contexts
  uint64_t kv_memory = 0;     // KV pool in bytes
  int max_batch_tokens = 512;
  int max_model_len = 0;      // 0: the model's context
  bool prefix_caching = true;
  uint64_t max_body = 8u << 20;
  double drain_timeout = 30;  // seconds a SIGTERM leaves running streams before cutting them
  int http_threads = 0;       // 0: max_seqs + max_queue + 8
};

// Serves until a stop signal has drained the server; 0 then. Errors before listening (a bad
// model, an address in use) throw llmkit::Error.
int serve(const ServeOptions& options, Stats& stats);

}  // namespace llmkit
