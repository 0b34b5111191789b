// model/step_bytes.h: the bytes a decode step reads (bench's roofline), plain and verifying
// drafts, on a fixture with an MTP head (LatentMoE experts in trunk and head).
#include <gtest/gtest.h>

#include <cmath>

#include "fixture_util.h"
#include "model/accounting.h"
#include "model/step_bytes.h"

namespace nemotron::testing {
namespace {

TEST(StepBytes, PlainAndSpeculativeStepsCountWhatTheyRead) {
  const model::Model m = model::Model::load(fixture_dir("super-latent-mtp"));
  const model::ModelAccounting acc = model::account(m);
  const model::StepBytes b(m, acc);
  ASSERT_FALSE(b.moe.empty());
  ASSERT_FALSE(b.mtp_moe.empty());
  // One row: the accounting's bytes per token (k experts) and one state.
  EXPECT_NEAR(b.weights(1), static_cast<double>(acc.weight_bytes_per_token), 1e-6 * acc.weight_bytes_per_token);
  EXPECT_DOUBLE_EQ(b.spec_step(1, 0), b.weights(1) + static_cast<double>(acc.state_bytes_per_token));
  // Expected distinct experts: E (1 - (1 - k/E)^R), at most E.
  const int64_t E = b.moe[0].E;
  const double p = static_cast<double>(b.k) / static_cast<double>(E);
  EXPECT_NEAR(b.experts(E, 4), E * (1 - std::pow(1 - p, 4)), 1e-9);
  EXPECT_NEAR(b.experts(E, 1), static_cast<double>(b.k), 1e-9);
  EXPECT_LE(b.experts(E, 100000), static_cast<double>(E));
  EXPECT_GT(b.experts(E, 100000), E - 1e-6);
  // A verify of k drafts: the trunk for B (k + 1) rows, the state twice (the roll-back copy),
  // k head steps of B rows each reading at least the lm_head.
  EXPECT_GE(b.mtp_fixed, m.weights.lm_head.w.stored_bytes());
  for (int64_t B : {1, 8}) {
    double last = b.spec_step(B, 0);
    for (int64_t k = 1; k <= 3; ++k) {
      const double s = b.spec_step(B, k);
      const double head = static_cast<double>(k) * (static_cast<double>(b.mtp_fixed) +
                                                    static_cast<double>(B * b.embedding_row) +
                                                    b.routed(b.mtp_moe, B));
      EXPECT_DOUBLE_EQ(s, b.weights(B * (k + 1)) + 2.0 * static_cast<double>(B * acc.state_bytes_per_token) + head);
      EXPECT_GT(s, last);
      last = s;
    }
  }
  // Rows beyond saturation read no more experts: only embedding rows grow.
  EXPECT_NEAR(b.weights(200000) - b.weights(100000), 100000.0 * static_cast<double>(b.embedding_row),
              1e-3 * b.weights(100000));
}

}  // namespace
}  // namespace nemotron::testing
