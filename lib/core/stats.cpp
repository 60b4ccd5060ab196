#include "llmkit/stats.hpp"

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"

namespace llmkit {

int64_t peak_rss_bytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports kB
}

Stats::Stats() : start_(std::chrono::steady_clock::now()) {}

int64_t Stats::get(const std::string& counter) const {
  auto it = counters_.find(counter);
  return it == counters_.end() ? 0 : it->second;
}

int64_t Stats::dropped(const std::string& reason) const {
  auto it = drops_.find(reason);
  return it == drops_.end() ? 0 : it->second;
}

int64_t Stats::dropped_total() const {
  int64_t n = 0;
  for (const auto& [k, v] : drops_) n += v;
  return n;
}

void Stats::merge(const Stats& other) {
  for (const auto& [k, v] : other.counters_) counters_[k] += v;
  for (const auto& [k, v] : other.drops_) drops_[k] += v;
}

nlohmann::json Stats::to_json(const std::string& program) const {
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  nlohmann::json j;
  j["program"] = program;
  j["version"] = LLMKIT_VERSION;
  j["ranks"] = ranks_;
  j["counters"] = counters_;
  j["drops"] = drops_;
  if (!derived_.empty()) j["derived"] = derived_;
  j["dropped_total"] = dropped_total();
  j["wall_seconds"] = wall;
  j["peak_rss_bytes"] = peak_rss_max_ >= 0 ? peak_rss_max_ : peak_rss_bytes();
  j["peak_rss_bytes_total"] = peak_rss_sum_ >= 0 ? peak_rss_sum_ : peak_rss_bytes();
  return j;
}

void Stats::reduce(Comm& comm) {
  int64_t rss = peak_rss_bytes();
  ranks_ = comm.size();
  if (comm.size() == 1) {
    peak_rss_max_ = peak_rss_sum_ = rss;
    return;
  }
  nlohmann::json mine = {{"c", counters_}, {"d", drops_}, {"rss", rss}};
  auto all = comm.gather(mine.dump());
  if (comm.rank() != 0) return;
  counters_.clear();
  drops_.clear();
  peak_rss_max_ = peak_rss_sum_ = 0;
  for (const auto& s : all) {
    auto j = nlohmann::json::parse(s);
    for (auto& [k, v] : j["c"].items()) counters_[k] += v.get<int64_t>();
    for (auto& [k, v] : j["d"].items()) drops_[k] += v.get<int64_t>();
    int64_t r = j["rss"].get<int64_t>();
    peak_rss_max_ = std::max(peak_rss_max_, r);
    peak_rss_sum_ += r;
  }
}

void Stats::write(const std::string& path, const std::string& program, Comm& comm) const {
  if (path.empty() || comm.rank() != 0) return;
  write_file_atomic(path, to_json(program).dump(2) + "\n");
}

}  // namespace llmkit
