// Rewards for llm-ppo (lib/model/rewards.cpp): the rules against hand-made cases, the external
// command's protocol and every way it can fail, weighted mixes; GRPO's advantages and losses.
#include <catch2/catch.hpp>

#include <cmath>

#include "llmkit/error.hpp"
#include "llmkit/rl.hpp"
#include "llmkit/rewards.hpp"

using namespace llmkit;

namespace {

RewardInput in(const std::string& response, nlohmann::json row = nlohmann::json::object()) {
  RewardInput x;
  x.prompt = "Q";
  x.response = response;
  x.row = std::move(row);
  return x;
}

}  // namespace

TEST_CASE("rewards: exact match after GSM8K's normalisation", "[rewards]") {
  auto r = make_rule_reward("exact");
  CHECK(r->name() == "rule:exact");
  const nlohmann::json row = {{"answer", "Natalia sold 48/2 = 24 clips in May.\n#### 72"}};
  CHECK(r->score({in("She sold 72 clips.", row)})[0] == 1.0);          // the last number
  CHECK(r->score({in("#### 72", row)})[0] == 1.0);                      // the strict form
  CHECK(r->score({in("first 72, then #### 71", row)})[0] == 0.0);       // "####" wins over the last number
  CHECK(r->score({in("$72.", row)})[0] == 1.0);                         // "$" and a final "." dropped
  CHECK(r->score({in("no number here", row)})[0] == 0.0);
  CHECK(r->score({in("1,000", {{"answer", "1000"}})})[0] == 1.0);       // commas
  CHECK(r->score({in("7", {{"answer", 7}})})[0] == 1.0);                // a number field
  auto f = make_rule_reward("exact:solution");
  CHECK(f->score({in("3", {{"solution", "#### 3"}})})[0] == 1.0);
  CHECK_THROWS_AS(f->score({in("3", {{"answer", "3"}})}), Error);       // the field is missing
}

TEST_CASE("rewards: boxed answers, braces balanced", "[rewards]") {
  CHECK(last_boxed("so \\boxed{1} or rather \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}");
  CHECK(last_boxed("\\boxed{unclosed") == "");
  CHECK(last_boxed("nothing") == "");
  auto r = make_rule_reward("boxed");
  CHECK(r->score({in("The answer is \\boxed{\\frac{1}{2}}", {{"answer", "\\frac{1}{2}"}})})[0] == 1.0);
  CHECK(r->score({in("The answer is \\boxed{3}", {{"answer", "so \\boxed{3}"}})})[0] == 1.0);
  CHECK(r->score({in("The answer is 3", {{"answer", "3"}})})[0] == 0.0);  // not boxed
}

TEST_CASE("rewards: a regular expression as a format rule; unknown rules refused", "[rewards]") {
  auto r = make_rule_reward("regex:^<think>.*</think>");
  CHECK(r->score({in("<think>hmm</think> 4"), in("4")}) == std::vector<double>{1.0, 0.0});
  CHECK_THROWS_AS(make_rule_reward("regex:("), UsageError);
  CHECK_THROWS_AS(make_rule_reward("regex:"), UsageError);
  CHECK_THROWS_AS(make_rule_reward("length"), UsageError);
}

TEST_CASE("rewards: an external command reads JSONL and writes one number a line", "[rewards]") {
  // The response's length, and the row's fields are there too.
  auto r = make_command_reward(
      "python3 -c \"import json,sys\nfor l in sys.stdin:\n  j = json.loads(l); print(len(j['response']) + j.get('bonus', 0))\"");
  CHECK(r->name().rfind("cmd:", 0) == 0);
  CHECK(r->score({in("abc"), in("hello", {{"bonus", 10}}), in("")}) == std::vector<double>{3, 15, 0});
  CHECK(make_command_reward("cat > /dev/null; printf '0.5\\n-2\\n'")->score({in("a"), in("b")}) == std::vector<double>{0.5, -2});
  // Many rows: more than a pipe holds, written while the output is read.
  std::vector<RewardInput> many(5000, in(std::string(100, 'x')));
  CHECK(make_command_reward("wc -l > /dev/null; yes 1 | head -5000")->score(many).size() == 5000);
  auto fails = [](const std::string& cmd, size_t n, const std::string& what) {
    try {
      make_command_reward(cmd)->score(std::vector<RewardInput>(n, in("x")));
      FAIL("accepted: " << cmd);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(what) != std::string::npos);
      CHECK(e.where() == "cmd:" + cmd);
    }
  };
  fails("cat > /dev/null; exit 3", 2, "exited with status 3");
  fails("cat > /dev/null; echo 1", 2, "wrote 1 numbers for 2 rows");
  fails("cat > /dev/null; echo 1; echo 2; echo 3", 2, "wrote 3 numbers for 2 rows");
  fails("cat > /dev/null; echo 1; echo yes", 2, "wrote 'yes' on line 2");
  fails("cat > /dev/null; echo nan", 1, "wrote 'nan' on line 1");
  fails("kill -9 $$", 1, "was killed by signal 9");
  fails("no-such-command-here 2> /dev/null", 1, "exited with status 127");
  CHECK_THROWS_AS(make_command_reward(""), UsageError);
}

