// llm-serve's server; see llmkit/serve.hpp.
//
// Threads: cpp-httplib's pool answers connections (one request at a time each); the main thread
// loads the model, then runs the engine loop: it moves new requests into the scheduler, steps
// it, and hands each step's updates to the requests' jobs, whose handler threads wait on them
// (a whole answer) or write them out as server-sent events (a stream). Only the engine thread
// touches the scheduler and the model, and its OpenMP team does the arithmetic.
#include "llmkit/serve.hpp"

#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "llmkit/adapter.hpp"
#include "llmkit/chat.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/openai.hpp"
#include "llmkit/scheduler.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"
#include "serve_metrics.hpp"

namespace llmkit {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

ModelOptions inference_options() {
  ModelOptions o;
  o.inference = true;  // no gradient memory
  return o;
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// How often a connection waiting for its answer is written to, to find a client that went away.
constexpr auto kHeartbeat = std::chrono::milliseconds(250);

// Compares in time that depends on the lengths only, not on where the strings differ.
bool same_key(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::string random_id(std::mt19937_64& rng) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// A request being answered: its sequences' choices, built up by the engine thread, and the
// deltas a stream has not written yet.
struct Job {
  ApiRequest req;
  std::string id, model;
  int64_t created = 0;
  Clock::time_point arrived = Clock::now(), first_token{};
  std::vector<uint64_t> seqs;
  int adapter = 0;
  std::vector<Clock::time_point> last_token;

  std::mutex m;
  std::condition_variable cv;
  std::vector<ApiChoice> choices;
  struct Delta {
    int index;
    std::string text;
    std::vector<TokenLogprob> logprobs;
    std::string finish;
  };
  std::deque<Delta> deltas;
  int unfinished = 0;
  std::string error;  // set when the engine failed it
  bool cut = false;   // a drain ended it: finish "length"
  bool cancelled = false;
};

}  // namespace

class Server {
 public:
  Server(const ServeOptions& o, Stats& stats) : o_(o), stats_(stats), rng_(std::random_device{}()) {}
  int run();

 private:
  void routes();
  bool authorized(const httplib::Request& req, httplib::Response& res);
  void reply_error(httplib::Response& res, const ApiError& e, const char* route);
  void generate(const httplib::Request& req, httplib::Response& res, bool chat);
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);
  void load();
  void engine_loop();
  void deliver(const std::vector<SequenceUpdate>& updates);
  void cancel(const std::shared_ptr<Job>& job);
  void finished(Job& job);

  const ServeOptions& o_;
  Stats& stats_;
  httplib::Server http_;
  std::string name_;
  std::atomic<bool> ready_{false}, draining_{false};

  // Set by load(), read-only afterwards.
  std::unique_ptr<Backend> backend_;
  LoadedModel lm_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<ChatEncoder> chat_;
  std::string chat_error_;
  std::unique_ptr<Scheduler> sched_;
  int context_ = 0;
  // Adapters, as --lora gave them: each one's values of the model's LoRA tensors, in spec order.
  struct Adapter {
    std::string name, dir;
    std::vector<float> values;
  };
  std::vector<Adapter> adapters_;
  void load_adapters();
  void use_adapter(int adapter);  // 0: the base; k: adapters_[k - 1] (engine thread)
  int adapter_of(const std::string& model) const;  // -1: no such model

  // Handler threads <-> engine thread.
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<Job>> inbox_, cancels_;
  std::map<uint64_t, std::pair<std::shared_ptr<Job>, int>> live_;  // sequence id -> job, choice
  std::atomic<int> sequences_{0};  // admitted to the server and not finished
  uint64_t next_group_ = 0;        // engine thread
  std::atomic<int> in_flight_{0};  // requests routed and not yet written out
  std::mutex rng_mu_;
  std::mt19937_64 rng_;

  Metrics metrics_;
};

bool Server::authorized(const httplib::Request& req, httplib::Response& res) {
  if (o_.api_key.empty()) return true;
  const std::string h = req.get_header_value("Authorization");
  const std::string bearer = "Bearer ";
  if (h.compare(0, bearer.size(), bearer) == 0 && same_key(h.substr(bearer.size()), o_.api_key)) return true;
  reply_error(res, ApiError(401, h.empty() ? "Missing API key: send it as 'Authorization: Bearer KEY'" : "Incorrect API key provided",
                            "", "invalid_api_key"),
              req.path.c_str());
  return false;
}

void Server::reply_error(httplib::Response& res, const ApiError& e, const char* route) {
  res.status = e.status;
  res.set_content(e.body(), "application/json");
  if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
  LLMKIT_INFO("%s %d %s", route, e.status, e.what());
}

void Server::routes() {
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const bool ok = ready_ && !draining_;
    res.status = ok ? 200 : 503;
    if (!ok) res.set_header("Retry-After", "1");
    res.set_content(ok ? "{\"status\":\"ok\"}" : draining_ ? "{\"status\":\"draining\"}" : "{\"status\":\"loading\"}",
                    "application/json");
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.text(), "text/plain; version=0.0.4");
  });
  http_.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    if (!ready_) return reply_error(res, ApiError(503, "the model is loading"), "/v1/models");
    json data = json::array({{{"id", name_}, {"object", "model"}, {"created", metrics_.start_unix()}, {"owned_by", "llmkit"},
                              {"root", lm_.source}, {"parent", nullptr}, {"max_model_len", context_}}});
    for (const Adapter& a : adapters_)
      data.push_back({{"id", a.name}, {"object", "model"}, {"created", metrics_.start_unix()}, {"owned_by", "llmkit"},
                      {"root", a.dir}, {"parent", name_}, {"max_model_len", context_}});
    res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
  });
  http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
  http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
  http_.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res); });
  http_.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) { detokenize(req, res); });
  // Requests in flight, from routing to the last byte written (the logger runs after it): the
  // drain waits for them before it closes the connections. The Server header marks the ones
  // counted (httplib logs requests it answers alone, unrouted, too).
  http_.set_pre_routing_handler([this](const httplib::Request&, httplib::Response& res) {
    ++in_flight_;
    res.set_header("Server", "llmkit/" LLMKIT_VERSION);
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http_.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    if (res.has_header("Server")) --in_flight_;
  });
  // Unknown routes, bodies over --max-body, and anything httplib answers alone: OpenAI's shape.
  http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 404   ? "Unknown route " + req.method + " " + req.path
                            : res.status == 413 ? "The request body is larger than the server's --max-body"
                                                : "HTTP error " + std::to_string(res.status);
    res.set_content(ApiError(res.status, msg).body(), "application/json");
  });
  http_.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(ApiError(500, what).body(), "application/json");
    LLMKIT_WARN("%s 500 %s", req.path.c_str(), what.c_str());
  });
}

