// llm-ppo dpo (lib/model/dpo.cpp): direct preference optimisation and its relatives (IPO,
// hinge, conservative DPO) on preference pairs (llmkit-chat(5)), as an objective on the shared
// training loop. The reference model is the starting policy: its log-probabilities of every
// pair are computed once before the first step and kept with the run (checkpoints carry them,
// so a resumption does not recompute them); only the policy is in memory while training.
#pragma once
#include <string>

#include "llmkit/sft.hpp"

namespace llmkit {

class Stats;

struct DpoConfig : SftConfig {
  double beta = 0.1;
  std::string loss = "sigmoid";  // sigmoid (DPO; with label_smoothing > 0 conservative DPO), ipo, hinge
  double label_smoothing = 0;
};

// One pair's loss and its derivatives in the policy's sequence log-probabilities (sums over
// the answer's tokens) of chosen and rejected, given the reference's, as TRL's DPOTrainer
// computes them: with u = (pc - rc) - (pr - rr),
//   sigmoid  -(1 - eps) log sigmoid(beta u) - eps log sigmoid(-beta u)
//   hinge    max(0, 1 - beta u)
//   ipo      (u' - 1 / (2 beta))^2, u' from log-probabilities averaged over the answers' tokens
//            (len_c, len_r).
struct DpoPairLoss {
  double loss = 0, dchosen = 0, drejected = 0;
};
DpoPairLoss dpo_pair_loss(const std::string& loss, double beta, double label_smoothing, double pc, double pr, double rc, double rr,
                          double len_c, double len_r);

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_dpo(const DpoConfig& cfg, Stats& stats);

}  // namespace llmkit
