#pragma once
// What a model stores and what one decoded token reads, by component, from the engine's
// own view of the weights (formats as loaded). Used by `inspect` (roofline) and `bench`
// (achieved bandwidth).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/state_round.h"

#include "model/checkpoint/weights.h"

namespace nemotron::model {

struct ComponentBytes {
  std::string component;      // "lm_head", "mamba in/out_proj", "routed experts (active)", ...
  int64_t params = 0;         // parameters read per token (active)
  int64_t bytes = 0;          // bytes read per decoded token, batch 1
};

struct ModuleFormatCount {
  std::string module_class;   // "mamba.in_proj", "experts.up_proj", "attention.q_proj", ...
  std::map<std::string, int> formats;  // "NVFP4" -> count
  int64_t params = 0;         // all stored parameters of the class
  int64_t bytes = 0;          // all stored bytes of the class
};

struct ModelAccounting {
  std::vector<ModuleFormatCount> modules;  // trunk and MTP linears, by class
  std::vector<ComponentBytes> per_token;   // trunk, batch-1 decode
  int64_t total_params = 0;                // trunk (all experts)
  int64_t active_params = 0;               // per token, excl. embedding table, incl. lm_head
  int64_t mtp_params = 0;
  int64_t weight_bytes_per_token = 0;      // sum of per_token weight rows
  int64_t state_bytes_per_token = 0;       // SSM state read + write (its storage type) + conv window
  int64_t kv_bytes_per_token_per_position = 0;  // K+V bytes read per cached position (BF16 or FP8)
};

// ssm: the SSM state's storage type (--mamba-ssm-cache-dtype), for state_bytes_per_token;
// kv_element_bytes: 2 (BF16 KV) or 1 (FP8), for kv_bytes_per_token_per_position.
ModelAccounting account(const Model& model, kernels::StateDType ssm = kernels::StateDType::F32,
                        int64_t kv_element_bytes = 2);

}  // namespace nemotron::model
