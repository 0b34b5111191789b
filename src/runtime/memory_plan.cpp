#include "runtime/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "kernels/device_info.h"
#include "model/cuda/cuda_memory.h"
#include "model/cuda/cuda_ranks.h"
#include "model/parallel/shard.h"
#include "util/error.h"

namespace nemotron::runtime {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
static_assert(model::cuda_detail::kArenaKinds == 3, "MemoryPlan::arena_bytes holds three arenas");

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f GiB", static_cast<double>(bytes) / kGiB);
  return buf;
}

// Bytes of one cached K or V element for a resolved dtype: the CPU backend keeps fp32 rows
// (its FP8 mode stores the values an FP8 cache returns, still in fp32).
int64_t kv_element_bytes(const std::string& device, const std::string& dtype) {
  if (device == "cpu") return 4;
  return dtype == "fp8" ? 1 : 2;
}

// K and V bytes per position: every attention block of the trunk and of the MTP head (c's layer
// lists), at the KV width of `sizes` (the model's config, or a rank's shard config).
int64_t kv_bytes_per_position(const model::Config& c, const model::Config& sizes, int64_t kv_elem) {
  int64_t attn = c.count(model::LayerKind::Attention);
  for (auto k : c.mtp_layers) attn += k == model::LayerKind::Attention;
  return attn * 2 * sizes.kv_dim() * kv_elem;
}