TEST_CASE("rewards: weighted mixes and each part's mean", "[rewards]") {
  RewardMix mix;
  mix.add(make_rule_reward("exact"), 1.0);
  mix.add(make_rule_reward("regex:^#### "), 0.5);
  std::vector<std::pair<std::string, double>> means;
  const auto r = mix.score({in("#### 4", {{"answer", "4"}}), in("4", {{"answer", "5"}})}, &means);
  CHECK(r == std::vector<double>{1.5, 0.0});
  REQUIRE(means.size() == 2);
  CHECK(means[0] == std::pair<std::string, double>{"rule:exact", 0.5});
  CHECK(means[1] == std::pair<std::string, double>{"rule:regex:^#### ", 0.5});
}


TEST_CASE("grpo: group advantages, the clipped surrogate and k3 against hand values and finite differences", "[grpo]") {
  // Two groups of 3: (1, 0, 0) has mean 1/3, sample std sqrt(1/3); (1, 1, 1) has no spread.
  const std::vector<double> a = group_advantages({1, 0, 0, 1, 1, 1}, 3, true);
  CHECK(a[0] == Approx((2.0 / 3) / (std::sqrt(1.0 / 3) + 1e-4)).epsilon(1e-12));
  CHECK(a[1] == Approx((-1.0 / 3) / (std::sqrt(1.0 / 3) + 1e-4)).epsilon(1e-12));
  CHECK(a[3] == 0.0);
  CHECK(group_advantages({2, 0}, 2, false) == std::vector<double>{1, -1});  // Dr. GRPO: no scaling
  // At the first iteration the ratio is 1: loss -A, slope -A, nothing clipped.
  SurrogateLoss s = clipped_surrogate(-1.5, -1.5, 0.7, 0.2, 0.2);
  CHECK(s.loss == Approx(-0.7));
  CHECK(s.dlogp == Approx(-0.7));
  CHECK_FALSE(s.clipped);
  // Ratio e^0.3 = 1.35 > 1.2 with A > 0: clipped, no gradient; with A < 0 the unclipped term is
  // the smaller, so it keeps its gradient.
  s = clipped_surrogate(-1.2, -1.5, 0.7, 0.2, 0.2);
  CHECK(s.clipped);
  CHECK(s.loss == Approx(-1.2 * 0.7));
  CHECK(s.dlogp == 0.0);
  s = clipped_surrogate(-1.2, -1.5, -0.7, 0.2, 0.2);
  CHECK_FALSE(s.clipped);
  CHECK(s.loss == Approx(0.7 * std::exp(0.3)));
  // Clip-higher: an upper bound of 1.4 lets the same ratio through.
  CHECK_FALSE(clipped_surrogate(-1.2, -1.5, 0.7, 0.2, 0.4).clipped);
  for (double lp : {-2.0, -1.55, -1.4, -1.0})
    for (double adv : {0.8, -0.8}) {
      const double h = 1e-6, old = -1.5;
      const SurrogateLoss g = clipped_surrogate(lp, old, adv, 0.2, 0.28);
      const double fd = (clipped_surrogate(lp + h, old, adv, 0.2, 0.28).loss - clipped_surrogate(lp - h, old, adv, 0.2, 0.28).loss) / (2 * h);
      CHECK(g.dlogp == Approx(fd).margin(1e-6));
    }
  // k3: 0 with slope 0 where policy and reference agree; its slope by finite differences.
  CHECK(k3_kl(-1.0, -1.0).first == 0.0);
  CHECK(k3_kl(-1.0, -1.0).second == 0.0);
  CHECK(k3_kl(-1.0, -2.0).first == Approx(std::exp(-1.0) + 1.0 - 1.0));
  const double h = 1e-6;
  CHECK(k3_kl(-1.3, -0.9).second == Approx((k3_kl(-1.3 + h, -0.9).first - k3_kl(-1.3 - h, -0.9).first) / (2 * h)).margin(1e-7));
}

