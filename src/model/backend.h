#pragma once
// The one model interface: every command (score, generate, eval, run, serve, bench's
// batched decode) and the runtime's engine drive a model through it, whatever the device.
// Two implementations: the CPU reference (model/cpu) and the CUDA model (model/cuda).
//
// A backend owns `slots()` sequence slots (recurrent state, KV pages, the MTP head's state
// and the sampler's penalty state). One step runs a batch of chunks -- prefill chunks and
// decode tokens mixed, one chunk per slot -- and returns, per chunk, the token sampled from
// its last row (when asked) and its logits (when asked). Sampling happens where the logits
// are (kernels/sampling.h: the same semantics on both devices; on the GPU only ids and the
// requested logprobs are copied back). A batch step gives each sequence what it would get
// alone (the CPU bit for bit; the GPU too at decode batch sizes that take the same kernels).
//
// step() = begin_step() + finish_step(): begin_step enqueues the work (on the GPU it returns
// before the step ran), finish_step waits for it and returns the results, so a caller can do
// host work while the device computes. The chunks' ids and sampling params must stay valid
// until finish_step returns.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/sampling.h"
#include "kernels/state_round.h"
#include "model/checkpoint/weights.h"
#include "model/parallel/parallel_config.h"

namespace nemotron::model {

using kernels::SampleResult;
using kernels::SamplingParams;
using kernels::TokenLogprob;

struct BackendOptions {
  std::string device = "cpu";       // "cpu" or "cuda"
  int max_seqs = 1;                 // sequence slots
  int64_t max_step_tokens = 512;    // rows of one step (CUDA buffers are sized for it)
  int64_t kv_tokens = 4096;         // CUDA: KV positions of all slots together
  // FP8 E4M3 KV cache with the checkpoint's per-layer k/v scales (kernels/numeric.h
  // kv_fp8_encode): CUDA stores bytes; the CPU reference emulates it (fp32 rows holding the
  // values the FP8 cache returns).
  bool kv_fp8 = false;
  // The SSM state's storage type and rounding (kernels/state_round.h): CUDA stores 16-bit
  // slots; the CPU reference emulates them (fp32 holding the rounded values).
  kernels::SsmStateFormat ssm_state;
  bool verbose = false;             // print upload progress
  // CUDA: steps ask for logits only where rows sample (the engine's steps; CudaModelOptions).
  bool sampled_logits_only = false;
  // CUDA: speculative decoding's roll-back memory (Backend::keep_limits): keep_states chunks
  // per step (at most max_seqs; 0: no roll-back) and rows per such chunk (1 + drafts).
  int max_spec_seqs = 8;
  int64_t max_spec_rows = 17;
  // CUDA: device memory for prefix-cache snapshots (0: none, can_snapshot() is false). The CPU
  // backend keeps its snapshots in host memory, bounded by the engine's budget alone.
  int64_t prefix_cache_bytes = 0;
  // Tensor / expert parallelism (model/parallel/parallel_config.h): the CPU backend runs the
  // sharded forward with ranks as threads; the CUDA backend with a CudaModel per rank, one GPU
  // each over NCCL (model/cuda/cuda_ranks.h; NEMOTRON_SAME_DEVICE_RANKS=1: all on GPU 0).
  ParallelConfig parallel;
};

// What a backend can keep for roll_back at once (Backend::keep_limits): keep_states chunks in
// one step, and rows in each of them. The engine verifies no more sequences per step than
// `chunks` and no more than `rows` - 1 drafts.
struct KeepLimits {
  int64_t chunks = INT64_MAX;
  int64_t rows = INT64_MAX;
};

enum class LogitsOut { None, Last, All };

// One sequence's part of a step: T tokens for the sequence in `slot`.
struct StepChunk {
  int slot = 0;
  const int32_t* ids = nullptr;
  int64_t T = 0;
  // The sequence's sampling settings (penalties included); nullptr = greedy, no penalties.
  // Given on every chunk of a penalized sequence, so that its prompt tokens are recorded.
  const SamplingParams* sampling = nullptr;
  bool sample = false;              // draw tokens from the last `sample_rows` rows
  int64_t sample_rows = 1;          // 1 <= sample_rows <= T; row j of them draws token draw + j
  uint64_t seed = 0;                // the sequence's seed (SamplingParams::seed or the caller's pick)
  uint64_t draw = 0;                // which of the sequence's tokens this is (0 = first)
  LogitsOut logits = LogitsOut::None;
  // Keep what roll_back(slot, pos) needs to cut the sequence back to any position inside this
  // chunk (speculative decoding: a verify chunk of the last token and K drafts).
  bool keep_states = false;
  // Constrained decoding: sample_rows masks of ceil(V / 32) words, bit t of row j set when
  // token t may be drawn there (the others' logits become -inf before sampling -- in the
  // logits the step returns too -- so logprobs are those of the allowed tokens); nullptr = all.
  const uint32_t* allowed = nullptr;
};

struct StepOutput {
  SampleResult sample;              // the last sampled row's draw; token -1 unless chunk.sample
  std::vector<SampleResult> samples;  // every sampled row's draw, in row order (sample == back())
  std::vector<float> logits;        // [rows, V]: 1 row (Last), T rows (All), empty (None)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const Model& model() const = 0;
  virtual const char* device() const = 0;  // "cpu" or "cuda"
  virtual int slots() const = 0;
  // A fresh sequence (empty state, empty KV, empty penalty state); throws when all are in use.
  virtual int acquire_slot() = 0;
  virtual void release_slot(int slot) = 0;  // unknown or free slots are ignored
  virtual int64_t position(int slot) const = 0;  // tokens processed so far