// The CUDA plan: CudaModel's own allocations (model/cuda_memory.h: its allocation walk,
// counted) for the largest KV capacity that fits the budget (a multiple of 16 positions, at
// most max_model_len per slot). Every candidate capacity is one counting walk.
//
// Sharded (tensor / expert parallel, model/cuda/cuda_ranks.h): every rank's CudaModel over its
// shard counted the same way; the budget is per rank (each on its own GPU of the same kind) and
// every figure is the rank with the largest total (they differ by uneven splits only).
void plan_cuda(const model::Model& m, const MemoryPlanRequest& req, int sms, MemoryPlan& p) {
  std::vector<model::RankShard> shards;
  std::vector<model::Model> rank_models;
  if (req.parallel.sharded()) {
    shards.reserve(static_cast<std::size_t>(req.parallel.world()));
    for (int r = 0; r < req.parallel.world(); ++r)
      shards.push_back(model::shard_model(m, req.parallel, r, /*count_only=*/true));
    for (const auto& sh : shards) rank_models.push_back(model::cuda_rank_model(m, sh, /*counting=*/true));
    // The KV bytes per position of the rank holding the most (its KV heads).
    p.kv_bytes_per_token = 0;
    for (const auto& sh : shards) {
      p.rank_weight_bytes.push_back(sh.weight_bytes);
      p.kv_bytes_per_token = std::max(
          p.kv_bytes_per_token, kv_bytes_per_position(m.config, sh.config, kv_element_bytes(p.device, p.kv_cache_dtype)));
    }
  }
  // cuda_memory of the model, or of the rank whose total is the largest.
  auto count = [&](const model::CudaModelOptions& opt) {
    if (shards.empty()) return model::cuda_memory(m, opt, sms);
    model::CudaMemory most;
    for (std::size_t r = 0; r < shards.size(); ++r) {
      const model::CudaMemory t = model::cuda_memory(rank_models[r], model::cuda_rank_options(m, shards[r], opt, 0), sms);
      if (r == 0 || t.device_total() + t.pinned_host > most.device_total() + most.pinned_host) most = t;
    }
    return most;
  };
  model::CudaModelOptions o;
  o.max_seqs = req.max_num_seqs;
  o.max_step_tokens = p.prefill_step_tokens;
  o.kv_fp8 = p.kv_cache_dtype == "fp8";
  o.ssm_state = p.ssm_state;
  o.sampled_logits_only = true;  // the engine's steps (backend_options)
  // Roll-back room for speculative decoding (with an MTP head and K > 0).
  const int K = req.speculative_tokens >= 0 ? req.speculative_tokens : (m.config.has_mtp() ? 3 : 0);
  o.spec_rows = K + 1;
  o.spec_seqs = 0;
  auto terms = [&](int64_t kv_tokens) {
    o.kv_tokens = kv_tokens;
    return count(o);
  };
  auto total = [](const model::CudaMemory& t) { return t.device_total() + t.pinned_host; };
  if (m.config.has_mtp() && K > 0) {
    // Every sequence may verify when the room for all of them takes at most kCudaSpecShare of
    // what the budget leaves beside the rest of the plan (before the KV cache and the prefix
    // cache); else as many as fit in that share, at least min(kCudaSpecSeqs, max_num_seqs).
    // The room is a part shared by all verifying sequences (the drafts' FP8 lm_head) plus one
    // part per sequence.
    const int64_t none = total(terms(0));
    o.spec_seqs = 1;
    const int64_t first = total(terms(0)) - none;
    o.spec_seqs = 2;
    const int64_t per_seq = std::max<int64_t>(1, total(terms(0)) - none - first);
    const int64_t share = static_cast<int64_t>(static_cast<double>(std::max<int64_t>(0, p.budget_bytes - none)) *
                                               kCudaSpecShare);
    const int64_t fit = share >= first ? 1 + (share - first) / per_seq : 0;
    o.spec_seqs = static_cast<int>(std::clamp<int64_t>(fit, std::min(kCudaSpecSeqs, req.max_num_seqs), req.max_num_seqs));
  }
  // The snapshot pool: as asked, or a tenth of what the budget leaves after everything but
  // the KV cache (the pool takes whole units of it).
  o.prefix_cache_bytes = 0;
  if (req.prefix_cache)
    o.prefix_cache_bytes = req.prefix_cache_gib ? static_cast<int64_t>(*req.prefix_cache_gib * kGiB)
                                                : std::max<int64_t>(0, (p.budget_bytes - total(terms(0))) / 10);
  // Largest kv_tokens (multiple of 16) whose plan fits: totals grow with kv_tokens, and each
  // position costs at least kv_bytes_per_token, which bounds the search.
  int64_t fit = -1;
  if (total(terms(0)) <= p.budget_bytes) {
    if (p.kv_bytes_per_token == 0) {
      fit = int64_t{1} << 40;  // no attention: KV is free
    } else {
      int64_t lo = 0, hi = p.budget_bytes / p.kv_bytes_per_token / 16 + 1;
      while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (total(terms(mid * 16)) <= p.budget_bytes) lo = mid;
        else hi = mid - 1;
      }
      fit = lo * 16;
    }
  }
  if (p.max_model_len == 0)
    p.max_model_len = std::min<int64_t>(262144, std::max<int64_t>(0, fit / req.max_num_seqs));
  const model::CudaMemory base = terms(std::max<int64_t>(0, std::min(fit, p.max_model_len)));
  if (fit < p.max_model_len || p.max_model_len < 1) {
    std::ostringstream o2;
    o2 << "the model does not fit in " << gib(p.budget_bytes) << ": weights " << gib(base.weights) << ", "
       << req.max_num_seqs << " state slots " << gib(base.state) << ", activations and workspace "
       << gib(base.activations + base.attention_workspace) << ", CUDA graphs " << gib(base.graphs)
       << (base.speculation > 0 ? ", speculative decoding " + gib(base.speculation) : std::string())
       << (base.snapshots > 0 ? ", prefix cache " + gib(base.snapshots) : std::string())
       << ", and one sequence of " << p.max_model_len << " tokens needs "
       << gib(p.kv_bytes_per_token * p.max_model_len)
       << " of KV cache; lower --max-num-seqs, --max-model-len, --max-step-tokens, --prefix-cache-memory or "
          "--speculative-tokens, or raise --memory";
    throw Error(o2.str());
  }
  p.kv_token_capacity = std::min(fit, p.max_model_len * req.max_num_seqs);
  const model::CudaMemory t = terms(p.kv_token_capacity);
  p.weight_bytes = t.weights;
  p.state_bytes = t.state;
  p.state_slot_bytes = t.state / req.max_num_seqs;
  p.kv_bytes = t.kv;
  p.activation_bytes = t.activations + t.attention_workspace + t.tables;
  for (int k = 0; k < model::cuda_detail::kArenaKinds; ++k) p.arena_bytes[k] = t.table.arena[k];
  p.graph_bytes = t.graphs;
  p.pinned_host_bytes = t.pinned_host;
  p.prefix_cache_bytes = t.snapshots;
  p.spec_bytes = t.speculation;
  if (o.spec_seqs > 0) {
    model::CudaModelOptions no_head = o;
    no_head.fp8_draft_head = false;
    p.draft_head_bytes = t.speculation - count(no_head).speculation;
  }
  p.max_spec_seqs = o.spec_seqs;
  p.max_spec_rows = o.spec_rows;
  p.total_bytes = total(t);
}

