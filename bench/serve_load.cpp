// A load generator for llm-serve (bench/serve.sh), in the way of vLLM's benchmark_serving:
// streamed completions of fixed prompt and output lengths (token-id prompts, ignore_eos), sent
// by C clients at once (closed loop) or at Poisson arrivals; prints one JSON line with request
// throughput, output tokens/s, and TTFT and inter-token latency percentiles.
//   serve_load HOST:PORT --requests N (--concurrency C | --rate R) --prompt-tokens P
//              --output-tokens O [--shared-prefix K] [--vocab V] [--seed S] [--key KEY]
// Each token's chunk carries its log-probability (logprobs: 0), so every token is one event,
// even one whose text the server holds back.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double ttft = -1;
  std::vector<double> itl;
  int tokens = 0;
  bool ok = false;
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: serve_load HOST:PORT --requests N (--concurrency C | --rate R) --prompt-tokens P --output-tokens O\n"
                         "                  [--shared-prefix K] [--vocab V] [--seed S] [--key KEY]\n");
    return 2;
  }
  const std::string addr = argv[1];
  int requests = 16, concurrency = 1, prompt = 64, output = 64, shared = 0, vocab = 256;
  double rate = 0;
  uint64_t seed = 1;
  std::string key;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string o = argv[i], v = argv[i + 1];
    if (o == "--requests") requests = std::atoi(v.c_str());
    else if (o == "--concurrency") concurrency = std::atoi(v.c_str());
    else if (o == "--rate") rate = std::atof(v.c_str());
    else if (o == "--prompt-tokens") prompt = std::atoi(v.c_str());
    else if (o == "--output-tokens") output = std::atoi(v.c_str());
    else if (o == "--shared-prefix") shared = std::atoi(v.c_str());
    else if (o == "--vocab") vocab = std::atoi(v.c_str());
    else if (o == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (o == "--key") key = v;
    else {
      std::fprintf(stderr, "serve_load: unknown option %s\n", o.c_str());
      return 2;
    }
  }
  const std::string host = addr.substr(0, addr.rfind(':'));
  const int port = std::atoi(addr.substr(addr.rfind(':') + 1).c_str());
  // The prompts: a shared prefix, then ids of each request's own.
  std::mt19937_64 rng(seed);
  std::vector<int> prefix(static_cast<size_t>(shared));
  for (int& t : prefix) t = 3 + static_cast<int>(rng() % static_cast<uint64_t>(vocab - 3));
  std::vector<std::string> bodies;
  for (int r = 0; r < requests; ++r) {
    nlohmann::json ids = prefix;
    for (int k = shared; k < prompt; ++k) ids.push_back(3 + static_cast<int>(rng() % static_cast<uint64_t>(vocab - 3)));
    bodies.push_back(nlohmann::json{{"prompt", ids}, {"max_tokens", output}, {"temperature", 0}, {"ignore_eos", true},
                                    {"stream", true}, {"logprobs", 0}}
                         .dump());
  }
  std::vector<Result> results(static_cast<size_t>(requests));
  auto one = [&](int r) {
    httplib::Client cli(host, port);
    cli.set_read_timeout(600, 0);
    Result& res = results[static_cast<size_t>(r)];
    const auto t0 = Clock::now();
    auto last = t0;
    std::string pending;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.headers = {{"Content-Type", "application/json"}};
    if (!key.empty()) req.headers.emplace("Authorization", "Bearer " + key);
    req.body = bodies[static_cast<size_t>(r)];
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
      pending.append(data, len);
      for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
        const std::string event = pending.substr(0, end);
        pending.erase(0, end + 2);
        if (event.rfind("data: {", 0) != 0) continue;
        const auto j = nlohmann::json::parse(event.substr(6), nullptr, false);
        if (j.is_discarded() || j["choices"].empty()) continue;
        const auto& lp = j["choices"][0]["logprobs"];
        const int n = lp.is_object() ? static_cast<int>(lp["tokens"].size()) : 0;
        if (n == 0) continue;
        const auto now = Clock::now();
        if (res.ttft < 0) res.ttft = std::chrono::duration<double>(now - t0).count();
        else res.itl.push_back(std::chrono::duration<double>(now - last).count() / n);
        last = now;
        res.tokens += n;
      }
      return true;
    };
    httplib::Response resp;
    httplib::Error err;
    res.ok = cli.send(req, resp, err) && resp.status == 200 && res.tokens == output;
  };
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  if (rate > 0) {  // open loop: Poisson arrivals
    std::exponential_distribution<double> gap(rate);
    auto at = start;
    for (int r = 0; r < requests; ++r) {
      std::this_thread::sleep_until(at);
      threads.emplace_back(one, r);
      at += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
  } else {  // closed loop: C clients, each sends its next request when the last ends
    std::atomic<int> next{0};
    for (int c = 0; c < concurrency; ++c)
      threads.emplace_back([&] {
        for (int r; (r = next++) < requests;) one(r);
      });
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> ttft, itl;
  int ok = 0;
  long tokens = 0;
  for (const Result& r : results) {
    ok += r.ok;
    tokens += r.tokens;
    if (r.ttft >= 0) ttft.push_back(r.ttft);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
  }
  nlohmann::json out = {{"requests", requests},         {"ok", ok},
                        {"concurrency", concurrency},   {"rate", rate},
                        {"prompt_tokens", prompt},      {"output_tokens", output},
                        {"shared_prefix", shared},      {"wall_s", wall},
                        {"req_per_s", requests / wall}, {"output_tok_per_s", static_cast<double>(tokens) / wall},
                        {"ttft_p50_ms", 1e3 * pct(ttft, 50)}, {"ttft_p99_ms", 1e3 * pct(ttft, 99)},
                        {"itl_p50_ms", 1e3 * pct(itl, 50)},   {"itl_p99_ms", 1e3 * pct(itl, 99)}};
  std::printf("%s\n", out.dump().c_str());
  return ok == requests ? 0 : 1;
}