  // Validates the chunks (distinct slots in use, ids in the vocabulary, rows within
  // max_step_tokens, KV room) and throws nemotron::Error before anything runs.
  virtual void begin_step(const std::vector<StepChunk>& chunks) = 0;
  virtual std::vector<StepOutput> finish_step() = 0;
  // True when begin_step computes the whole step before it returns (the CPU): the engine then
  // delivers the previous step's tokens before the next step, not while it runs.
  virtual bool steps_in_begin() const { return false; }
  std::vector<StepOutput> step(const std::vector<StepChunk>& chunks) {
    begin_step(chunks);
    return finish_step();
  }

  // Final-normed hidden rows (fp32 [rows, H], every row of the last step in chunk order, or
  // of the last mtp_forward): the MTP head's input.
  virtual std::vector<float> last_hidden() const = 0;

  // Speculative decoding. roll_back cuts `slot`'s trunk back to `pos` tokens, pos inside the
  // last step's chunk for the slot, which must have had keep_states: K/V lengths, Mamba conv
  // and SSM states and the sampler's penalty state become exactly what they would be had only
  // the tokens before `pos` been fed (and only those rows' draws made). mtp_roll_back cuts the
  // MTP head's state back to `pos` (its blocks have no recurrent state: lengths only).
  // can_roll_back: whether this backend implements them (the engine speculates only then);
  // keep_limits: how many keep_states chunks (and rows each) one step may have (more is an
  // Error at begin_step). A chunk's kept data lasts until the slot's next step, its roll_back
  // or its release; on the CUDA backend also until a later step needs the room for its own
  // keep_states chunks (then roll_back of the older one is an Error).
  virtual bool can_roll_back() const = 0;
  virtual KeepLimits keep_limits() const { return {}; }
  virtual void roll_back(int slot, int64_t pos) = 0;
  virtual void mtp_roll_back(int slot, int64_t pos) = 0;

