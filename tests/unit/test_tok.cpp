// The tokenizer (lib/tok/tokenizer.cpp): training from JSONL, fixed special ids, lossless round
// trips through byte fallback, bad model files; the validation split.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/tok.hpp"

using namespace llmkit;

namespace {

// A model trained once for the tests below, on generated English and Chinese lines.
const Tokenizer& test_tokenizer() {
  static std::string dir = "/tmp/llmkit-test-tok-" + std::to_string(::getpid());
  static std::unique_ptr<Tokenizer> tok = [] {
    std::mt19937_64 rng(5);
    const char* words[] = {"the", "data", "model", "token", "train", "shard", "value", "of", "and", "in"};
    const char* han[] = {"数", "据", "模", "型", "训", "练", "的", "是"};
    std::string jsonl;
    for (int d = 0; d < 200; ++d) {
      std::string text;
      for (int l = 0; l < 5; ++l) {
        for (int w = 0; w < 12; ++w) text += std::string(words[rng() % 10]) + (w < 11 ? " " : "");
        text += "\\n";
        for (int c = 0; c < 10; ++c) text += han[rng() % 8];
        text += "\\n";
      }
      jsonl += "{\"text\":\"" + text + "\"}\n";
    }
    std::string input = dir + ".jsonl", model = dir + ".model";
    write_file_atomic(input, jsonl);
    TrainConfig cfg;
    cfg.output = model;
    cfg.vocab_size = 400;
    cfg.sample = 0;
    cfg.specials = {"<|im_start|>", "<|im_end|>"};
    Stats stats;
    train_tokenizer({input}, cfg, stats);
    std::remove(input.c_str());
    auto t = std::make_unique<Tokenizer>(model);  // keeps the model in memory
    std::remove(model.c_str());
    return t;
  }();
  return *tok;
}

std::vector<uint32_t> ids_of(std::string_view s) {
  std::vector<uint32_t> ids;
  test_tokenizer().encode(s, ids);
  return ids;
}

}  // namespace

TEST_CASE("Trained models have the fixed special ids", "[tok]") {
  const Tokenizer& tok = test_tokenizer();
  CHECK(tok.vocab_size() == 400);
  CHECK(tok.unk_id() == kUnkId);
  CHECK(tok.bos_id() == kBosId);
  CHECK(tok.eos_id() == kEosId);
  CHECK(tok.pad_id() == kPadId);
  CHECK(tok.piece(4) == "<|im_start|>");
  CHECK(tok.piece(5) == "<|im_end|>");
  auto ids = ids_of("say <|im_start|>hi<|im_end|>");  // specials are single tokens inside text
  CHECK(std::count(ids.begin(), ids.end(), 4u) == 1);
  CHECK(std::count(ids.begin(), ids.end(), 5u) == 1);
}

TEST_CASE("Text round-trips through ids, unseen characters through byte fallback", "[tok]") {
  const Tokenizer& tok = test_tokenizer();
  for (std::string s : {"the data model", "the  data\tmodel\nin shard", "数据模型的训练", "Zürich 🎉 ∑ naïve",
                        "bell \a escape \x1b[31m", "digits 1234567", "trailing space "}) {
    auto ids = ids_of(s);
    CHECK(tok.decode(ids.data(), ids.size()) == s);
  }
  auto ids = ids_of("🎉");
  CHECK(ids.size() >= 4);  // four UTF-8 bytes, each a byte token
  for (uint32_t id : ids) CHECK(id != static_cast<uint32_t>(kUnkId));
  CHECK(ids_of("") .empty());
}

TEST_CASE("A file that is neither a SentencePiece model nor a vocab.txt is an error naming it", "[tok]") {
  std::string path = "/tmp/llmkit-test-notmodel-" + std::to_string(::getpid());
  write_file_atomic(path, "{\"text\": \"hello\"}\n");
  CHECK_THROWS_WITH(Tokenizer(path), Catch::Contains("neither a SentencePiece model nor a WordPiece vocab.txt"));
  std::remove(path.c_str());
  CHECK_THROWS_AS(Tokenizer(path), Error);
}

TEST_CASE("The validation split is a deterministic share of documents by id", "[tok]") {
  int val = 0;
  for (int i = 0; i < 20000; ++i) {
    Document d;
    d.id = "doc-" + std::to_string(i);
    d.has_id = true;
    bool v = is_validation(d, 0.1);
    CHECK(v == is_validation(d, 0.1));
    if (v) CHECK(is_validation(d, 0.2));  // a larger fraction keeps the smaller one's documents
    val += v;
  }
  CHECK(val > 1800);
  CHECK(val < 2200);
  Document d;
  d.text = "no id";
  CHECK_FALSE(is_validation(d, 0.0));
}