void Server::generate(const httplib::Request& req, httplib::Response& res, bool chat) {
  const char* route = chat ? "/v1/chat/completions" : "/v1/completions";
  if (!authorized(req, res)) return;
  if (draining_) return reply_error(res, ApiError(503, "the server is shutting down"), route);
  if (!ready_) return reply_error(res, ApiError(503, "the model is loading"), route);
  auto job = std::make_shared<Job>();
  try {
    job->req = parse_request(req.body, chat, *tok_, chat_.get(), context_, o_.max_seqs);
    if (chat && !chat_) throw ApiError(400, "this model has no chat template (" + chat_error_ + "): use /v1/completions", "messages");
  } catch (const ApiError& e) {
    return reply_error(res, e, route);
  }
  const ApiRequest& r = job->req;
  const int adapter = adapter_of(r.model);
  if (adapter < 0) {
    std::string names = "'" + name_ + "'";
    for (const Adapter& a : adapters_) names += ", '" + a.name + "'";
    return reply_error(res, ApiError(404, "The model '" + r.model + "' does not exist (this server has " + names + ")", "model",
                                     "model_not_found"),
                       route);
  }
  job->adapter = adapter;
  for (const auto& pr : r.prompts)  // the KV pool holds a whole context, unless told otherwise
    if (const int need = static_cast<int>((pr.size() + static_cast<size_t>(r.params.max_tokens) + KVCache::kBlock - 1) / KVCache::kBlock);
        need > sched_->kv_blocks())
      return reply_error(res, ApiError(400, std::to_string(pr.size()) + " prompt tokens and max_tokens " + std::to_string(r.params.max_tokens) +
                                                " need " + std::to_string(need) + " KV blocks; the server's pool has " +
                                                std::to_string(sched_->kv_blocks()) + " (--kv-blocks, --kv-memory)",
                                            "max_tokens", "context_length_exceeded"),
                         route);
  const int n = static_cast<int>(r.prompts.size()) * r.params.n;
  if (sequences_.fetch_add(n) + n > o_.max_seqs + o_.max_queue) {
    sequences_ -= n;
    metrics_.count_rejected();
    return reply_error(res, ApiError(429, "The server is busy: " + std::to_string(o_.max_seqs + o_.max_queue) +
                                              " sequences are running or waiting. Retry later."),
                       route);
  }
  {
    std::lock_guard<std::mutex> g(rng_mu_);
    job->id = (chat ? "chatcmpl-" : "cmpl-") + random_id(rng_) + random_id(rng_);
    if (!r.seeded) job->req.params.seed = rng_();
  }
  job->model = adapter > 0 ? adapters_[static_cast<size_t>(adapter - 1)].name : name_;
  job->created = static_cast<int64_t>(std::time(nullptr));
  job->choices.resize(static_cast<size_t>(n));
  job->last_token.resize(static_cast<size_t>(n));
  job->unfinished = n;
  {
    std::lock_guard<std::mutex> g(mu_);
    inbox_.push_back(job);
  }
  wake_.notify_one();

  res.set_header("X-Request-Id", job->id);
  auto release = [this, job](bool) { cancel(job); };  // the connection is done: what still runs stops
  if (!r.stream) {
    {
      std::unique_lock<std::mutex> lk(job->m);
      if (job->cv.wait_for(lk, kHeartbeat, [&] { return job->unfinished == 0; })) {
        if (!job->error.empty()) return reply_error(res, ApiError(500, job->error), route);
        res.set_content(api_response(r, job->id, job->model, job->created, job->choices, *tok_).dump(), "application/json");
        return;
      }
    }
    // A longer answer goes out chunked, after a space every kHeartbeat (whitespace before JSON
    // is JSON): the write that fails finds a client that went away, and its sequences stop.
    res.set_chunked_content_provider(
        "application/json",
        [this, job](size_t offset, httplib::DataSink& sink) {
          std::unique_lock<std::mutex> lk(job->m);
          // The first space at once; then one each kHeartbeat without an answer.
          if (job->unfinished > 0 && (offset == 0 || !job->cv.wait_for(lk, kHeartbeat, [&] { return job->unfinished == 0; }))) {
            lk.unlock();
            if (sink.write(" ", 1)) return true;
            cancel(job);
            return false;
          }
          const std::string body = job->error.empty()
                                       ? api_response(job->req, job->id, job->model, job->created, job->choices, *tok_).dump()
                                       : ApiError(500, job->error).body();
          lk.unlock();
          if (!sink.write(body.data(), body.size())) return false;
          sink.done();
          return true;
        },
        release);
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job](size_t, httplib::DataSink& sink) {
        const ApiRequest& r = job->req;
        std::unique_lock<std::mutex> lk(job->m);
        const bool any = job->cv.wait_for(lk, 8 * kHeartbeat, [&] { return !job->deltas.empty() || job->unfinished == 0; });
        std::deque<Job::Delta> deltas;
        deltas.swap(job->deltas);
        const bool done = job->unfinished == 0;
        std::vector<bool> role_due(job->choices.size());
        for (const auto& d : deltas)
          if (r.chat && !job->choices[static_cast<size_t>(d.index)].sent_role) {
            role_due[static_cast<size_t>(d.index)] = true;
            job->choices[static_cast<size_t>(d.index)].sent_role = true;
          }
        lk.unlock();
        auto send = [&](const json& chunk) {
          const std::string line = "data: " + chunk.dump() + "\n\n";
          return sink.write(line.data(), line.size());
        };
        bool ok = true;
        if (!any) ok = sink.write(": waiting\n\n", 11);  // a comment: finds a client that went away
        for (const auto& d : deltas) {
          if (!ok) break;
          if (role_due[static_cast<size_t>(d.index)]) {
            role_due[static_cast<size_t>(d.index)] = false;
            ok = send(api_chunk(r, job->id, job->model, job->created, d.index, "", {}, "", true, *tok_));
          }
          if (ok && (!d.text.empty() || !d.logprobs.empty()))
            ok = send(api_chunk(r, job->id, job->model, job->created, d.index, d.text, d.logprobs, "", false, *tok_));
          if (ok && !d.finish.empty())
            ok = send(api_chunk(r, job->id, job->model, job->created, d.index, "", {}, d.finish, false, *tok_));
        }
        if (!ok) {  // the client is gone: its sequences end at the next step
          cancel(job);
          return false;
        }
        if (!done) return true;
        if (!job->error.empty()) {
          ok = send(json::parse(ApiError(500, job->error).body()));
        } else if (r.include_usage) {
          json usage = {{"id", job->id},
                        {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
                        {"created", job->created},
                        {"model", job->model},
                        {"choices", json::array()},
                        {"usage", api_usage(r, job->choices)}};
          ok = send(usage);
        }
        if (ok) ok = sink.write("data: [DONE]\n\n", 14);
        if (ok) sink.done();
        return ok;
      },
      release);
}

