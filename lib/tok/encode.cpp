// llm-tok encode: JSONL documents into token shards (llmkit, llm.c or Megatron layout), or ids
// as text; and llm-tok stats. See llmkit/tok.hpp.
#include <omp.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/shard.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/words.hpp"

namespace llmkit {

bool is_validation(const Document& doc, double fraction) {
  if (fraction <= 0) return false;
  std::string_view key = doc.has_id ? std::string_view(doc.id) : std::string_view(doc.text);
  uint64_t h = XXH3_64bits_withSeed(key.data(), key.size(), 0x76616c);
  return static_cast<double>(h) < fraction * 18446744073709551616.0;
}

namespace {

// One output file of documents in one of the three layouts.
class DocSink {
 public:
  virtual ~DocSink() = default;
  virtual void add(const uint32_t* ids, size_t n) = 0;
  virtual void finish() = 0;
};

class LlmkitSink : public DocSink {
 public:
  LlmkitSink(const std::string& path, uint64_t vocab, uint32_t bytes, uint64_t hash)
      : w_(path, vocab, bytes, hash) {}
  void add(const uint32_t* ids, size_t n) override { w_.add_document(ids, n); }
  void finish() override { w_.finish(); }

 private:
  ShardWriter w_;
};

// llm.c: 256 int32 header (magic 20240520 version 1 for u16 tokens, 20240801 version 7 for
// u32), token count in the third, tokens from byte 1024.
class LlmcSink : public DocSink {
 public:
  LlmcSink(const std::string& path, uint32_t bytes) : path_(path), bytes_(bytes) {
    out_ = OutputStream::open(path, false, true);
    out_->write(std::string(1024, '\0'));
  }
  void add(const uint32_t* ids, size_t n) override {
    pack_tokens(ids, n, bytes_, buf_);
    out_->write(buf_);
    tokens_ += n;
    if (tokens_ > INT32_MAX) throw Error(path_, "llm.c files hold at most 2^31-1 tokens: lower --shard-tokens");
  }
  void finish() override {
    int32_t header[256] = {};
    header[0] = bytes_ == 2 ? 20240520 : 20240801;
    header[1] = bytes_ == 2 ? 1 : 7;
    header[2] = static_cast<int32_t>(tokens_);
    out_->write_at(0, std::string_view(reinterpret_cast<const char*>(header), sizeof header));
    out_->commit();
  }

 private:
  std::string path_, buf_;
  uint32_t bytes_;
  uint64_t tokens_ = 0;
  std::unique_ptr<OutputStream> out_;
};

// Megatron-LM's MMapIndexedDataset: PREFIX.bin holds the tokens; PREFIX.idx the header
// "MMIDIDX\0\0", version u64 1, dtype code u8 (8 uint16, 4 int32), sequence count u64,
// document count u64 (sequences + 1), int32 sizes, int64 byte pointers, int64 document indices.
class MegatronSink : public DocSink {
 public:
  MegatronSink(const std::string& prefix, uint64_t vocab) : prefix_(prefix), bytes_(vocab < 65500 ? 2 : 4) {
    bin_ = OutputStream::open(prefix + ".bin", false, true);
  }
  void add(const uint32_t* ids, size_t n) override {
    if (n > INT32_MAX) throw Error(prefix_ + ".bin", "a document longer than 2^31-1 tokens");
    pack_tokens(ids, n, bytes_, buf_);  // int32 in Megatron's terms: the same bytes below 2^31
    pointers_.push_back(static_cast<int64_t>(offset_));
    sizes_.push_back(static_cast<int32_t>(n));
    bin_->write(buf_);
    offset_ += buf_.size();
  }
  void finish() override {
    std::string idx("MMIDIDX\0\0", 9);
    auto put = [&](const void* p, size_t n) { idx.append(static_cast<const char*>(p), n); };
    uint64_t version = 1, seqs = sizes_.size(), docs = seqs + 1;
    uint8_t code = bytes_ == 2 ? 8 : 4;
    put(&version, 8);
    put(&code, 1);
    put(&seqs, 8);
    put(&docs, 8);
    put(sizes_.data(), sizes_.size() * 4);
    put(pointers_.data(), pointers_.size() * 8);
    for (int64_t d = 0; d <= static_cast<int64_t>(seqs); ++d) put(&d, 8);
    bin_->commit();
    write_file_atomic(prefix_ + ".idx", idx);
  }