// The CPU backend sharded (ranks as threads of this process): every rank's share of the
// weights (counted from its shard, nothing copied), the slices it copies at load beyond the
// mapped checkpoint, and its share of the state slots and KV rows (heads split; B/C groups or
// KV heads replicated where the ranks outnumber them).
void plan_cpu_ranks(const model::Model& m, const model::ParallelConfig& par, int64_t kv_elem, MemoryPlan& p) {
  const auto& c0 = m.config;
  int64_t state = 0, kv = 0;
  // This node's ranks (all of them on one node).
  for (int r = par.first_local_rank(); r < par.first_local_rank() + par.local_ranks(); ++r) {
    const model::RankShard s = model::shard_model(m, par, r, /*count_only=*/true);
    const auto& c = s.config;
    p.rank_weight_bytes.push_back(s.weight_bytes);
    p.copied_weight_bytes += s.copied_bytes;
    state += c0.count(model::LayerKind::Mamba) * 4 *
             (c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size + (c.conv_kernel - 1) * c.conv_dim());
    kv += kv_bytes_per_position(c0, c, kv_elem);
  }
  p.weight_bytes += p.copied_weight_bytes;
  p.state_slot_bytes = state;
  p.kv_bytes_per_token = kv;
}

}  // namespace

int64_t available_system_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit)
    if (key == "MemAvailable:") return value * 1024;
  return 0;
}