void Server::cancel(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lk(job->m);
    if (job->cancelled || job->unfinished == 0) return;
    job->cancelled = true;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    cancels_.push_back(job);
  }
  wake_.notify_one();
}

void Server::tokenize(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  if (!ready_) return reply_error(res, ApiError(503, "the model is loading"), "/tokenize");
  try {
    // The prompt as /v1/completions or /v1/chat/completions would see it.
    json j = parse_body(req.body);
    j["max_tokens"] = 1;
    j.erase("stream");
    const bool chat = j.contains("messages");
    const ApiRequest r = parse_request_object(j, chat, *tok_, chat_.get(), INT32_MAX, 1);
    if (r.prompts.size() != 1) throw ApiError(400, "'prompt' must be one prompt here", "prompt");
    res.set_content(json{{"count", r.prompts[0].size()}, {"max_model_len", context_}, {"tokens", r.prompts[0]}}.dump(),
                    "application/json");
  } catch (const ApiError& e) {
    reply_error(res, e, "/tokenize");
  }
}

void Server::detokenize(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  if (!ready_) return reply_error(res, ApiError(503, "the model is loading"), "/detokenize");
  try {
    const json j = parse_body(req.body);
    if (!j.contains("tokens") || !j["tokens"].is_array()) throw ApiError(400, "'tokens' must be an array", "tokens");
    std::vector<uint32_t> ids;
    for (const json& t : j["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= static_cast<int64_t>(tok_->vocab_size()))
        throw ApiError(400, "'tokens' must hold token ids below " + std::to_string(tok_->vocab_size()), "tokens");
      ids.push_back(t.get<uint32_t>());
    }
    res.set_content(json{{"prompt", tok_->decode(ids.data(), ids.size())}}.dump(), "application/json");
  } catch (const ApiError& e) {
    reply_error(res, e, "/detokenize");
  }
}

void Server::load() {
  backend_ = make_backend(o_.device, o_.precision);
  if (o_.loras.empty()) lm_ = open_model(o_.model, *backend_, inference_options());
  else load_adapters();
  require_decoder(*lm_.model, o_.model, "serving completions");
  const Model& m = *lm_.model;
  if (m.config().classifier) throw Error(o_.model, "is a reward model (no LM head): serve a language model");
  const std::string tp = !o_.tokenizer.empty() ? o_.tokenizer : lm_.tokenizer;
  if (tp.empty()) throw Error(o_.model, "has no tokenizer.model: give --tokenizer");
  tok_ = std::make_unique<Tokenizer>(tp);
  if (tok_->vocab_size() > static_cast<uint64_t>(m.config().vocab_size))
    throw Error(tp, "vocabulary of " + std::to_string(tok_->vocab_size()) + " is larger than the model's " +
                        std::to_string(m.config().vocab_size));
  std::string tmpl = !o_.chat_template.empty() ? o_.chat_template : checkpoint_chat_template(o_.model);
  try {
    chat_ = std::make_unique<ChatEncoder>(*tok_, ChatTemplate::named(tmpl.empty() ? "chatml" : tmpl));
  } catch (const Error& e) {
    if (!o_.chat_template.empty()) throw;  // asked for: must work
    chat_error_ = e.what();
    LLMKIT_WARN("no chat template: %s; /v1/chat/completions answers 400", e.what());
  }
  context_ = o_.max_model_len > 0 ? std::min(o_.max_model_len, m.config().max_seq) : m.config().max_seq;
  const ModelConfig& c = m.config();
  const uint64_t block_bytes = KVCache::block_bytes(c.layers, c.kv_heads * c.head_dim());
  SchedulerOptions so;
  so.max_seqs = o_.max_seqs;
  so.kv_blocks = o_.kv_blocks > 0 ? o_.kv_blocks : o_.kv_memory > 0 ? static_cast<int>(o_.kv_memory / block_bytes) : 0;
  if (o_.kv_memory > 0 && so.kv_blocks < 1) throw Error("--kv-memory", "holds no block of " + human_bytes(static_cast<double>(block_bytes)));
  so.max_batch_tokens = o_.max_batch_tokens;
  so.prefix_caching = o_.prefix_caching;
  so.context = context_;
  if (!adapters_.empty()) so.use_adapter = [this](int a) { use_adapter(a); };
  sched_ = std::make_unique<Scheduler>(*lm_.model, tok_.get(), so);
  metrics_.set_kv_blocks(sched_->kv_blocks());
  stats_.add("weight bytes", static_cast<int64_t>(m.weight_bytes()));
  stats_.add("kv pool bytes", static_cast<int64_t>(sched_->kv_bytes()));
  LLMKIT_INFO("serving %s as '%s': context %d, %d sequences at once, KV pool %d blocks of %d positions (%s), weights %s",
              lm_.source.c_str(), name_.c_str(), context_, o_.max_seqs, sched_->kv_blocks(), KVCache::kBlock,
              human_bytes(static_cast<double>(sched_->kv_bytes())).c_str(),
              human_bytes(static_cast<double>(m.weight_bytes())).c_str());
}

// The base of --model with room for the adapters' tensors, and each adapter's values of them.
void Server::load_adapters() {
  const std::string base = checkpoint_dir(o_.model);
  if (is_adapter_dir(base)) throw Error(o_.model, "is an adapter: with --lora, --model is the base they were trained on");
  std::vector<AdapterConfig> cfgs;
  for (const auto& [name, path] : o_.loras) {
    const std::string dir = checkpoint_dir(path);  // a run directory's latest
    if (!is_adapter_dir(dir)) throw Error(path, "is not a LoRA adapter (no adapter_config.json)");
    cfgs.push_back(read_adapter_config(dir));
    const LoraOptions &a = cfgs.back().lora, &b = cfgs.front().lora;
    if (a.rank != b.rank || a.alpha != b.alpha || a.rslora != b.rslora || a.targets != b.targets)
      throw Error(dir, "has another rank, alpha or target modules than " + adapters_.front().dir +
                           ": the adapters of one server share them");
    if (cfgs.back().seq_cls) throw Error(dir, "is a reward model's adapter");
    if (name == name_ || adapter_of(name) > 0) throw Error("--lora " + name, "names the model or another adapter");
    adapters_.push_back({name, dir, {}});
  }
  for (size_t i = 0; i < cfgs.size(); ++i)
    if (!cfgs[i].fingerprint.empty() && is_directory(base) && cfgs[i].fingerprint != base_fingerprint(base))
      throw Error(adapters_[i].dir, "was trained on another base than " + base);
  ModelOptions mo = inference_options();
  mo.lora = cfgs.front().lora;
  mo.lora.dropout = 0;
  lm_ = open_model(o_.model, *backend_, mo);
  Model& m = *lm_.model;
  for (Adapter& a : adapters_) {
    load_adapter(a.dir, m);
    for (const ParamSpec& s : m.params())
      if (Model::is_lora_tensor(s.name)) {
        a.values.resize(a.values.size() + s.size);
        backend_->download(a.values.data() + a.values.size() - s.size, m.weights() + s.offset, s.size);
      }
    LLMKIT_INFO("adapter '%s': %s (rank %d)", a.name.c_str(), a.dir.c_str(), mo.lora.rank);
  }
  use_adapter(0);
}

void Server::use_adapter(int adapter) {
  Model& m = *lm_.model;
  m.set_lora_enabled(adapter > 0);
  if (adapter == 0) return;
  const std::vector<float>& v = adapters_.at(static_cast<size_t>(adapter - 1)).values;
  size_t at = 0;
  for (const ParamSpec& s : m.params())
    if (Model::is_lora_tensor(s.name)) {
      backend_->upload(m.weights() + s.offset, v.data() + at, s.size);
      at += s.size;
    }
  backend_->parameters_changed();
}

int Server::adapter_of(const std::string& model) const {
  if (model.empty() || model == name_) return 0;
  for (size_t i = 0; i < adapters_.size(); ++i)
    if (adapters_[i].name == model) return static_cast<int>(i) + 1;
  return -1;
}

// The engine thread's side of a finished job.
void Server::finished(Job& job) {
  const double e2e = seconds(job.arrived, Clock::now());
  const json usage = api_usage(job.req, job.choices);
  const int prompt = usage["prompt_tokens"], completion = usage["completion_tokens"];
  const std::string finish = job.choices.back().finish;
  const double ttft = job.first_token == Clock::time_point{} ? -1 : seconds(job.arrived, job.first_token);
  metrics_.observe_request(e2e, finish);
  LLMKIT_INFO("%s %s 200 %s prompt=%d completion=%d ttft=%.3fs total=%.3fs%s", job.id.c_str(),
              job.req.chat ? "/v1/chat/completions" : "/v1/completions", job.req.stream ? "stream" : "whole", prompt, completion,
              ttft, e2e, job.cancelled ? " (client gone)" : "");
  stats_.add("requests");
  stats_.add("prompt tokens", prompt);
  stats_.add("completion tokens", completion);
}

void Server::deliver(const std::vector<SequenceUpdate>& updates) {
  const auto now = Clock::now();
  for (const SequenceUpdate& u : updates) {
    const auto it = live_.find(u.id);
    if (it == live_.end()) continue;
    const std::shared_ptr<Job> hold = it->second.first;  // erased from live_ below; a gone stream holds it no more
    Job& job = *hold;
    const int index = it->second.second;
    bool done = false;
    {
      std::lock_guard<std::mutex> lk(job.m);
      ApiChoice& c = job.choices[static_cast<size_t>(index)];
      c.text += u.text;
      c.logprobs.insert(c.logprobs.end(), u.logprobs.begin(), u.logprobs.end());
      c.prompt_tokens = u.prompt_tokens;
      c.cached_tokens = u.cached_tokens;
      c.completion_tokens = u.completion_tokens;
      std::string finish = u.finish == "eos" ? "stop" : u.finish;  // OpenAI's reason for both
      if (finish == "abort") finish = job.cut ? "length" : "abort";
      c.finish = finish;
      if (!u.tokens.empty()) {
        auto& last = job.last_token[static_cast<size_t>(index)];
        if (job.first_token == Clock::time_point{}) {
          job.first_token = now;
          metrics_.observe_ttft(seconds(job.arrived, now));
        }
        if (last != Clock::time_point{}) metrics_.observe_itl(seconds(last, now));
        last = now;
      }
      if (job.req.stream) job.deltas.push_back({index, u.text, u.logprobs, finish});
      if (!u.finish.empty()) {
        --sequences_;
        live_.erase(it);
        done = --job.unfinished == 0;
      }
    }
    job.cv.notify_all();
    if (done) finished(job);
  }
}

void Server::engine_loop() {
  Clock::time_point drain_start{};
  bool cut = false;
  for (;;) {
    std::vector<std::shared_ptr<Job>> inbox, cancels;
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (sched_->idle() && inbox_.empty() && cancels_.empty() && !stop_requested())
        wake_.wait_for(lk, std::chrono::milliseconds(100));
      inbox.swap(inbox_);
      cancels.swap(cancels_);
    }
    if (stop_requested() && !draining_) {
      draining_ = true;
      drain_start = Clock::now();
      LLMKIT_INFO("draining: %d sequences running, %d waiting; new requests get 503", sched_->running(), sched_->waiting());
    }
    for (const auto& job : inbox) {
      const ApiRequest& r = job->req;
      const size_t n = static_cast<size_t>(r.params.n);
      for (size_t p = 0; p < r.prompts.size(); ++p) {
        const uint64_t group = n > 1 ? ++next_group_ : 0;  // the prompt's samples share its blocks
        for (size_t k = 0; k < n; ++k) {
          SequenceRequest sr{r.prompts[p], r.params, r.top_logprobs};
          sr.params.n = 1;
          sr.group = group;
          sr.adapter = job->adapter;
          sr.params.seed = sequence_seed(r.params.seed, p * n + k);  // as Engine::generate seeds
          uint64_t id = 0;
          try {
            id = sched_->add(std::move(sr));
          } catch (const std::exception& e) {  // checked before; should it happen, the job fails, the server goes on
            std::lock_guard<std::mutex> lk(job->m);
            job->error = e.what();
            --sequences_;
            if (--job->unfinished == 0) job->cv.notify_all();
            continue;
          }
          job->seqs.push_back(id);
          live_[id] = {job, static_cast<int>(p * n + k)};
        }
      }
    }
    for (const auto& job : cancels)
      for (uint64_t id : job->seqs) sched_->cancel(id);
    if (draining_ && !cut && seconds(drain_start, Clock::now()) > o_.drain_timeout) {
      cut = true;  // time is up: what still runs ends now, as "length"
      LLMKIT_INFO("drain timeout: cutting %d running and %d waiting sequences", sched_->running(), sched_->waiting());
      for (auto& [id, jc] : live_) {
        {
          std::lock_guard<std::mutex> lk(jc.first->m);
          jc.first->cut = true;
        }
        sched_->cancel(id);
      }
    }
    if (draining_ && sched_->idle() && live_.empty()) return;
    if (sched_->idle()) continue;
    std::vector<SequenceUpdate> updates;
    try {
      updates = sched_->step();
    } catch (const std::exception& e) {  // a failed forward pass: fail what runs, keep serving
      LLMKIT_WARN("engine step failed: %s", e.what());
      for (auto& [id, jc] : live_) {
        Job& job = *jc.first;
        sched_->cancel(id);
        std::lock_guard<std::mutex> lk(job.m);
        job.error = e.what();
      }
      continue;
    }
    const auto now = Clock::now();
    for (uint64_t id : sched_->take_admitted())
      if (const auto it = live_.find(id); it != live_.end() && it->second.second == 0)
        metrics_.observe_queue(seconds(it->second.first->arrived, now));
    deliver(updates);
    metrics_.set_engine(*sched_, static_cast<int>(live_.size()) - sched_->running());
  }
}

