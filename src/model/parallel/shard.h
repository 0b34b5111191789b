#pragma once
// One rank's share of a model (the CPU backend's sharded forward reads these; the CUDA
// backend's NCCL ranks will upload the same slices). Splits, for tensor-parallel size t
// (rank tp_rank of its TP group) and the expert layout of model/parallel/parallel_config.h:
//   embeddings, lm_head  vocab rows split over t (uneven allowed): the embedding's partial rows
//                        are all-reduced, the logits all-gathered
//   attention            query heads split; KV heads split when Hkv % t == 0, else (t % Hkv
//                        == 0) the one KV head of the rank's query heads; o_proj row-parallel
//   Mamba-2              heads split (z, x, dt, A, D, dt_bias, norm weight, x conv channels);
//                        B/C groups split when G % t == 0, else the rank's one group
//                        (replicated, its norm group spans t/G ranks: sum of squares
//                        all-reduced); out_proj row-parallel
//   dense MLP            intermediate dim split over t (up rows, down columns)
//   MoE                  router (gate, bias) replicated; routed experts: a contiguous range
//                        per EP rank (uneven allowed), each owned expert's intermediate dim
//                        split over the world/EP ranks of its group; shared expert's
//                        intermediate dim split over all world ranks; LatentMoE fc1/fc2
//                        replicated (fc2 applied to the rank's partial latent sum, which is
//                        linear, so the world all-reduce after it gives the whole output)
//   MTP head             eh_proj row-parallel over its 2H input; its blocks as above
//   norms, conv of B/C   replicated
// Intermediate-dim and vocab splits are uneven where needed and fall on 16-column NVFP4
// blocks; head splits that cut an NVFP4 block are an Error naming the tensor.
#include <cstdint>
#include <vector>

#include "model/checkpoint/weights.h"
#include "model/parallel/linear_slice.h"
#include "model/parallel/parallel_config.h"

namespace nemotron::model {

struct RankShard {
  RankLayout layout;
  // The model's config with this rank's sizes: num_attention_heads, num_key_value_heads,
  // mamba_num_heads and n_groups per rank (so d_inner(), conv_dim(), kv_dim() ... are the
  // rank's); every other field is the model's.
  Config config;
  ModelWeights weights;          // this rank's slices; experts it does not own have out = 0
  Range vocab;                   // embedding / lm_head rows held here
  std::vector<Range> tp_vocab;   // every TP rank's vocab range (to place gathered logits)
  bool mamba_norm_split = false; // a gated-norm group spans ranks (n_groups < t)
  int64_t mamba_norm_group = 0;  // the model's gated-norm group width d_inner / n_groups
  int64_t mamba_groups = 0;      // the model's n_groups
  int64_t mamba_group0 = 0;      // the model's index of this rank's first B/C group
  int64_t mamba_head0 = 0;       // the model's index of this rank's first Mamba head
  Range eh_proj_in;              // MTP eh_proj input columns [0, 2H) held here
  int64_t weight_bytes = 0;      // this rank's linear weights (stored format) + fp32 params
  int64_t copied_bytes = 0;      // of which copied at load (the rest are views into the mmap)
  SliceStore store;              // the copies
};

// Builds rank `rank`'s shard of `m` (validate_parallel first). count_only: sizes and bytes,
// nothing copied (the memory plan).
RankShard shard_model(const Model& m, const ParallelConfig& p, int rank, bool count_only = false);

}  // namespace nemotron::model