MemoryPlan plan_memory(const model::Model& m, const MemoryPlanRequest& req) {
  const auto& c = m.config;
  if (req.device != "cpu" && req.device != "cuda") throw Error("--device must be cpu or cuda, got '" + req.device + "'");
  if (req.max_num_seqs < 1) throw Error("--max-num-seqs must be at least 1");
  if (req.max_step_tokens < 1) throw Error("--max-step-tokens must be at least 1");
  if (req.prefill_step_tokens != -1 && req.prefill_step_tokens != 0 && req.prefill_step_tokens < req.max_step_tokens)
    throw Error("--prefill-step-tokens " + std::to_string(req.prefill_step_tokens) +
                " must be 0 (the same as --max-step-tokens) or at least --max-step-tokens " +
                std::to_string(req.max_step_tokens));
  if (req.max_model_len < 0) throw Error("--max-model-len must be positive");
  const std::string& kvd = req.kv_cache_dtype;
  if (kvd != "auto" && kvd != "fp32" && kvd != "bf16" && kvd != "fp8")
    throw Error("--kv-cache-dtype: unsupported \"" + kvd + "\" (auto, fp32, bf16, fp8)");
  if (req.device == "cpu" && kvd == "bf16")
    throw Error("--kv-cache-dtype bf16: the CPU backend keeps the KV cache in fp32 (or emulates fp8 in fp32)");
  if (req.device == "cuda" && kvd == "fp32")
    throw Error("--kv-cache-dtype fp32: the CUDA backend keeps the KV cache in bf16 or fp8");
  model::validate_parallel(c, req.parallel);
  MemoryPlan p;
  p.device = req.device;
  p.parallel = req.parallel;
  p.max_num_seqs = req.max_num_seqs;
  p.max_step_tokens = req.max_step_tokens;
  const int64_t prefill_asked =
      req.prefill_step_tokens >= 0 ? req.prefill_step_tokens : req.device == "cuda" ? kCudaPrefillStepTokens : 0;
  p.prefill_step_tokens = std::max(req.max_step_tokens, prefill_asked);
  // auto: what the checkpoint asks for on the GPU (kv_cache_quant_algo FP8 -> fp8, with its
  // k/v scales), else bf16; the CPU reference's own fp32. An explicit dtype overrides it.
  if (kvd != "auto") p.kv_cache_dtype = kvd;
  else if (req.device == "cpu") p.kv_cache_dtype = "fp32";
  else p.kv_cache_dtype = m.quant.kv_cache_quant_algo == "FP8" ? "fp8" : "bf16";
  const int64_t kv_elem = kv_element_bytes(req.device, p.kv_cache_dtype);
  const std::string& ssmd = req.mamba_ssm_cache_dtype == "auto" ? c.mamba_ssm_cache_dtype : req.mamba_ssm_cache_dtype;
  if (!kernels::parse_state_dtype(ssmd, p.ssm_state.dtype))
    throw Error("--mamba-ssm-cache-dtype: unsupported \"" + ssmd + "\" (auto, float32, bfloat16, float16)");
  p.ssm_state.stochastic = req.ssm_stochastic_rounding;

  p.weight_bytes = static_cast<int64_t>(m.checkpoint.total_bytes());
  const int64_t mamba = c.count(model::LayerKind::Mamba);
  // The CPU keeps conv windows and SSM states in fp32 (a 16-bit SSM state emulated); the CUDA
  // plan's own walk replaces this below.
  p.state_slot_bytes = mamba * 4 * (c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size +
                                    (c.conv_kernel - 1) * c.conv_dim());
  p.kv_bytes_per_token = kv_bytes_per_position(c, c, kv_elem);
  if (req.parallel.sharded() && req.device == "cpu") plan_cpu_ranks(m, req.parallel, kv_elem, p);
  p.state_bytes = p.state_slot_bytes * req.max_num_seqs;

  // One step's working set: the widest per-row intermediates (fp32) times the rows in a
  // step, a few buffers alive at once; logits for every row in the worst case.
  const int64_t widest = std::max({c.in_proj_dim() + 2 * c.conv_dim() + 3 * c.d_inner(),
                                   c.num_experts_per_tok * (c.moe_intermediate_size + c.expert_input_dim()) +
                                       c.moe_shared_expert_intermediate_size + 4 * c.hidden_size,
                                   c.intermediate_size + 2 * c.hidden_size, 3 * c.q_dim(), c.vocab_size});
  p.activation_bytes = p.prefill_step_tokens * (widest + 4 * c.hidden_size) * 4 * 2 +
                       // attention scores of one query row over the whole context, per thread
                       64 * 4 * std::max<int64_t>(req.max_model_len, 4096);
  p.activation_bytes *= req.parallel.local_ranks();  // each rank's here (full-width rows, gathered logits)

  kernels::DeviceInfo info;
  bool have_info = false;
  if (req.device == "cuda" && (!req.memory_gib || req.cuda_sms <= 0)) {
    std::string error;
    have_info = kernels::cuda_device_info(0, &info, &error);
    if (!have_info && !req.memory_gib) throw Error("--device cuda: " + error);
  }
  // The memory the device can give: its free memory; on unified memory (an integrated GPU:
  // DGX Spark GB10, Jetson) the GPU's free memory and MemAvailable describe the same RAM, so
  // the smaller of the two.
  int64_t device_free = 0;
  if (have_info) {
    device_free = static_cast<int64_t>(info.free_memory_bytes);
    p.unified_memory = info.integrated;
    if (info.integrated) {
      const int64_t avail = available_system_memory();
      if (avail > 0) device_free = std::min(device_free, avail);
    }
  }
  if (req.memory_gib) {
    if (!(*req.memory_gib > 0)) throw Error("--memory must be a positive number of GiB");
    p.budget_bytes = static_cast<int64_t>(*req.memory_gib * kGiB);
    if (have_info && p.budget_bytes > device_free)
      throw Error("--memory " + gib(p.budget_bytes) + " is more than the device has free (" + gib(device_free) +
                  (info.integrated ? ", unified memory: the smaller of the GPU's free memory and MemAvailable" : "") +
                  "); lower --memory");
  } else if (req.device == "cuda") {
    // Leave 5% (at least 1 GiB) for the CUDA context, kernel images and other processes; on
    // unified memory the system's 10% (at least 1 GiB), as for the CPU backend.
    const int64_t share = info.integrated ? 10 : 20;
    p.budget_bytes = device_free - std::max<int64_t>(static_cast<int64_t>(kGiB), device_free / share);
  } else {
    const int64_t avail = available_system_memory();
    if (avail <= 0) throw Error("cannot read available memory from /proc/meminfo; pass --memory GiB");
    // Leave 10% (at least 1 GiB) to the rest of the system.
    p.budget_bytes = avail - std::max<int64_t>(static_cast<int64_t>(kGiB), avail / 10);
  }
  p.max_model_len = req.max_model_len;
  if (req.prefix_cache_gib && !(*req.prefix_cache_gib >= 0))
    throw Error("--prefix-cache-memory must be a non-negative number of GiB");
  if (req.device == "cuda") {
    const int sms = req.cuda_sms > 0 ? req.cuda_sms : have_info ? info.multiprocessors : kCudaSmsBound;
    if (req.parallel.sharded() && have_info) {
      // One GPU per rank of this node (an Error when there are fewer), each with the budget of
      // GPU 0; ranks sharing one GPU (NEMOTRON_SAME_DEVICE_RANKS=1, tests) share its budget.
      const auto devices = model::cuda_rank_devices(req.parallel.local_ranks(), false);
      if (devices.back() == devices.front()) p.budget_bytes /= req.parallel.local_ranks();
    }
    plan_cuda(m, req, sms, p);
    return p;
  }
  int64_t fixed = p.weight_bytes + p.state_bytes + p.activation_bytes;
  if (req.prefix_cache)
    p.prefix_cache_bytes = req.prefix_cache_gib ? static_cast<int64_t>(*req.prefix_cache_gib * kGiB)
                                                : std::max<int64_t>(0, (p.budget_bytes - fixed) / 10);
  fixed += p.prefix_cache_bytes;
  const int64_t kv_room = p.budget_bytes - fixed;
  const int64_t fit_tokens = p.kv_bytes_per_token > 0 ? kv_room / p.kv_bytes_per_token : INT64_MAX / 4;
  if (p.max_model_len == 0) {
    // Derive: as long as one sequence can be while all slots hold one, capped at 256K.
    p.max_model_len = std::min<int64_t>(262144, std::max<int64_t>(0, fit_tokens / req.max_num_seqs));
  }
  if (kv_room <= 0 || (p.kv_bytes_per_token > 0 && fit_tokens < p.max_model_len) || p.max_model_len < 1) {
    std::ostringstream o;
    o << "the model does not fit in " << gib(p.budget_bytes) << ": weights " << gib(p.weight_bytes) << ", "
      << req.max_num_seqs << " state slots " << gib(p.state_bytes) << ", activations " << gib(p.activation_bytes)
      << ", and one sequence of " << p.max_model_len << " tokens needs " << gib(p.kv_bytes_per_token * p.max_model_len)
      << " of KV cache" << (p.prefix_cache_bytes > 0 ? " (with " + gib(p.prefix_cache_bytes) + " of prefix cache)" : "")
      << "; lower --max-num-seqs, --max-model-len, --max-step-tokens or --prefix-cache-memory, or raise --memory";
    throw Error(o.str());
  }
  p.kv_token_capacity = p.kv_bytes_per_token > 0
                            ? std::min(fit_tokens, p.max_model_len * req.max_num_seqs)
                            : p.max_model_len * req.max_num_seqs;
  p.kv_bytes = p.kv_token_capacity * p.kv_bytes_per_token;
  p.total_bytes = fixed + p.kv_bytes;
  return p;
}

