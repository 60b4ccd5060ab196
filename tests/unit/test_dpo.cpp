// Preference learning's pieces: TRL's preference rows (explicit and implicit prompts, margins,
// what is refused), pairs kept together as examples, and the DPO family's pair losses against
// hand-computed values and finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "llmkit/chat.hpp"
#include "llmkit/dpo.hpp"
#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/rm.hpp"
#include "llmkit/stats.hpp"

using namespace llmkit;

TEST_CASE("dpo: preference rows, explicit and implicit prompts", "[dpo]") {
  PreferenceRow p = parse_preference_row(R"({"prompt": "add 2 and 2 ", "chosen": "4", "rejected": "5", "margin": 1.5, "id": 7})", "f:1");
  CHECK(p.chosen.kind == ChatRow::Kind::prompt_completion);
  CHECK(p.chosen.prompt == "add 2 and 2 ");
  CHECK(p.chosen.completion == "4");
  CHECK(p.rejected.prompt == "add 2 and 2 ");
  CHECK(p.rejected.completion == "5");
  CHECK(p.margin == 1.5);
  CHECK(p.chosen.extra == R"({"id":7,"margin":1.5})");

  // Conversations sharing their first messages: those are the prompt.
  p = parse_preference_row(R"({"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                               "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]})",
                           "f:2");
  REQUIRE(p.chosen.kind == ChatRow::Kind::conversation);
  CHECK(p.chosen.completion_from == 1);
  CHECK(p.chosen.messages.size() == 2);
  CHECK(p.chosen.messages[1].content == "hello");
  CHECK(p.rejected.messages[1].content == "go away");
  CHECK(p.rejected.messages[0].content == "hi");

  // Explicit conversational prompt.
  p = parse_preference_row(R"({"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
                               "rejected": [{"role": "assistant", "content": "b"}]})",
                           "f:3");
  CHECK(p.chosen.completion_from == 1);
  CHECK(p.rejected.messages.size() == 2);

  // Implicit prompt of strings: the shared text up to a space.
  p = parse_preference_row(R"({"chosen": "The sum is 4", "rejected": "The sum is 5"})", "f:4");
  CHECK(p.chosen.prompt == "The sum is");
  CHECK(p.chosen.completion == " 4");
  CHECK(p.rejected.completion == " 5");

  auto refused = [](const std::string& row, const std::string& what) {
    try {
      parse_preference_row(row, "f:9");
      FAIL("accepted: " << row);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(what) != std::string::npos);
      CHECK(e.where() == "f:9");
    }
  };
  refused(R"({"prompt": "p", "chosen": "a", "rejected": "a"})", "are the same");
  refused(R"({"prompt": "p", "chosen": "a"})", "has \"chosen\" and \"rejected\"");
  refused(R"({"prompt": "p", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]})", "both strings or both lists");
  refused(R"({"chosen": [{"role": "user", "content": "x"}], "rejected": [{"role": "user", "content": "y"}]})", "share no prompt");
  refused(R"({"chosen": "abc", "rejected": "xyz"})", "share no prompt");
  refused(R"({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"})", "\"margin\" is not a number");
  refused(R"({"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
              "rejected": [{"role": "user", "content": "x"}]})",
          "\"rejected\" adds nothing");
  refused("[1, 2]", "a row is a JSON object");
}

TEST_CASE("dpo: pairs stay together: dropped together, consecutive rows in every epoch", "[dpo][examples]") {
  // Pairs of (chosen, rejected): example 2k and 2k + 1; pair 1's rejected has nothing trained
  // within the row, so the whole pair goes.
  std::vector<ChatExample> ex;
  for (int i = 0; i < 10; ++i) {
    ChatExample e;
    const int len = i == 3 ? 20 : 4 + i % 3;
    for (int k = 0; k < len; ++k) {
      e.tokens.push_back(100 * i + k);
      e.trained.push_back(i == 3 ? k >= 15 : k >= 2);
    }
    e.where = "f:" + std::to_string(i / 2 + 1);
    ex.push_back(e);
  }
  ExampleOptions o;
  o.seq_len = 8;
  o.group = 2;
  Stats st;
  ExampleSet set(ex, o, st);
  CHECK(set.groups() == 4);
  CHECK(set.examples() == 8);
  CHECK(st.dropped("nothing_trained_within_seq_len") == 1);
  for (uint64_t seed : {0u, 5u}) {
    std::set<uint32_t> seen;
    for (uint64_t c = 0; c < 16; c += 2) {  // two epochs
      const RowBatch b = set.batch(c, 2, seed);
      CHECK(b.first_example[0] % 2 == 0);
      CHECK(b.first_example[1] == b.first_example[0] + 1);
      // The first token of the chosen answer names its example: 100 * (original index).
      CHECK(b.tokens[static_cast<size_t>(b.T)] == b.tokens[0] + 100);
      if (c < 8) seen.insert(b.first_example[0] / 2);
    }
    CHECK(seen.size() == 4);  // every pair once an epoch
  }
  o.packing = true;
  Stats st2;
  CHECK_THROWS_AS(ExampleSet(ex, o, st2), UsageError);
}

