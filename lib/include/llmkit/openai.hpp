// OpenAI's HTTP API as llm-serve speaks it (lib/serve/openai.cpp): requests of
// /v1/completions and /v1/chat/completions read and checked field by field, their answers and
// stream chunks written, and errors in OpenAI's shape. No I/O here: the server (serve.cpp)
// moves the bytes.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/engine.hpp"
#include "llmkit/scheduler.hpp"

namespace llmkit {

class Tokenizer;
class ChatEncoder;

// An error answered with an HTTP status and OpenAI's body:
// {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "");
  std::string body() const;
};

// A generation request, its prompts tokenized.
struct ApiRequest {
  bool chat = false;
  std::string model;  // "" when not given
  std::vector<std::vector<int32_t>> prompts;
  SamplingParams params;  // n, stop, seed, max_tokens and the sampling settings
  bool seeded = false;    // a seed was given: reproducible
  int top_logprobs = -1;  // -1: no logprobs
  bool stream = false, include_usage = false;
};

// A request body as a JSON object, else an ApiError (400).
nlohmann::json parse_body(const std::string& body);

// Reads a request body; an ApiError (400) names the field that is wrong. Chat requests need
// `chat_encoder` (else 400: the model has no chat template); its end of turn becomes a stop
// string. A prompt with its max_tokens beyond `context` is a 400 with code
// context_length_exceeded. max_tokens defaults to 16 for completions (as OpenAI's) and to the
// rest of the context for chat; n is at most max_n.
ApiRequest parse_request_object(const nlohmann::json& body, bool chat, const Tokenizer& tok, const ChatEncoder* chat_encoder,
                                int context, int max_n);
inline ApiRequest parse_request(const std::string& body, bool chat, const Tokenizer& tok, const ChatEncoder* chat_encoder,
                                int context, int max_n) {
  return parse_request_object(parse_body(body), chat, tok, chat_encoder, context, max_n);
}

// The text a token stands for in logprobs ("▁" as a space; a byte piece as its byte).
std::string token_text(const Tokenizer& tok, int32_t id);

// One choice of an answer as it is built up from the scheduler's updates.
struct ApiChoice {
  std::string text, finish;
  std::vector<TokenLogprob> logprobs;
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  bool sent_role = false;  // streaming chat: the first delta (the role) went out
};

// The whole answer (stream off). `id` is "cmpl-..." or "chatcmpl-...".
nlohmann::json api_response(const ApiRequest& r, const std::string& id, const std::string& model, int64_t created,
                            const std::vector<ApiChoice>& choices, const Tokenizer& tok);
// usage of the choices: each prompt's tokens counted once (n samples share them).
nlohmann::json api_usage(const ApiRequest& r, const std::vector<ApiChoice>& choices);
// A stream chunk for choice `index`: the delta (text, logprobs) and, when finish is not empty,
// the finish reason.
nlohmann::json api_chunk(const ApiRequest& r, const std::string& id, const std::string& model, int64_t created, int index,
                         const std::string& text, const std::vector<TokenLogprob>& logprobs, const std::string& finish,
                         bool role, const Tokenizer& tok);

}  // namespace llmkit
