// The collectives of a sharded CudaModel step (tensor / expert parallel; cuda_ranks.h,
// docs/parallel.md). Each rank's step is the unsharded one over its shard's sizes, plus:
//   embedding   this rank's vocab rows (other ids give zero rows), all-reduced over the TP group
//   each block  its output y [R, H] is a partial sum (row-parallel o_proj / out_proj / MLP down,
//               this rank's experts and its slice of the shared expert), all-reduced in BF16
//               over the TP group (the world for MoE blocks) before the next norm adds it
//   lm_head     this rank's vocab columns, all-gathered over the TP group and placed at their
//               ids in logits [L, V] (every rank then samples the same rows alike)
// The MTP head's eh_proj is replicated (its output needs no collective).
#ifdef NEMOTRON_HAVE_CUDA

#include "kernels/collective_cuda.h"
#include "kernels/norm_cuda.h"
#include "model/cuda/cuda_communicator.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using namespace nemotron::kernels;

void CudaModel::Impl::embed(int64_t R) {
  const Config& c = model.config;
  const auto* table = static_cast<const uint16_t*>(embeddings.data);
  if (!sharded()) {
    embed_cuda(d_ids, table, c.vocab_size, c.hidden_size, R, x, stream);
    return;
  }
  const Range mine = opt.tp_vocab.at(static_cast<std::size_t>(opt.tp_rank));
  embed_range_cuda(d_ids, table, mine.begin, mine.end, c.vocab_size, c.hidden_size, R, x, stream);
  comms.tp->all_reduce_sum(x, R * c.hidden_size, CommType::F32, stream);
}

void CudaModel::Impl::reduce_block(LayerKind kind, int64_t R) {
  if (!sharded()) return;
  CudaCommunicator* group = kind == LayerKind::MoE ? comms.world : comms.tp;
  group->all_reduce_sum(y, R * model.config.hidden_size, CommType::BF16, stream);
  mark("all_reduce");
}

void CudaModel::Impl::gather_logits(int64_t L) {
  const auto ranks = static_cast<int>(opt.tp_vocab.size());
  comms.tp->all_gather(logits_part, L * vocab_stride, CommType::F32, logits_blocks, stream);
  std::vector<int64_t> v0, width;
  for (const Range& r : opt.tp_vocab) {
    v0.push_back(r.begin);
    width.push_back(r.size());
  }
  place_vocab_blocks_cuda(logits_blocks, ranks, v0.data(), width.data(), vocab_stride, L, model.config.vocab_size,
                          logits, stream);
  mark("logits.gather");
}

}  // namespace nemotron::model

#endif
