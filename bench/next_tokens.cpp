// The next-token log-probabilities and greedy continuation of token-id prompts, on llmkit's
// model read from a checkpoint or a GGUF file (fp32, the CPU): the llmkit side of the
// comparisons with llama.cpp (tests/cli/quant.sh, bench/quant.sh).
// Usage: next_tokens MODEL '[[ids...], ...]' N   -> one JSON line per prompt:
//        {"tokens": [N greedy ids], "logp": [log p of every vocabulary id after the prompt]}
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/model.hpp"

using namespace llmkit;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: next_tokens MODEL '[[ids...], ...]' N\n");
    return 2;
  }
  auto be = make_cpu_backend();
  LoadedModel lm = open_model(argv[1], *be);
  Model& m = *lm.model;
  const int V = m.config().vocab_size, Vp = m.config().padded_vocab(), n = std::stoi(argv[3]);
  auto log_softmax_last = [&](const std::vector<int32_t>& ids) {
    m.forward(ids.data(), nullptr, 1, static_cast<int>(ids.size()));
    const float* row = m.logits_on_host() + (ids.size() - 1) * static_cast<size_t>(Vp);
    double mx = row[0], s = 0;
    for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    for (int j = 0; j < V; ++j) s += std::exp(row[j] - mx);
    std::vector<double> lp(static_cast<size_t>(V));
    for (int j = 0; j < V; ++j) lp[static_cast<size_t>(j)] = row[j] - mx - std::log(s);
    return lp;
  };
  for (const auto& p : nlohmann::json::parse(argv[2])) {
    std::vector<int32_t> ids = p.get<std::vector<int32_t>>();
    nlohmann::json out;
    out["logp"] = log_softmax_last(ids);
    std::vector<int32_t> gen;
    for (int k = 0; k < n; ++k) {
      const std::vector<double> lp = k == 0 ? out["logp"].get<std::vector<double>>() : log_softmax_last(ids);
      const auto best = static_cast<int32_t>(std::max_element(lp.begin(), lp.end()) - lp.begin());
      gen.push_back(best);
      ids.push_back(best);
    }
    out["tokens"] = gen;
    std::printf("%s\n", out.dump().c_str());
  }
  return 0;
}