 private:
  std::string prefix_, buf_;
  uint32_t bytes_;
  uint64_t offset_ = 0;
  std::vector<int32_t> sizes_;
  std::vector<int64_t> pointers_;
  std::unique_ptr<OutputStream> bin_;
};

// The shards of one split ("train" or "val") of this rank, rolled over every --shard-tokens.
class SplitWriter {
 public:
  SplitWriter(const EncodeConfig& cfg, const Tokenizer& tok, std::string split, uint32_t bytes,
              Comm& comm)
      : cfg_(cfg), tok_(tok), split_(std::move(split)), bytes_(bytes), comm_(comm) {}
  void add(const std::vector<uint32_t>& ids) {
    if (!sink_) open();
    sink_->add(ids.data(), ids.size());
    tokens_ += ids.size();
    ++docs_;
    if (tokens_ >= static_cast<uint64_t>(cfg_.shard_tokens)) close();
  }
  void close() {
    if (!sink_) return;
    sink_->finish();
    sink_.reset();
    tokens_ = 0;
  }
  int shards() const { return shards_; }
  uint64_t docs() const { return docs_; }

 private:
  void open() {
    char name[64];
    if (comm_.size() > 1) snprintf(name, sizeof name, "%s-%05d-%05d", split_.c_str(), comm_.rank(), shards_);
    else snprintf(name, sizeof name, "%s-%05d", split_.c_str(), shards_);
    std::string base = cfg_.output + "/" + name;
    ++shards_;
    switch (cfg_.format) {
      case ShardFormat::llmkit:
        sink_ = std::make_unique<LlmkitSink>(base + ".tok", tok_.vocab_size(), bytes_, tok_.hash());
        break;
      case ShardFormat::llmc: sink_ = std::make_unique<LlmcSink>(base + ".bin", bytes_); break;
      case ShardFormat::megatron: sink_ = std::make_unique<MegatronSink>(base, tok_.vocab_size()); break;
    }
  }
  const EncodeConfig& cfg_;
  const Tokenizer& tok_;
  std::string split_;
  uint32_t bytes_;
  Comm& comm_;
  std::unique_ptr<DocSink> sink_;
  uint64_t tokens_ = 0, docs_ = 0;
  int shards_ = 0;
};

bool has_control_chars(std::string_view t) {
  for (unsigned char c : t)
    if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7F) return true;
  return false;
}

void make_dir(const std::string& dir) {
  std::string path;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      path = dir.substr(0, i);
      if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error(path, errno_message("cannot create directory", errno));
    }
  }
  if (!is_directory(dir)) throw Error(dir, "not a directory");
}

// Shards of an earlier run would be read with the new ones (in name order): refuse them.
void refuse_old_shards(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("train-", 0) == 0 || name.rfind("val-", 0) == 0)
      throw Error(dir, "already holds shards (" + name + "): give an empty or new directory");
  }
}

