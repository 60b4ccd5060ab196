// OpenAI's request and answer JSON (lib/serve/openai.cpp): fields read with their defaults and
// ranges, the field named when one is wrong, the context checked, chat prompts rendered with the
// template's end of turn as a stop, usage counting a prompt once for its n samples.
#include <catch2/catch.hpp>

#include "llmkit/chat.hpp"
#include "llmkit/openai.hpp"
#include "llmkit/tok.hpp"
#include "util.hpp"

using namespace llmkit;
using nlohmann::json;

namespace {

ApiError error_of(const std::string& body, bool chat = false, int context = 64, int max_n = 4) {
  const Tokenizer& tok = test::chat_tokenizer(true);
  const ChatEncoder enc(tok, ChatTemplate::named("chatml"));
  try {
    parse_request(body, chat, tok, &enc, context, max_n);
  } catch (const ApiError& e) {
    return e;
  }
  FAIL("no error for " << body);
  return ApiError(0, "");
}

}  // namespace

TEST_CASE("Completion requests: prompts, defaults, ranges and the field named when wrong", "[openai]") {
  const Tokenizer& tok = test::chat_tokenizer(true);
  std::vector<uint32_t> ids;
  tok.encode("say hello", ids);
  ApiRequest r = parse_request(R"({"prompt": "say hello", "unknown": [1, 2], "top_k": null})", false, tok, nullptr, 64, 4);
  REQUIRE(r.prompts.size() == 1);
  CHECK(r.prompts[0].front() == tok.eos_id());  // the document separator first, as llm-eval's prompts
  CHECK(std::vector<int32_t>(r.prompts[0].begin() + 1, r.prompts[0].end()) == std::vector<int32_t>(ids.begin(), ids.end()));
  CHECK(r.params.max_tokens == 16);
  CHECK(r.params.temperature == 1.0);
  CHECK(r.params.top_k == 0);
  CHECK(r.params.n == 1);
  CHECK(r.top_logprobs == -1);
  CHECK_FALSE(r.seeded);
  CHECK(r.params.stop_at_eos);

  r = parse_request(R"({"prompt": [[5, 6, 7], "a"], "max_tokens": 3, "temperature": 0, "top_k": -1, "stop": "x", "seed": 9,
                        "n": 2, "logprobs": 2, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
                        "presence_penalty": 0.5, "frequency_penalty": -0.5, "min_p": 0.1})",
                    false, tok, nullptr, 64, 4);
  CHECK(r.prompts.size() == 2);
  CHECK(r.prompts[0] == std::vector<int32_t>{5, 6, 7});  // token ids as given
  CHECK(r.params.max_tokens == 3);
  CHECK(r.params.temperature == 0);
  CHECK(r.params.stop == std::vector<std::string>{"x"});
  CHECK(r.seeded);
  CHECK(r.params.seed == 9);
  CHECK(r.params.n == 2);
  CHECK(r.top_logprobs == 2);
  CHECK_FALSE(r.params.stop_at_eos);
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.params.presence_penalty == 0.5);
  CHECK(r.params.frequency_penalty == -0.5);
  CHECK(r.params.min_p == Approx(0.1));

  struct Bad {
    const char* body;
    const char* param;
  };
  for (const Bad& b : std::vector<Bad>{{R"({"prompt": 3})", "prompt"},
                                       {R"({"max_tokens": 3})", "prompt"},
                                       {R"({"prompt": []})", "prompt"},
                                       {R"({"prompt": [1, "a"]})", "prompt"},
                                       {R"({"prompt": [1, 99999]})", "prompt"},
                                       {R"({"prompt": "a", "max_tokens": 0})", "max_tokens"},
                                       {R"({"prompt": "a", "max_tokens": 2.5})", "max_tokens"},
                                       {R"({"prompt": "a", "temperature": "0"})", "temperature"},
                                       {R"({"prompt": "a", "top_p": 0})", "top_p"},
                                       {R"({"prompt": "a", "n": 5})", "n"},
                                       {R"({"prompt": "a", "stop": [1]})", "stop"},
                                       {R"({"prompt": "a", "logprobs": 21})", "logprobs"},
                                       {R"({"prompt": "a", "stream_options": {"include_usage": true}})", "stream_options"},
                                       {R"({"prompt": "a", "stream": "yes"})", "stream"},
                                       {R"({"prompt": "a", "echo": true})", "echo"},
                                       {R"({"prompt": "a", "model": 3})", "model"}}) {
    INFO(b.body);
    const ApiError e = error_of(b.body);
    CHECK(e.status == 400);
    CHECK(e.param == b.param);
    CHECK(json::parse(e.body())["error"]["param"] == b.param);
  }
  CHECK(error_of("{\"prompt\": ").param.empty());  // malformed JSON: no field to name
  CHECK(error_of("[1]").status == 400);
  // The context: prompt + max_tokens, never cut.
  const ApiError e = error_of(R"({"prompt": [1, 2, 3, 4], "max_tokens": 61})");
  CHECK(e.code == "context_length_exceeded");
  CHECK(e.param == "max_tokens");
  CHECK(std::string(e.what()).find("maximum context length is 64 tokens") != std::string::npos);
  CHECK(parse_request(R"({"prompt": [1, 2, 3, 4], "max_tokens": 60})", false, tok, nullptr, 64, 4).params.max_tokens == 60);
}

