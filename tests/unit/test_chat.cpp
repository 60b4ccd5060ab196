// Chat data (lib/tok/chat.cpp): TRL's row formats, templates, loss masks; the templates' Jinja
// against Hugging Face's renderer (jinja2) when python3 has it.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "llmkit/chat.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"
#include "util.hpp"

using namespace llmkit;

namespace {

using test::chat_tokenizer;

// The trained tokens' text, runs joined by "|".
std::string trained_text(const ChatEncoder& enc, const ChatExample& ex) {
  const std::string shown = enc.show(ex);
  std::string out;
  for (size_t b = shown.find("[["); b != std::string::npos; b = shown.find("[[", b)) {
    const size_t e = shown.find("]]", b);
    out += (out.empty() ? "" : "|") + shown.substr(b + 2, e - b - 2);
    b = e;
  }
  return out;
}

}  // namespace

TEST_CASE("chat rows: TRL's formats, other fields kept, bad rows named", "[chat]") {
  ChatRow r = parse_chat_row(R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"source":"x"})", "f:1");
  CHECK(r.kind == ChatRow::Kind::conversation);
  CHECK(r.messages.size() == 2);
  CHECK(r.completion_from == 0);
  CHECK(r.extra == R"({"source":"x"})");
  r = parse_chat_row(R"({"prompt":[{"role":"user","content":"q"}],"completion":[{"role":"assistant","content":"a"}]})", "f:2");
  CHECK(r.kind == ChatRow::Kind::conversation);
  CHECK(r.completion_from == 1);
  r = parse_chat_row(R"({"prompt":"q ","completion":"a"})", "f:3");
  CHECK(r.kind == ChatRow::Kind::prompt_completion);
  r = parse_chat_row(R"({"text":"plain"})", "f:4");
  CHECK(r.kind == ChatRow::Kind::text);
  const std::pair<const char*, const char*> bad[] = {
      {"{\"messages\": [", "f:9: invalid JSON"},
      {"[1]", "a row is a JSON object"},
      {R"({"messages":{"role":"user"}})", "\"messages\" is not a list of messages"},
      {R"({"messages":[{"role":"robot","content":"x"}]})", "role 'robot'"},
      {R"({"messages":[{"role":"user"}]})", "\"messages\"[0] has no \"content\" string"},
      {R"({"prompt":"x"})", "a \"prompt\" without a \"completion\""},
      {R"({"prompt":"x","completion":[{"role":"assistant","content":"y"}]})", "both strings or both lists"},
      {R"({"question":"x"})", "no \"messages\", \"prompt\"/\"completion\" or \"text\""},
      {R"({"messages":[]})", "\"messages\" is empty"}};
  for (const auto& [line, want] : bad) {
    INFO(line);
    try {
      parse_chat_row(line, "f:9");
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.where() == "f:9");
      CHECK_THAT(e.where() + ": " + e.what(), Catch::Contains(want));
    }
  }
}

TEST_CASE("chat masks: assistant turns and their end marker, completions and </s>, never headers", "[chat]") {
  const Tokenizer& tok = chat_tokenizer();
  ChatEncoder enc(tok, ChatTemplate::named("chatml"));
  ChatExample ex = enc.encode(parse_chat_row(
      R"({"messages":[{"role":"system","content":"you are a helpful assistant"},{"role":"user","content":"say hello"},)"
      R"({"role":"assistant","content":"hello there"},{"role":"user","content":"add two and two"},)"
      R"({"role":"assistant","content":"four"}]})", "f:1"));
  CHECK(ex.tokens[0] == kEosId);
  CHECK(ex.trained[0] == 0);
  CHECK(trained_text(enc, ex) == "hello there<|im_end|>|four<|im_end|>");
  CHECK(enc.show(ex).find("<|im_start|>assistant\n[[hello there<|im_end|>]]\n<|im_start|>user") != std::string::npos);
  // The prompt's assistant turn is context, the completion's is trained.
  ex = enc.encode(parse_chat_row(R"({"prompt":[{"role":"user","content":"say hello"},{"role":"assistant","content":"hello"},)"
                                 R"({"role":"user","content":"again"}],"completion":[{"role":"assistant","content":"hello there"}]})", "f:2"));
  CHECK(trained_text(enc, ex) == "hello there<|im_end|>");
  // Strings: the completion and </s>; the prompt's trailing space goes with the completion.
  ex = enc.encode(parse_chat_row(R"({"prompt":"what is the capital of france ","completion":"paris"})", "f:3"));
  CHECK(trained_text(enc, ex) == " paris|</s>");
  ex = enc.encode(parse_chat_row(R"({"text":"two and two make four"})", "f:4"));
  CHECK(ex.trained_tokens() == ex.tokens.size() - 1);
  CHECK_THROWS_WITH(enc.encode(parse_chat_row(R"({"messages":[{"role":"user","content":"say hello"}]})", "f:5")),
                    Catch::Contains("nothing to train: no assistant message"));
  // An empty completion still trains the end of the turn (TRL does too).
  CHECK(trained_text(enc, enc.encode(parse_chat_row(R"({"prompt":"say hello","completion":""})", "f:6"))) == "</s>");
}