int Server::run() {
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a signal
  disable_signal_interrupts();
  std::string base = o_.model;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  name_ = !o_.served_name.empty() ? o_.served_name : base.substr(base.find_last_of('/') + 1);
  const size_t threads = o_.http_threads > 0 ? static_cast<size_t>(o_.http_threads)
                                             : static_cast<size_t>(o_.max_seqs + o_.max_queue + 8);
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_.set_payload_max_length(o_.max_body);
  http_.set_read_timeout(10, 0);
  http_.set_write_timeout(10, 0);
  http_.set_keep_alive_timeout(10);
  routes();
  int port = o_.port;
  if (port == 0) {
    port = http_.bind_to_any_port(o_.host);
    if (port < 0) throw Error(o_.host, "cannot listen on any port");
  } else if (!http_.bind_to_port(o_.host, port)) {
    throw Error(o_.host + ":" + std::to_string(port), "cannot listen (in use, or not an address of this machine)");
  }
  if (!o_.port_file.empty()) write_file_atomic(o_.port_file, o_.host + ":" + std::to_string(port) + "\n");
  LLMKIT_INFO("listening on http://%s:%d", o_.host.c_str(), port);
  std::thread listener([this] { http_.listen_after_bind(); });
  int status = 0;
  try {
    load();
    ready_ = true;
    engine_loop();
  } catch (...) {
    http_.stop();
    listener.join();
    throw;
  }
  // Every answer written (streams cut by the drain get their last chunks and [DONE]) before the
  // connections close.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (in_flight_ > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  http_.stop();
  listener.join();
  const SchedulerCounters& c = sched_->counters();
  stats_.add("generation tokens", static_cast<int64_t>(c.generation_tokens));
  stats_.add("preemptions", static_cast<int64_t>(c.preemptions));
  stats_.add("prefix cache hits (tokens)", static_cast<int64_t>(c.prefix_hits));
  stats_.add("aborted", static_cast<int64_t>(c.aborted));
  LLMKIT_INFO("drained: %llu requests answered, exiting", static_cast<unsigned long long>(metrics_.requests()));
  return status;
}

int serve(const ServeOptions& options, Stats& stats) {
  Server s(options, stats);
  return s.run();
}

}  // namespace llmkit
