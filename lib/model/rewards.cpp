// Rewards for reinforcement learning; see llmkit/rewards.hpp.
#include "llmkit/rewards.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <regex>
#include <thread>

#include "llmkit/error.hpp"
#include "llmkit/eval.hpp"

namespace llmkit {

std::string last_boxed(const std::string& text) {
  const size_t at = text.rfind("\\boxed{");
  if (at == std::string::npos) return "";
  int depth = 1;
  const size_t begin = at + 7;
  for (size_t i = begin; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return text.substr(begin, i - begin);
  }
  return "";  // unbalanced: no answer
}

namespace {

// The field of a row as text (a number's JSON form), "" when absent.
std::string field_text(const nlohmann::json& row, const std::string& field) {
  if (!row.is_object() || !row.contains(field)) return "";
  const auto& v = row[field];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// GSM8K's answer of a text: "#### N" when there is one, else the last number.
std::string gsm8k_answer(const std::string& text) {
  const std::string strict = extract_strict(text);
  return normalize_answer(strict != "[invalid]" ? strict : extract_flexible(text));
}

class RuleReward final : public RewardFunction {
 public:
  RuleReward(std::string name, std::string kind, std::string arg) : name_(std::move(name)), kind_(std::move(kind)), arg_(std::move(arg)) {
    if (kind_ == "regex") {
      try {
        re_ = std::regex(arg_, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        throw UsageError("--reward " + name_ + ": not a regular expression (" + e.what() + ")");
      }
    }
  }
  const std::string& name() const override { return name_; }
  std::vector<double> score(const std::vector<RewardInput>& in) override {
    std::vector<double> r(in.size(), 0.0);
    for (size_t i = 0; i < in.size(); ++i) {
      const std::string& resp = in[i].response;
      if (kind_ == "regex") {
        r[i] = std::regex_search(resp, re_) ? 1.0 : 0.0;
        continue;
      }
      const std::string ref = field_text(in[i].row, arg_);
      if (ref.empty()) throw Error(name_, "the data row has no \"" + arg_ + "\" to compare with");
      if (kind_ == "exact") {
        const std::string got = gsm8k_answer(resp);
        r[i] = got != "[invalid]" && got == gsm8k_answer(ref) ? 1.0 : 0.0;
      } else {  // boxed
        const std::string got = last_boxed(resp), want = last_boxed(ref);
        r[i] = !got.empty() && normalize_answer(got) == normalize_answer(want.empty() ? ref : want) ? 1.0 : 0.0;
      }
    }
    return r;
  }

 private:
  std::string name_, kind_, arg_;
  std::regex re_;
};

// Writes all of `data` to fd (a pipe), then closes it; SIGPIPE blocked in this thread, so a
// reader that left gives EPIPE here instead of killing the process.
void write_all_and_close(int fd, const std::string& data, int* error) {
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

class CommandReward final : public RewardFunction {
 public:
  explicit CommandReward(std::string cmd) : cmd_(std::move(cmd)), name_("cmd:" + cmd_) {
    if (cmd_.empty()) throw UsageError("--reward-cmd: an empty command");
  }
  const std::string& name() const override { return name_; }
  std::vector<double> score(const std::vector<RewardInput>& in) override {
    std::string input;
    for (const RewardInput& x : in) {
      nlohmann::json j = x.row.is_object() ? x.row : nlohmann::json::object();
      j["prompt"] = x.prompt;
      j["response"] = x.response;
      j["stopped"] = x.stopped;
      input += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) throw Error(name_, "cannot make pipes");
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(name_, std::string("cannot fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the command gets the default signal handling
      ::execl("/bin/sh", "sh", "-c", cmd_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    int write_error = 0;
    std::thread writer(write_all_and_close, to_child[1], std::cref(input), &write_error);
    std::string output;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(from_child[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      output.append(buf, static_cast<size_t>(n));
    }
    ::close(from_child[0]);
    writer.join();
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) throw Error(name_, "was killed by signal " + std::to_string(WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0) throw Error(name_, "exited with status " + std::to_string(WEXITSTATUS(status)));
    if (write_error != 0) throw Error(name_, "did not read all its input (" + std::string(std::strerror(write_error)) + ")");
    std::vector<double> r;
    size_t at = 0;
    while (at < output.size()) {
      size_t end = output.find('\n', at);
      if (end == std::string::npos) end = output.size();
      std::string line = output.substr(at, end - at);
      at = end + 1;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
      char* stop = nullptr;
      errno = 0;
      const double v = std::strtod(line.c_str(), &stop);
      if (line.empty() || *stop != '\0' || errno != 0 || !std::isfinite(v))
        throw Error(name_, "wrote '" + line.substr(0, 60) + "' on line " + std::to_string(r.size() + 1) + ": one number a line is its output");
      r.push_back(v);
    }
    if (r.size() != in.size())
      throw Error(name_, "wrote " + std::to_string(r.size()) + " numbers for " + std::to_string(in.size()) + " rows");
    return r;
  }

 private:
  std::string cmd_, name_;
};

}  // namespace

std::unique_ptr<RewardFunction> make_rule_reward(const std::string& spec) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon), arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "exact" || kind == "boxed") return std::make_unique<RuleReward>("rule:" + spec, kind, arg.empty() ? "answer" : arg);
  if (kind == "regex") {
    if (arg.empty()) throw UsageError("--reward rule:regex:PATTERN needs a pattern");
    return std::make_unique<RuleReward>("rule:" + spec, kind, arg);
  }
  throw UsageError("--reward rule:" + spec + ": no such rule (exact, boxed, regex:PATTERN)");
}

std::unique_ptr<RewardFunction> make_command_reward(const std::string& cmd) { return std::make_unique<CommandReward>(cmd); }

double RewardMix::memory_bytes() const {
  double b = 0;
  for (const auto& [f, w] : parts_) b += f->memory_bytes();
  return b;
}

void RewardMix::add(std::unique_ptr<RewardFunction> f, double weight) { parts_.emplace_back(std::move(f), weight); }

std::vector<double> RewardMix::score(const std::vector<RewardInput>& inputs, std::vector<std::pair<std::string, double>>* means) {
  std::vector<double> total(inputs.size(), 0.0);
  if (means) means->clear();
  for (auto& [f, w] : parts_) {
    const std::vector<double> r = f->score(inputs);
    double sum = 0;
    for (size_t i = 0; i < r.size(); ++i) {
      total[i] += w * r[i];
      sum += r[i];
    }
    if (means) means->emplace_back(f->name(), inputs.empty() ? 0.0 : sum / static_cast<double>(inputs.size()));
  }
  return total;
}

}  // namespace llmkit