// Writes the held-back last document of each rank. Every document but the input's last goes
// where its hash sends it; the input's last (the held one of the last rank that has one) goes
// to the validation split when a fraction was asked for and no other document went there, to
// the training split when no other went there, else where its hash sends it. One document
// alone cannot make both splits: it trains, and a warning says so.
void settle_last_document(std::vector<uint32_t>& held, bool have_held, bool held_val, double fraction,
                          SplitWriter& train, SplitWriter& val, Comm& comm) {
  const std::vector<int64_t> holders = comm.allgather(have_held ? 1 : 0);
  int last = -1;
  for (int r = 0; r < comm.size(); ++r)
    if (holders[static_cast<size_t>(r)]) last = r;
  if (have_held && comm.rank() != last) (held_val ? val : train).add(held);
  const int64_t n_val = comm.allreduce_sum(static_cast<int64_t>(val.docs()));
  const int64_t n_train = comm.allreduce_sum(static_cast<int64_t>(train.docs()));
  if (last < 0) return;  // no documents at all
  if (comm.rank() == last) {
    if (fraction > 0 && n_val == 0 && n_train > 0) held_val = true;
    else if (n_train == 0) held_val = false;
    (held_val ? val : train).add(held);
  }
  if (fraction > 0 && n_val == 0 && n_train == 0 && comm.rank() == 0)
    LLMKIT_WARN("one document only: it goes to the training shards, and there is no validation shard "
                "(--val-fraction needs two documents or more)");
}

}  // namespace

void run_encode(const std::vector<std::string>& inputs, const EncodeConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  Tokenizer tok(cfg.model);
  const uint64_t vocab = tok.vocab_size();
  uint32_t bytes = cfg.token_bytes ? cfg.token_bytes : token_bytes_for(vocab);
  if (bytes == 2 && vocab > 65536)
    throw Error(cfg.model, "a vocabulary of " + std::to_string(vocab) +
                               " does not fit 16-bit tokens (--dtype u32)");
  const int delimiter = cfg.bos ? tok.bos_id() : tok.eos_id();
  if (!cfg.ids_text && delimiter < 0)
    throw Error(cfg.model, std::string("the model has no ") + (cfg.bos ? "<s>" : "</s>") +
                               " id to separate documents with");
  if (!(cfg.val_fraction >= 0 && cfg.val_fraction < 1)) throw UsageError("--val-fraction must be in [0, 1)");
  if (cfg.shard_tokens < 1) throw UsageError("--shard-tokens must be at least 1");

  std::vector<std::string> files = expand_inputs(inputs.empty() ? std::vector<std::string>{"-"} : inputs);
  if (files.empty()) throw Error(inputs.empty() ? "" : inputs[0], "no input files found");
  auto parts = split_inputs(files, comm.rank(), comm.size(), splittable_input);
  DocumentSource source(parts, cfg.source, stats);

  std::unique_ptr<OutputStream> ids_out;
  std::unique_ptr<SplitWriter> train, val;
  if (cfg.ids_text) {
    ids_out = open_rank_output(cfg.output, false, comm);
  } else {
    if (cfg.output.empty() || cfg.output == "-") throw UsageError("encode: give -o DIR for the shards");
    if (comm.rank() == 0) {
      make_dir(cfg.output);
      refuse_old_shards(cfg.output);
    }
    comm.barrier();
    train = std::make_unique<SplitWriter>(cfg, tok, "train", bytes, comm);
    val = std::make_unique<SplitWriter>(cfg, tok, "val", bytes, comm);
  }

  Progress progress("documents", source.total_bytes());
  std::vector<std::vector<uint32_t>> ids;
  std::vector<std::string> lines;
  std::vector<Stats> thread_stats(static_cast<size_t>(omp_get_max_threads()));
  const uint32_t unk = static_cast<uint32_t>(tok.unk_id());
  int64_t tokens = 0;
  std::string buf;
  // This rank's last document is held back: the input's last one goes to whichever split would
  // otherwise be empty (see settle_last_document), so a small corpus still gets both.
  std::vector<uint32_t> held;
  bool have_held = false, held_val = false;
  for_each_batch(
      source, cfg.source.jsonl, cfg.batch, progress,
      [&](size_t n) {
        ids.resize(n);
        if (cfg.ids_text) lines.assign(n, std::string());
      },
      [&](size_t i, SourceDoc& sd, int thread) {
        Stats& ts = thread_stats[static_cast<size_t>(thread)];
        const std::string& text = sd.doc.text;
        tok.encode(text, ids[i]);
        ts.add("bytes_text", static_cast<int64_t>(text.size()));
        ts.add("unk_tokens", std::count(ids[i].begin(), ids[i].end(), unk));
        if (sd.doc.invalid_utf8) ts.add("docs_invalid_utf8");
        if (has_control_chars(text)) ts.add("docs_control_chars");
        if (cfg.ids_text) {
          std::string& l = lines[i];
          char num[16];
          for (size_t k = 0; k < ids[i].size(); ++k) {
            int len = snprintf(num, sizeof num, k ? " %u" : "%u", ids[i][k]);
            l.append(num, static_cast<size_t>(len));
          }
          l += '\n';
        } else if (cfg.bos) {
          ids[i].insert(ids[i].begin(), static_cast<uint32_t>(delimiter));
        } else {
          ids[i].push_back(static_cast<uint32_t>(delimiter));
        }
      },
      [&](std::vector<SourceDoc>& batch) {
        buf.clear();
        for (size_t i = 0; i < batch.size(); ++i) {
          if (!batch[i].ok()) continue;
          stats.add("docs_in");
          tokens += static_cast<int64_t>(ids[i].size());
          if (cfg.ids_text) {
            buf += lines[i];
            continue;
          }
          if (have_held) (held_val ? val : train)->add(held);
          held.swap(ids[i]);
          have_held = true;
          held_val = is_validation(batch[i].doc, cfg.val_fraction);
        }
        if (ids_out) ids_out->write(buf);
      });
  source.finish();
  for (auto& ts : thread_stats) stats.merge(ts);
  stats.add("tokens", tokens);
  if (ids_out) {
    ids_out->commit();
  } else {
    settle_last_document(held, have_held, held_val, cfg.val_fraction, *train, *val, comm);
    train->close();
    val->close();
    stats.add("docs_train", static_cast<int64_t>(train->docs()));
    stats.add("docs_val", static_cast<int64_t>(val->docs()));
    stats.add("shards", train->shards() + val->shards());
  }
  progress.finish();
}

