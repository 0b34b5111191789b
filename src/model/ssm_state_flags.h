#pragma once
// The --mamba-ssm-cache-dtype / --mamba-ssm-rounding flags (the SSM state's storage,
// kernels/state_round.h), one definition for every command that runs the model: score,
// generate, eval, bench, and serve / run through the service flags (server/service_flags.h).
// Header-only (CLI11).
#include <CLI/CLI.hpp>

#include <string>

#include "kernels/state_round.h"
#include "model/checkpoint/config.h"
#include "util/error.h"

namespace nemotron::model {

struct SsmStateFlags {
  std::string dtype = "auto";  // auto: config.json's mamba_ssm_cache_dtype
  std::string rounding = "stochastic";
};

inline void add_ssm_state_flags(CLI::App& app, SsmStateFlags& f) {
  app.add_option("--mamba-ssm-cache-dtype", f.dtype,
                 "SSM state storage: auto (config.json's mamba_ssm_cache_dtype, float32 when absent), float32, "
                 "bfloat16, float16 (half the state memory and traffic; the CPU emulates 16-bit storage)")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}));
  app.add_option("--mamba-ssm-rounding", f.rounding,
                 "Rounding of a 16-bit SSM state when written back: stochastic (default) or nearest")
      ->check(CLI::IsMember({"stochastic", "nearest"}));
}

// The format the flags ask for on model `c`.
inline kernels::SsmStateFormat resolve_ssm_state(const SsmStateFlags& f, const Config& c) {
  kernels::SsmStateFormat out;
  const std::string& d = f.dtype == "auto" ? c.mamba_ssm_cache_dtype : f.dtype;
  if (!kernels::parse_state_dtype(d, out.dtype))
    throw Error("--mamba-ssm-cache-dtype: unsupported \"" + d + "\" (auto, float32, bfloat16, float16)");
  out.stochastic = f.rounding != "nearest";
  return out;
}

}  // namespace nemotron::model