TEST_CASE("dpo: the pair losses against hand-computed values", "[dpo]") {
  // At the start the policy is the reference: DPO's loss is ln 2 and its slope -beta/2.
  DpoPairLoss l = dpo_pair_loss("sigmoid", 0.1, 0, -10, -12, -10, -12, 3, 4);
  CHECK(l.loss == Approx(std::log(2.0)).epsilon(1e-15));
  CHECK(l.dchosen == Approx(-0.05).epsilon(1e-15));
  CHECK(l.drejected == Approx(0.05).epsilon(1e-15));
  // u = (-10 + 11) - (-12 + 11) = 2, beta u = 0.2: log(1 + e^-0.2), -0.1 sigmoid(-0.2).
  l = dpo_pair_loss("sigmoid", 0.1, 0, -10, -12, -11, -11, 3, 4);
  CHECK(l.loss == Approx(0.5981388693815918).epsilon(1e-12));
  CHECK(l.dchosen == Approx(-0.04501660026875221).epsilon(1e-12));
  // Conservative DPO, eps 0.1: 0.9 log(1 + e^-0.2) + 0.1 log(1 + e^0.2).
  l = dpo_pair_loss("sigmoid", 0.1, 0.1, -10, -12, -11, -11, 3, 4);
  CHECK(l.loss == Approx(0.9 * 0.5981388693815918 + 0.1 * 0.7981388693815918).epsilon(1e-12));
  // Hinge: max(0, 1 - 0.1 * 2) = 0.8, slope -0.1; past the margin, 0 and no slope.
  l = dpo_pair_loss("hinge", 0.1, 0, -10, -12, -11, -11, 3, 4);
  CHECK(l.loss == Approx(0.8));
  CHECK(l.dchosen == Approx(-0.1));
  l = dpo_pair_loss("hinge", 1.0, 0, -10, -12, -11, -11, 3, 4);
  CHECK(l.loss == 0.0);
  CHECK(l.dchosen == 0.0);
  // IPO on per-token means: u = 1/3 - (-1/4) = 7/12; (7/12 - 1/(2 * 0.1))^2.
  l = dpo_pair_loss("ipo", 0.1, 0, -10, -12, -11, -11, 3, 4);
  CHECK(l.loss == Approx(std::pow(7.0 / 12.0 - 5.0, 2)).epsilon(1e-12));
  CHECK(l.dchosen == Approx(2 * (7.0 / 12.0 - 5.0) / 3).epsilon(1e-12));
  CHECK(l.drejected == Approx(-2 * (7.0 / 12.0 - 5.0) / 4).epsilon(1e-12));
  CHECK_THROWS_AS(dpo_pair_loss("kto", 0.1, 0, 0, 0, 0, 0, 1, 1), UsageError);
}

TEST_CASE("dpo: the pair losses' derivatives against finite differences", "[dpo]") {
  struct Case {
    const char* loss;
    double beta, eps;
  };
  for (const Case& c : {Case{"sigmoid", 0.1, 0}, Case{"sigmoid", 0.5, 0.2}, Case{"ipo", 0.3, 0}, Case{"hinge", 0.2, 0}}) {
    INFO(c.loss << " beta " << c.beta << " eps " << c.eps);
    for (double pc : {-20.0, -7.5}) {
      const double pr = -13.25, rc = -11, rr = -12.5, lc = 5, lr = 7, h = 1e-6;
      const DpoPairLoss l = dpo_pair_loss(c.loss, c.beta, c.eps, pc, pr, rc, rr, lc, lr);
      const double fc = (dpo_pair_loss(c.loss, c.beta, c.eps, pc + h, pr, rc, rr, lc, lr).loss -
                         dpo_pair_loss(c.loss, c.beta, c.eps, pc - h, pr, rc, rr, lc, lr).loss) / (2 * h);
      const double fr = (dpo_pair_loss(c.loss, c.beta, c.eps, pc, pr + h, rc, rr, lc, lr).loss -
                         dpo_pair_loss(c.loss, c.beta, c.eps, pc, pr - h, rc, rr, lc, lr).loss) / (2 * h);
      CHECK(l.dchosen == Approx(fc).margin(1e-7));
      CHECK(l.drejected == Approx(fr).margin(1e-7));
    }
  }
}

TEST_CASE("rm: the Bradley-Terry loss with margin and centring, values and derivatives", "[rm]") {
  // rc - rr - margin = 0.5: log(1 + e^-0.5); slopes -sigmoid(-0.5) and +sigmoid(-0.5).
  RmPairLoss l = rm_pair_loss(1.25, 0.5, 0.25, 0);
  CHECK(l.loss == Approx(0.47407698418010663).epsilon(1e-12));
  CHECK(l.dchosen == Approx(-0.3775406687981454).epsilon(1e-12));
  CHECK(l.drejected == Approx(0.3775406687981454).epsilon(1e-12));
  // Centring adds C (rc + rr)^2.
  l = rm_pair_loss(1.25, 0.5, 0.25, 0.01);
  CHECK(l.loss == Approx(0.47407698418010663 + 0.01 * 1.75 * 1.75).epsilon(1e-12));
  // Far apart either way: no overflow.
  CHECK(rm_pair_loss(-400, 400, 0, 0).loss == Approx(800));
  CHECK(rm_pair_loss(400, -400, 0, 0).loss < 1e-300);
  for (double center : {0.0, 0.05})
    for (double rc : {-3.0, 0.4, 2.5}) {
      const double rr = 0.7, m = 0.3, h = 1e-6;
      const RmPairLoss g = rm_pair_loss(rc, rr, m, center);
      CHECK(g.dchosen == Approx((rm_pair_loss(rc + h, rr, m, center).loss - rm_pair_loss(rc - h, rr, m, center).loss) / (2 * h)).margin(1e-7));
      CHECK(g.drejected == Approx((rm_pair_loss(rc, rr + h, m, center).loss - rm_pair_loss(rc, rr - h, m, center).loss) / (2 * h)).margin(1e-7));
    }
}