std::string MemoryPlan::describe() const {
  std::ostringstream o;
  o << "memory plan (" << device << ", budget " << gib(budget_bytes) << (unified_memory ? ", unified memory" : "")
    << "):\n"
    << "  weights           " << gib(weight_bytes) << "\n"
    << "  state slots       " << gib(state_bytes) << "  (" << max_num_seqs << " x " << gib(state_slot_bytes) << ")\n"
    << "  KV cache          " << gib(kv_bytes) << "  (" << kv_token_capacity << " tokens x " << kv_bytes_per_token
    << " B, " << kv_cache_dtype << (device == "cpu" && kv_cache_dtype == "fp8" ? " emulated in fp32" : "") << ")\n"
    << "  SSM state         " << kernels::state_dtype_name(ssm_state.dtype)
    << (ssm_state.dtype == kernels::StateDType::F32 ? ""
        : ssm_state.stochastic                      ? ", stochastic rounding"
                                                    : ", rounded to nearest")
    << (device == "cpu" && ssm_state.dtype != kernels::StateDType::F32 ? ", emulated in fp32" : "") << "\n"
    << "  activations       " << gib(activation_bytes) << "  (" << max_step_tokens << " tokens per step"
    << (prefill_step_tokens > max_step_tokens
            ? ", " + std::to_string(prefill_step_tokens) + " in steps that decode no sequence"
            : std::string())
    << ")\n"
    << "  prefix cache      " << (prefix_cache_bytes > 0 ? gib(prefix_cache_bytes) : std::string("off")) << "\n";
  if (parallel.sharded() && device == "cuda") {
    o << "  parallel          " << parallel.describe()
      << ", one GPU per rank (threads, NCCL); every figure is per rank (the largest)\n"
      << "  weights per rank ";
    for (std::size_t r = 0; r < rank_weight_bytes.size(); ++r)
      o << (r ? ", " : " ") << r << ": " << gib(rank_weight_bytes[r]);
    o << "  (checkpoint bytes)\n";
  } else if (parallel.sharded()) {
    o << "  parallel          " << parallel.describe() << ", ranks as threads; weights include "
      << gib(copied_weight_bytes) << " of slices copied at load\n"
      << "  weights per rank ";
    for (std::size_t r = 0; r < rank_weight_bytes.size(); ++r)
      o << (r ? ", " : " ") << r << ": " << gib(rank_weight_bytes[r]);
    o << "\n";
  }
  if (device == "cuda")
    o << "  speculation       "
      << (spec_bytes > 0 ? gib(spec_bytes) + "  (" + std::to_string(max_spec_seqs) + " sequences x " +
                               std::to_string(max_spec_rows) + " rows kept for roll-back" +
                               (draft_head_bytes > 0 ? ", FP8 draft lm_head " + gib(draft_head_bytes) : std::string()) +
                               ")"
                         : std::string("off"))
      << "\n"
      << "  CUDA graphs       " << gib(graph_bytes) << "  (bound; " << max_num_seqs << " decode graphs)\n"
      << "  pinned host       " << gib(pinned_host_bytes) << "\n"
      << "  device arenas     weights " << gib(arena_bytes[0]) << ", cache " << gib(arena_bytes[1]) << ", step "
      << gib(arena_bytes[2]) << "  (one allocation each)\n";
  o
    << "  total             " << gib(total_bytes) << "\n"
    << "  max model length  " << max_model_len << " tokens, " << max_num_seqs << " concurrent sequences\n";
  return o.str();
}

model::BackendOptions MemoryPlan::backend_options() const {
  model::BackendOptions o;
  o.device = device;
  o.max_seqs = max_num_seqs;
  o.max_step_tokens = prefill_step_tokens;  // the step buffers' rows
  o.kv_tokens = kv_token_capacity;
  o.kv_fp8 = kv_cache_dtype == "fp8";
  o.ssm_state = ssm_state;
  o.max_spec_seqs = max_spec_seqs;
  o.max_spec_rows = std::max<int64_t>(1, max_spec_rows);
  o.prefix_cache_bytes = device == "cuda" ? prefix_cache_bytes : 0;
  o.sampled_logits_only = true;
  o.parallel = parallel;
  return o;
}

EngineOptions MemoryPlan::engine_options() const {
  EngineOptions e;
  e.prefix_cache_bytes = prefix_cache_bytes;
  e.limits.max_num_seqs = max_num_seqs;
  e.limits.max_step_tokens = max_step_tokens;
  e.limits.prefill_step_tokens = prefill_step_tokens;
  e.limits.kv_token_capacity = kv_token_capacity;
  e.max_model_len = max_model_len;
  return e;
}

}  // namespace nemotron::runtime