TEST_CASE("chat templates: llama2's turns, plain refuses conversations, markers are required", "[chat]") {
  const Tokenizer& tok = chat_tokenizer();
  ChatEncoder l2(tok, ChatTemplate::named("llama2"));
  ChatExample ex = l2.encode(parse_chat_row(
      R"({"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"say hello"},{"role":"assistant","content":" hello "}]})", "f:1"));
  CHECK(ex.tokens[0] == kBosId);
  CHECK(ex.tokens.back() == kEosId);
  CHECK(ex.trained.back() == 1);
  CHECK(l2.show(ex) == "<s>[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nsay hello [/INST][[ hello ]][[</s>]]");
  CHECK_THROWS_WITH(l2.encode(parse_chat_row(R"({"messages":[{"role":"assistant","content":"x"}]})", "f:2")),
                    Catch::Contains("in turn; message 0 is 'assistant'"));
  ChatEncoder plain(tok, ChatTemplate::named("plain"));
  CHECK_THROWS_WITH(plain.encode(parse_chat_row(R"({"messages":[{"role":"user","content":"x"}]})", "f:3")),
                    Catch::Contains("conversations need --template chatml or llama2"));
  CHECK_THROWS_AS(ChatTemplate::named("vicuna"), UsageError);
  CHECK_THROWS_WITH(ChatEncoder(chat_tokenizer(false), ChatTemplate::named("chatml")),
                    Catch::Contains("llm-tok train --special '<|im_start|>,<|im_end|>'"));
  // A prompt for generation ends where the assistant writes.
  ChatEncoder enc(tok, ChatTemplate::named("chatml"));
  ChatExample p;
  p.tokens = enc.encode_prompt({{"user", "say hello"}});
  p.trained.assign(p.tokens.size(), 0);
  CHECK(enc.show(p) == "</s><|im_start|>user\nsay hello<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("chat templates render as Hugging Face's Jinja does", "[chat]") {
  if (std::system("python3 -c 'import jinja2' 2>/dev/null") != 0) {
    WARN("SKIPPED: python3 without jinja2 (Debian: python3-jinja2)");
    return;
  }
  const Tokenizer& tok = chat_tokenizer();
  const std::string convo = R"([{"role":"system","content":"be brief"},{"role":"user","content":"say hello"},)"
                            R"({"role":"assistant","content":"hello there"},{"role":"user","content":"add two and two"},)"
                            R"({"role":"assistant","content":"four"}])";
  for (const char* name : {"chatml", "llama2"}) {
    INFO(name);
    ChatTemplate t = ChatTemplate::named(name);
    ChatEncoder enc(tok, t);
    ChatExample ex = enc.encode(parse_chat_row("{\"messages\":" + convo + "}", "f:1"));
    std::string ours = enc.show(ex), stripped;
    for (size_t i = 0; i < ours.size(); ++i) {  // without the [[ ]] marks
      if (ours.compare(i, 2, "[[") == 0 || ours.compare(i, 2, "]]") == 0) ++i;
      else stripped += ours[i];
    }
    const std::string dir = "/tmp/llmkit-test-jinja-" + std::to_string(::getpid());
    write_file_atomic(dir + ".tmpl", t.jinja());
    write_file_atomic(dir + ".json", convo);
    const std::string cmd = "python3 -c \"import jinja2, json, sys\n"
                            "def fail(m): raise Exception(m)\n"
                            "env = jinja2.Environment(); env.globals['raise_exception'] = fail\n"
                            "t = env.from_string(open(sys.argv[1]).read())\n"
                            "sys.stdout.write(t.render(messages=json.load(open(sys.argv[2])), bos_token='<s>', eos_token='</s>', "
                            "add_generation_prompt=False))\" " + dir + ".tmpl " + dir + ".json";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string theirs;
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p)) theirs.append(buf, n);
    CHECK(pclose(p) == 0);
    std::remove((dir + ".tmpl").c_str());
    std::remove((dir + ".json").c_str());
    CHECK(stripped == theirs);
  }
}