TEST_CASE("Chat requests: the template's prompt, its end of turn a stop, the rest of the context by default", "[openai]") {
  const Tokenizer& tok = test::chat_tokenizer(true);
  const ChatEncoder enc(tok, ChatTemplate::named("chatml"));
  const std::string body = R"({"messages": [{"role": "developer", "content": "be brief"},
                                            {"role": "user", "content": [{"type": "text", "text": "say "}, {"type": "text", "text": "hello"}]}]})";
  const ApiRequest r = parse_request(body, true, tok, &enc, 200, 4);
  const std::vector<int32_t> want = enc.encode_prompt({{"system", "be brief"}, {"user", "say hello"}});
  CHECK(r.prompts.at(0) == want);
  CHECK(r.params.stop == std::vector<std::string>{"<|im_end|>"});
  CHECK(r.params.max_tokens == 200 - static_cast<int>(want.size()));
  CHECK(parse_request(R"({"messages": [{"role": "user", "content": "a"}], "logprobs": true, "top_logprobs": 3})", true, tok, &enc, 200, 4)
            .top_logprobs == 3);
  CHECK(error_of(R"({"messages": [{"role": "user", "content": "a"}], "top_logprobs": 3})", true).param == "top_logprobs");
  CHECK(error_of(R"({"messages": [{"role": "king", "content": "a"}]})", true).param == "messages[0].role");
  CHECK(error_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true).param == "messages[0].content");
  CHECK(error_of(R"({"messages": {}})", true).param == "messages");
  // Without a template, chat is refused with a 400.
  try {
    parse_request(R"({"messages": [{"role": "user", "content": "a"}]})", true, tok, nullptr, 200, 4);
    FAIL("no error");
  } catch (const ApiError& e) {
    CHECK(e.status == 400);
  }
}

TEST_CASE("Answers: usage counts a prompt once for its samples; chunks and errors in OpenAI's shape", "[openai]") {
  const Tokenizer& tok = test::chat_tokenizer(true);
  ApiRequest r;
  r.params.n = 2;
  r.prompts = {{1, 2, 3}, {4, 5}};
  std::vector<ApiChoice> choices(4);
  for (size_t i = 0; i < 4; ++i) {
    choices[i].prompt_tokens = i < 2 ? 3 : 2;
    choices[i].cached_tokens = i < 2 ? 0 : 1;
    choices[i].completion_tokens = static_cast<int>(i) + 1;
    choices[i].text = "t" + std::to_string(i);
    choices[i].finish = "length";
  }
  const json u = api_usage(r, choices);
  CHECK(u["prompt_tokens"] == 5);
  CHECK(u["completion_tokens"] == 10);
  CHECK(u["total_tokens"] == 15);
  CHECK(u["prompt_tokens_details"]["cached_tokens"] == 1);
  const json whole = api_response(r, "cmpl-1", "m", 7, choices, tok);
  CHECK(whole["object"] == "text_completion");
  CHECK(whole["choices"][3]["text"] == "t3");
  CHECK(whole["choices"][3]["index"] == 3);
  CHECK(whole["choices"][0]["logprobs"].is_null());
  r.chat = true;
  const json first = api_chunk(r, "chatcmpl-1", "m", 7, 1, "", {}, "", true, tok);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", ""}});
  CHECK(first["choices"][0]["finish_reason"].is_null());
  const json last = api_chunk(r, "chatcmpl-1", "m", 7, 1, "", {}, "stop", false, tok);
  CHECK(last["choices"][0]["delta"] == json::object());
  CHECK(last["choices"][0]["finish_reason"] == "stop");
  const json body = json::parse(ApiError(429, "busy").body());
  CHECK(body["error"]["type"] == "rate_limit_error");
  CHECK(body["error"]["message"] == "busy");
  CHECK(body["error"]["param"].is_null());
  // A byte piece's text is its byte; "▁" a space.
  const int byte_a = tok.piece_id("<0x41>");
  REQUIRE(byte_a >= 0);
  CHECK(token_text(tok, byte_a) == "A");
}
