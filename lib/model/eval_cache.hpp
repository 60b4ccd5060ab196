// llm-eval's cache of finished blocks (internal to lib/model/eval.cpp): what makes a stopped or
// killed evaluation resumable. A JSONL file whose first line names the evaluation (its identity:
// model, task files, options), then one line per finished block of examples, each appended with
// one write() and synced, so that a killed run leaves whole lines (a torn last line is ignored).
// One process writes PATH; under MPI rank r writes PATH.RRRRR. Every rank reads them all, so a
// rerun on another number of ranks reuses them too: a block's result does not depend on the rank
// that computed it.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace llmkit {

class Comm;

// xxh3-64 of a file's bytes, as 16 hex digits: the identity of a model's weights or a task file.
std::string file_digest(const std::string& path);

class EvalCache {
 public:
  // Reads the cache files of PATH whose identity is `identity` (a file of another evaluation is
  // reported and replaced), and opens this rank's file for appending. Collective under MPI.
  EvalCache(std::string path, const nlohmann::json& identity, Comm& comm);
  ~EvalCache();
  EvalCache(const EvalCache&) = delete;
  EvalCache& operator=(const EvalCache&) = delete;
  // The record of a block finished by an earlier run, or null.
  const nlohmann::json* find(size_t block) const;
  size_t size() const { return blocks_.size(); }
  // Appends a finished block's record ({"block": b, ...}) and syncs it to disk.
  void add(const nlohmann::json& record);
  // After the report is written: removes every cache file of PATH (collective).
  void remove();
  const std::string& path() const { return path_; }

 private:
  std::string path_, mine_;
  Comm& comm_;
  int fd_ = -1;
  std::map<size_t, nlohmann::json> blocks_;
};

}  // namespace llmkit
