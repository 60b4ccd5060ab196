// Throughput of the document quality rules (lib/text/quality*.cpp) on a JSONL corpus, one
// thread. Prints MB/s and a digest of the outcomes (documents per reason and a hash of every
// text after check_quality, so a change to the C4-rewritten text shows) so that an
// optimisation can be shown to leave every decision unchanged.
//
//   quality_bench FILE.jsonl [STAGE] [REPEAT]
// STAGE: all (default), gopher_repetition, gopher_quality, c4, fineweb. Language "en".
#include <xxhash.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmkit/quality.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: quality_bench FILE.jsonl [STAGE] [REPEAT]\n");
    return 2;
  }
  std::string stage = argc > 2 ? argv[2] : "all";
  int repeat = argc > 3 ? std::atoi(argv[3]) : 1;
  llmkit::text::QualityConfig cfg;
  if (stage != "all") {
    cfg.gopher_repetition = stage == "gopher_repetition";
    cfg.gopher_quality = stage == "gopher_quality";
    cfg.c4 = stage == "c4";
    cfg.fineweb = stage == "fineweb";
  }
  std::vector<std::string> texts;
  std::ifstream in(argv[1]);
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    bytes += texts.back().size();
  }
  double best = 1e300;
  std::map<std::string, size_t> reasons;
  uint64_t digest = 0;
  for (int r = 0; r < repeat; ++r) {
    std::vector<std::string> work = texts;
    std::vector<std::string> out(work.size());
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < work.size(); ++i) out[i] = llmkit::text::check_quality(work[i], "en", cfg);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    if (r == 0) {
      XXH3_state_t* st = XXH3_createState();
      XXH3_64bits_reset(st);
      for (size_t i = 0; i < work.size(); ++i) {
        ++reasons[out[i]];
        XXH3_64bits_update(st, out[i].data(), out[i].size());
        XXH3_64bits_update(st, "\0", 1);
        XXH3_64bits_update(st, work[i].data(), work[i].size());
        XXH3_64bits_update(st, "\0", 1);
      }
      digest = XXH3_64bits_digest(st);
      XXH3_freeState(st);
    }
  }
  std::printf("stage %s: %zu docs, %.1f MB in %.3f s: %.1f MB/s\n", stage.c_str(), texts.size(), bytes / 1e6,
              best, bytes / 1e6 / best);
  for (auto& [reason, n] : reasons) std::printf("  %-40s %zu\n", reason.empty() ? "(kept)" : reason.c_str(), n);
  std::printf("digest %016llx\n", static_cast<unsigned long long>(digest));
  return 0;
}