TEST_CASE("ppo: GAE and the clipped value loss against hand values and finite differences", "[ppo]") {
  // Three tokens, rewards (0, 0, 1), values (0.5, 0.25, 0.75), gamma 0.9, lambda 0.8:
  //   d2 = 1 - 0.75 = 0.25                    A2 = 0.25
  //   d1 = 0 + 0.9 0.75 - 0.25 = 0.425        A1 = 0.425 + 0.72 0.25 = 0.605
  //   d0 = 0 + 0.9 0.25 - 0.5 = -0.275        A0 = -0.275 + 0.72 0.605 = 0.1606
  const std::vector<double> a = gae({0, 0, 1}, {0.5, 0.25, 0.75}, 0.9, 0.8);
  REQUIRE(a.size() == 3);
  CHECK(a[2] == Approx(0.25).epsilon(1e-12));
  CHECK(a[1] == Approx(0.605).epsilon(1e-12));
  CHECK(a[0] == Approx(0.1606).epsilon(1e-12));
  // gamma = lambda = 1: the advantage is the sum of the rewards to come minus the value (Monte Carlo).
  const std::vector<double> mc = gae({0.1, -0.2, 2}, {1, 2, 3}, 1, 1);
  CHECK(mc[0] == Approx(1.9 - 1));
  CHECK(mc[1] == Approx(1.8 - 2));
  CHECK(mc[2] == Approx(2.0 - 3));
  CHECK(gae({}, {}, 1, 0.95).empty());
  // The value loss: inside the clip range it is 0.5 (v - R)^2.
  ValueLoss v = clipped_value_loss(1.1, 1.0, 2.0, 0.2);
  CHECK(v.loss == Approx(0.5 * 0.81));
  CHECK(v.dvalue == Approx(-0.9));
  CHECK_FALSE(v.clipped);
  // v moved past the range away from the return: the unclipped square is the larger, it keeps
  // its gradient.
  v = clipped_value_loss(0.5, 1.0, 2.0, 0.2);
  CHECK(v.loss == Approx(0.5 * 2.25));
  CHECK(v.dvalue == Approx(-1.5));
  CHECK_FALSE(v.clipped);
  // v moved past the range toward (and beyond) the return: the clipped square (old + 0.2) is the
  // larger, no gradient.
  v = clipped_value_loss(2.5, 1.0, 2.0, 0.2);
  CHECK(v.loss == Approx(0.5 * 0.64));
  CHECK(v.dvalue == 0.0);
  CHECK(v.clipped);
  for (double x : {0.3, 0.95, 1.1, 1.7, 2.6})
    for (double ret : {0.0, 1.5, 3.0}) {
      const double h = 1e-6;
      const double fd = (clipped_value_loss(x + h, 1.0, ret, 0.2).loss - clipped_value_loss(x - h, 1.0, ret, 0.2).loss) / (2 * h);
      CHECK(clipped_value_loss(x, 1.0, ret, 0.2).dvalue == Approx(fd).margin(1e-6));
    }
}

TEST_CASE("ppo: whitening as TRL's masked_whiten", "[ppo]") {
  // x = (1, 2, 3, 6): mean 3, unbiased variance (4 + 1 + 0 + 9) / 3 = 14 / 3.
  const std::vector<double> x = {1, 2, 3, 6};
  double s = 0, sq = 0;
  for (double v : x) s += v, sq += v * v;
  const Whitening w(s, sq, 4);
  CHECK(w.mean == Approx(3));
  CHECK(w.var == Approx(14.0 / 3));
  CHECK(w(6) == Approx(3 / std::sqrt(14.0 / 3 + 1e-8)).epsilon(1e-12));
  CHECK(w(1, false) == Approx(-2 / std::sqrt(14.0 / 3 + 1e-8) + 3).epsilon(1e-12));
  double m = 0, v2 = 0;
  for (double v : x) m += w(v) / 4;
  for (double v : x) v2 += (w(v) - m) * (w(v) - m) / 3;
  CHECK(m == Approx(0).margin(1e-12));
  CHECK(v2 == Approx(1).epsilon(1e-7));
  CHECK(Whitening(5, 25, 1).var == 0);  // one value: no spread
}
