// llm-eval's cache of finished blocks; see eval_cache.hpp.
#include "eval_cache.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"

namespace llmkit {
namespace fs = std::filesystem;

namespace {

// PATH itself and PATH.RRRRR, the files of a cache, in name order.
std::vector<std::string> cache_files(const std::string& path) {
  std::vector<std::string> out;
  if (file_size(path) > 0 || fs::exists(path)) out.push_back(path);
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string base = p.filename().string() + ".";
  std::error_code ec;
  std::vector<std::string> parts;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() == base.size() + 5 && n.compare(0, base.size(), base) == 0 &&
        n.find_first_not_of("0123456789", base.size()) == std::string::npos)
      parts.push_back((p.has_parent_path() ? dir / n : fs::path(n)).string());
  }
  std::sort(parts.begin(), parts.end());
  out.insert(out.end(), parts.begin(), parts.end());
  return out;
}

}  // namespace

std::string file_digest(const std::string& path) {
  auto in = open_input(path);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> buf(1 << 20);
  try {
    for (size_t n; (n = in->read(buf.data(), buf.size())) > 0;) XXH3_64bits_update(state, buf.data(), n);
  } catch (...) {
    XXH3_freeState(state);
    throw;
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits_digest(state)));
  XXH3_freeState(state);
  return hex;
}

EvalCache::EvalCache(std::string path, const nlohmann::json& identity, Comm& comm)
    : path_(std::move(path)), comm_(comm) {
  const std::string header = nlohmann::json{{"llm_eval_cache", 1}, {"identity", identity}}.dump();
  bool stale = false;
  for (const auto& f : cache_files(path_)) {
    std::string text = read_file(f);
    size_t nl = text.find('\n');
    if (text.substr(0, nl) != header) {
      stale = stale || !text.empty();
      continue;
    }
    // Whole lines only: a run killed inside a write leaves a torn last line, without its '\n'.
    for (size_t b = nl + 1; b < text.size();) {
      size_t e = text.find('\n', b);
      if (e == std::string::npos) break;
      try {
        nlohmann::json rec = nlohmann::json::parse(text.substr(b, e - b));
        const size_t block = rec.at("block").get<size_t>();
        blocks_[block] = std::move(rec);
      } catch (const std::exception&) {
        LLMKIT_WARN("%s: a damaged line of the cache is left out (its block is evaluated again)", f.c_str());
      }
      b = e + 1;
    }
  }
  if (stale && comm_.rank() == 0)
    LLMKIT_WARN("%s: the cache of another evaluation (model, task files or options differ): not used, replaced",
                path_.c_str());
  comm_.barrier();  // every rank has read every file before any is rewritten
  char suffix[16];
  snprintf(suffix, sizeof suffix, ".%05d", comm_.rank());
  mine_ = comm_.size() > 1 ? path_ + suffix : path_;
  // This rank's file starts afresh with the header and the blocks it holds already (those of
  // every rank, so that any of the files suffices to resume); written atomically.
  std::string text = header + "\n";
  for (const auto& [block, rec] : blocks_) text += rec.dump() + "\n";
  if (comm_.rank() == 0)
    for (const auto& f : cache_files(path_))
      if (f != mine_) ::unlink(f.c_str());
  comm_.barrier();
  write_file_atomic(mine_, comm_.rank() == 0 ? text : header + "\n");
  fd_ = ::open(mine_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw Error(mine_, errno_message("cannot open the evaluation cache", errno));
}

EvalCache::~EvalCache() {
  if (fd_ >= 0) ::close(fd_);
}

const nlohmann::json* EvalCache::find(size_t block) const {
  auto it = blocks_.find(block);
  return it == blocks_.end() ? nullptr : &it->second;
}

void EvalCache::add(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fdatasync(fd_) != 0)
    throw Error(mine_, errno_message("cannot write the evaluation cache", errno));
}

void EvalCache::remove() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  comm_.barrier();
  if (comm_.rank() == 0)
    for (const auto& f : cache_files(path_)) ::unlink(f.c_str());
}

}  // namespace llmkit
