// llm-serve's Prometheus metrics (GET /metrics), under vLLM's names with the llmkit: prefix:
// gauges of the engine's state, counters, and latency histograms. Internal to lib/serve.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "llmkit/scheduler.hpp"

namespace llmkit {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++count_;
  }
  void render(std::string& out, const std::string& name, const std::string& help) const {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
    uint64_t acc = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      acc += counts_[i];
      out += name + "_bucket{le=\"" + (i < bounds_.size() ? number(bounds_[i]) : "+Inf") + "\"} " + std::to_string(acc) + "\n";
    }
    out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
  }
  static std::string number(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
  }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics() : start_(static_cast<int64_t>(std::time(nullptr))) {}
  int64_t start_unix() const { return start_; }
  void set_kv_blocks(int n) {
    std::lock_guard<std::mutex> g(m_);
    kv_blocks_ = n;
  }
  // After each engine step: the scheduler's gauges and counters (read on the engine thread).
  void set_engine(const Scheduler& s, int waiting_outside) {
    std::lock_guard<std::mutex> g(m_);
    running_ = s.running();
    waiting_ = s.waiting() + std::max(0, waiting_outside - s.waiting());
    kv_usage_ = s.kv_usage();
    c_ = s.counters();
  }
  void observe_ttft(double s) {
    std::lock_guard<std::mutex> g(m_);
    ttft_.observe(s);
  }
  void observe_itl(double s) {
    std::lock_guard<std::mutex> g(m_);
    itl_.observe(s);
  }
  void observe_queue(double s) {
    std::lock_guard<std::mutex> g(m_);
    queue_.observe(s);
  }
  void observe_request(double e2e, const std::string& finish) {
    std::lock_guard<std::mutex> g(m_);
    e2e_.observe(e2e);
    ++finished_[finish];
    ++requests_;
  }
  void count_rejected() {
    std::lock_guard<std::mutex> g(m_);
    ++rejected_;
  }
  uint64_t requests() {
    std::lock_guard<std::mutex> g(m_);
    return requests_;
  }
  std::string text() {
    std::lock_guard<std::mutex> g(m_);
    std::string out;
    auto gauge = [&](const char* name, double v, const char* help) {
      out += std::string("# HELP llmkit:") + name + " " + help + "\n# TYPE llmkit:" + name + " gauge\nllmkit:" + name + " " +
             Histogram::number(v) + "\n";
    };
    auto counter = [&](const char* name, uint64_t v, const char* help) {
      out += std::string("# HELP llmkit:") + name + " " + help + "\n# TYPE llmkit:" + name + " counter\nllmkit:" + name + " " +
             std::to_string(v) + "\n";
    };
    gauge("num_requests_running", running_, "Sequences in the batch.");
    gauge("num_requests_waiting", waiting_, "Sequences waiting for room in the batch.");
    gauge("kv_cache_usage_perc", kv_usage_, "Fraction of the KV pool's blocks in use (1 = full).");
    gauge("kv_cache_blocks", kv_blocks_, "Blocks in the KV pool.");
    counter("prompt_tokens_total", c_.prompt_tokens, "Prompt tokens admitted.");
    counter("generation_tokens_total", c_.generation_tokens, "Tokens generated.");
    counter("num_preemptions_total", c_.preemptions, "Sequences preempted for KV blocks (recomputed later).");
    counter("prefix_cache_queries_total", c_.prefix_queries, "Prompt tokens looked up in the prefix cache.");
    counter("prefix_cache_hits_total", c_.prefix_hits, "Prompt tokens found in the prefix cache.");
    counter("request_aborted_total", c_.aborted, "Sequences cancelled (client gone, drain cut).");
    counter("request_rejected_total", rejected_, "Requests answered 429 (queue full).");
    out += "# HELP llmkit:request_success_total Requests finished, by the finish reason of their last choice.\n"
           "# TYPE llmkit:request_success_total counter\n";
    for (const auto& [reason, n] : finished_)
      out += "llmkit:request_success_total{finished_reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
    ttft_.render(out, "llmkit:time_to_first_token_seconds", "Time from arrival to the first token.");
    itl_.render(out, "llmkit:inter_token_latency_seconds", "Time between two tokens of a sequence.");
    e2e_.render(out, "llmkit:e2e_request_latency_seconds", "Time from arrival to the last token.");
    queue_.render(out, "llmkit:request_queue_time_seconds", "Time from arrival to admission into the batch.");
    return out;
  }

 private:
  std::mutex m_;
  int64_t start_;
  int running_ = 0, waiting_ = 0, kv_blocks_ = 0;
  double kv_usage_ = 0;
  SchedulerCounters c_;
  uint64_t requests_ = 0, rejected_ = 0;
  std::map<std::string, uint64_t> finished_;
  // vLLM's buckets
  Histogram ttft_{{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}};
  Histogram itl_{{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}};
  Histogram e2e_{{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0}};
  Histogram queue_{{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0}};
};

}  // namespace llmkit
