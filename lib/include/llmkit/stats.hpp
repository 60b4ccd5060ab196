// Per-run statistics written with --stats FILE: counters (docs_in, docs_out, bytes_in, ...),
// drops per reason, wall time and peak RSS; merged across threads and across MPI ranks.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace llmkit {

class Comm;

class Stats {
 public:
  Stats();
  void add(const std::string& counter, int64_t n = 1) { counters_[counter] += n; }
  void drop(const std::string& reason, int64_t n = 1) { drops_[reason] += n; }
  int64_t get(const std::string& counter) const;
  int64_t dropped(const std::string& reason) const;
  int64_t dropped_total() const;
  const std::map<std::string, int64_t>& counters() const { return counters_; }
  const std::map<std::string, int64_t>& drops() const { return drops_; }
  void merge(const Stats& other);
  // A figure derived from the reduced counters (a rate, a ratio), set after reduce() on rank 0;
  // written under "derived".
  void set_derived(const std::string& name, double value) { derived_[name] = value; }

  // {"program":..., "ranks":N, "counters":{...}, "drops":{...}, "derived":{...}, "wall_seconds":x,
  //  "peak_rss_bytes":max over ranks, "peak_rss_bytes_total": sum over ranks}
  nlohmann::json to_json(const std::string& program) const;
  // Sums every rank's stats onto rank 0 (collective; a no-op with one process).
  void reduce(Comm& comm);
  // Rank 0 writes the JSON atomically; other ranks do nothing.
  void write(const std::string& path, const std::string& program, Comm& comm) const;

 private:
  std::map<std::string, int64_t> counters_, drops_;
  std::map<std::string, double> derived_;
  std::chrono::steady_clock::time_point start_;
  int ranks_ = 1;
  int64_t peak_rss_max_ = -1, peak_rss_sum_ = -1;
};

int64_t peak_rss_bytes();

}  // namespace llmkit