// ---- llm-tok stats -------------------------------------------------------------------------------

namespace {
struct LangCount {
  int64_t docs = 0, tokens = 0, units = 0;  // units: words, or characters in CJK
};

// The "lang" field's value, when the document has one as a JSON string.
std::string doc_lang(const Document& doc) {
  for (const auto& [key, value] : doc.fields)
    if (key == "\"lang\"" && value.size() >= 2 && value.front() == '"') return std::string(value.substr(1, value.size() - 2));
  return "";
}
}  // namespace

void run_tok_stats(const std::vector<std::string>& inputs, const TokStatsConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  if (comm.size() > 1) throw UsageError("llm-tok stats runs in one process");
  Tokenizer tok(cfg.model);
  std::vector<std::string> files = expand_inputs(inputs.empty() ? std::vector<std::string>{"-"} : inputs);
  if (files.empty()) throw Error(inputs.empty() ? "" : inputs[0], "no input files found");
  auto parts = split_inputs(files, comm.rank(), comm.size(), splittable_input);
  DocumentSource source(parts, cfg.source, stats);
  Progress progress("documents", source.total_bytes());
  std::vector<std::vector<uint32_t>> ids;
  std::vector<int64_t> units;
  std::vector<std::string> langs;
  std::map<std::string, LangCount> by_lang;
  std::vector<int64_t> lengths;
  int64_t bytes = 0, unk = 0;
  const uint32_t unk_id = static_cast<uint32_t>(tok.unk_id());
  for_each_batch(
      source, cfg.source.jsonl, cfg.batch, progress,
      [&](size_t n) {
        ids.resize(n);
        units.assign(n, 0);
        langs.assign(n, std::string());
      },
      [&](size_t i, SourceDoc& sd, int) {
        tok.encode(sd.doc.text, ids[i]);
        langs[i] = doc_lang(sd.doc);
        if (!langs[i].empty())
          units[i] = text::is_cjk_language(langs[i])
                         ? static_cast<int64_t>(text::count_code_points(sd.doc.text))
                         : static_cast<int64_t>(text::split_words(sd.doc.text, langs[i]).size());
      },
      [&](std::vector<SourceDoc>& batch) {
        for (size_t i = 0; i < batch.size(); ++i) {
          if (!batch[i].ok()) continue;
          lengths.push_back(static_cast<int64_t>(ids[i].size()));
          bytes += static_cast<int64_t>(batch[i].doc.text.size());
          unk += std::count(ids[i].begin(), ids[i].end(), unk_id);
          if (!langs[i].empty()) {
            LangCount& lc = by_lang[langs[i]];
            ++lc.docs;
            lc.tokens += static_cast<int64_t>(ids[i].size());
            lc.units += units[i];
          }
        }
      });
  source.finish();
  progress.finish();
  int64_t tokens = 0;
  for (int64_t l : lengths) tokens += l;
  std::sort(lengths.begin(), lengths.end());
  auto pct = [&](double p) {
    return lengths.empty() ? 0 : lengths[static_cast<size_t>(p * static_cast<double>(lengths.size() - 1))];
  };
  stats.add("docs_in", static_cast<int64_t>(lengths.size()));
  stats.add("tokens", tokens);
  stats.add("bytes_text", bytes);
  stats.add("unk_tokens", unk);
  const double docs = std::max<double>(1, static_cast<double>(lengths.size()));
  const double t = std::max<double>(1, static_cast<double>(tokens));
  std::string out;
  char line[256];
  if (cfg.json) {
    snprintf(line, sizeof line,
             "{\"documents\":%zu,\"tokens\":%lld,\"tokens_per_document\":{\"mean\":%.2f,\"p50\":%lld,"
             "\"p90\":%lld,\"max\":%lld},\"bytes_per_token\":%.4f,\"unknown_rate\":%.6f,\"languages\":{",
             lengths.size(), static_cast<long long>(tokens), static_cast<double>(tokens) / docs,
             static_cast<long long>(pct(0.5)), static_cast<long long>(pct(0.9)),
             static_cast<long long>(lengths.empty() ? 0 : lengths.back()), static_cast<double>(bytes) / t,
             static_cast<double>(unk) / t);
    out += line;
    bool first = true;
    for (const auto& [lang, lc] : by_lang) {
      if (!first) out += ',';
      append_json_string(out, lang);
      snprintf(line, sizeof line, ":{\"documents\":%lld,\"tokens\":%lld,\"fertility\":%.4f,\"unit\":\"%s\"}",
               static_cast<long long>(lc.docs),
               static_cast<long long>(lc.tokens),
               static_cast<double>(lc.tokens) / std::max<double>(1, static_cast<double>(lc.units)),
               text::is_cjk_language(lang) ? "character" : "word");
      out += line;
      first = false;
    }
    out += "}}\n";
  } else {
    snprintf(line, sizeof line, "documents            %zu\ntokens               %lld\n", lengths.size(),
             static_cast<long long>(tokens));
    out += line;
    snprintf(line, sizeof line, "tokens per document  mean %.1f, p50 %lld, p90 %lld, max %lld\n",
             static_cast<double>(tokens) / docs, static_cast<long long>(pct(0.5)),
             static_cast<long long>(pct(0.9)), static_cast<long long>(lengths.empty() ? 0 : lengths.back()));
    out += line;
    snprintf(line, sizeof line, "bytes per token      %.3f\nunknown-token rate   %.6f\n",
             static_cast<double>(bytes) / t, static_cast<double>(unk) / t);
    out += line;
    if (!by_lang.empty()) out += "\nlanguage  documents      tokens  fertility\n";
    for (const auto& [lang, lc] : by_lang) {
      snprintf(line, sizeof line, "%-8s  %9lld  %10lld  %9.3f tokens/%s\n", lang.c_str(),
               static_cast<long long>(lc.docs), static_cast<long long>(lc.tokens),
               static_cast<double>(lc.tokens) / std::max<double>(1, static_cast<double>(lc.units)),
               text::is_cjk_language(lang) ? "character" : "word");
      out += line;
    }
  }
  std::fputs(out.c_str(), stdout);
}

}  // namespace llmkit