  // Prefix caching (runtime/prefix_cache.h). A snapshot is a sequence's whole state at its
  // position -- Mamba conv and SSM states, the K/V rows of positions [0, pos), the MTP head's
  // state -- kept by the backend under an id the caller chooses. Loading one into a fresh slot
  // continues exactly as the snapshotted sequence would (the penalty state is not part of it:
  // observe_prompt marks tokens seen without feeding them). can_snapshot: whether this backend
  // implements them (the engine caches prefixes only then). snapshot_capacity: the memory all
  // snapshots together may take (the CUDA backend's snapshot pool; INT64_MAX on the CPU): any
  // set of snapshots whose snapshot_bytes sum to at most this fits, and save_snapshot throws
  // beyond it.
  virtual bool can_snapshot() const = 0;
  virtual int64_t snapshot_bytes(int64_t pos) const = 0;  // the memory one at `pos` takes
  virtual int64_t snapshot_capacity() const { return INT64_MAX; }
  virtual void save_snapshot(int slot, uint64_t id) = 0;  // throws when `id` is taken
  virtual void load_snapshot(uint64_t id, int slot) = 0;  // `slot` must be fresh (position 0)
  virtual void drop_snapshot(uint64_t id) = 0;            // unknown ids are ignored
  // A snapshot as bytes (to keep on disk) and back; import throws for bytes of another shape.
  virtual std::vector<uint8_t> export_snapshot(uint64_t id) const = 0;
  virtual void import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) = 0;
  virtual void observe_prompt(int slot, const int32_t* ids, int64_t n) = 0;

  // The MTP head (config.has_mtp()) for `slot`, with its own state and position: row i is fed
  // (token next_ids[i], hidden row i) (fp32 [T, H], host). Returns logits [rows, V] (every row
  // or the last one); last_hidden() then holds the head's output rows (for chaining drafts).
  virtual std::vector<float> mtp_forward(int slot, const int32_t* next_ids, const float* hidden, int64_t T,
                                         bool all_logits) = 0;
  virtual int64_t mtp_position(int slot) const = 0;

  // Greedy drafts for several slots at once (speculative decoding). For each input the head is
  // fed its pending (token, hidden) pairs (T >= 1 rows, as mtp_forward) and drafts K tokens:
  // draft 1 = argmax of the last fed row's logits, draft k + 1 = argmax after feeding (draft
  // k, the head's own output row of draft k); then the head's position is cut back to after
  // the fed pairs (mtp_roll_back). Returns [inputs][K]. This default does one input at a time
  // with mtp_forward; a backend may batch the inputs in one head step per draft (CUDA: one
  // read of the head's weights and the argmax on the device for all of them).
  struct DraftInput {
    int slot = 0;
    const int32_t* next_ids = nullptr;  // [T]
    const float* hidden = nullptr;      // fp32 [T, H], host
    int64_t T = 0;
  };
  virtual std::vector<std::vector<int32_t>> mtp_draft(const std::vector<DraftInput>& inputs, int K);
  // Feeds (token, hidden) pairs to the MTP heads of several slots without drafting (a head
  // follows its sequence while speculation pauses); the logits are not needed. This default
  // calls mtp_forward per input; CUDA feeds them together, without the lm_head.
  virtual void mtp_feed(const std::vector<DraftInput>& inputs);

  // Test hook: while on, every MoE block records the experts it selected; routing()[b] is
  // block b's ids [rows, k] from the last call that ran it (trunk block l = l, MTP block
  // j = num_layers + j; rows in chunk order), empty for blocks the last call did not run.
  virtual void record_routing(bool on) = 0;
  virtual std::vector<std::vector<int32_t>> routing() const = 0;
};

// Throws nemotron::Error for an unknown device, or "cuda" without a CUDA device / backend.
// Over several nodes (options.parallel.nnodes > 1, model/nodes/node_backend.h) a follower
// node's call runs node 0's calls and ends with FollowerDone instead of returning.
std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options);

// "cuda" when this build has the CUDA backend and a device is present, else "cpu": every
// command's default.
std::string default_device();
// `requested` ("", "cpu", "cuda") -> the device to use; "" = default_device(). Throws for
// "cuda" without a device and for anything else.
std::string resolve_device(const std::string& requested);

}  // namespace nemotron::model
