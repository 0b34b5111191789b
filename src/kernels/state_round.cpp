#include "kernels/state_round.h"

namespace nemotron::kernels {

bool parse_state_dtype(const std::string& s, StateDType& out) {
  if (s == "float32") out = StateDType::F32;
  else if (s == "bfloat16") out = StateDType::BF16;
  else if (s == "float16") out = StateDType::F16;
  else return false;
  return true;
}

const char* state_dtype_name(StateDType d) {
  switch (d) {
    case StateDType::BF16: return "bfloat16";
    case StateDType::F16: return "float16";
    default: return "float32";
  }
}

}  // namespace nemotron::kernels
