#pragma once
// The prefix cache on disk (--prefix-cache-dir): a server that stops writes every cached
// prefix -- its tokens and the backend's snapshot bytes -- and the next one with the same model
// reads them back, so a long agent session resumes after a restart without re-prefilling.
// One file per prefix, DIR/prefix-<k>.bin, k in least-recently-used-first order:
//   "NMTPFX02" | fingerprint u64 | tokens n i64 | ids int32[n] | bytes m i64 | snapshot[m]
//     | floats r i64 | head row float32[r]
// (the head row: the hidden row of the prefix's last position, which a sequence resuming there
// pairs with its next token for the MTP head; r = 0 without one). "NMTPFX01" files (no row)
// are still read.
// The fingerprint covers config.json, every tensor's name, dtype, shape and size, and the
// first bytes of every tensor: files of another model or checkpoint are skipped.
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "model/backend.h"
#include "runtime/prefix_cache.h"

namespace nemotron::runtime {

uint64_t model_fingerprint(const model::Model& m);

// Replaces DIR's prefix files with the cache's entries. Returns the number written; throws
// nemotron::Error naming the file when one cannot be written.
// `head_rows`: snapshot id -> head row (absent ids: none).
int save_prefixes(const std::string& dir, uint64_t fingerprint, const PrefixCache& cache,
                  const model::Backend& backend, const std::map<uint64_t, std::vector<float>>* head_rows = nullptr);

// Imports DIR's prefix files into the backend (ids from next_id on) and the index, oldest
// first, each registered before its import (older entries evicted to fit the budget, as the
// engine does). A file of another model or a damaged one is skipped with a line on `log`.
// Returns the number loaded; a missing DIR loads nothing.
// The head rows read go to `head_rows` (by the new ids; those of entries evicted while loading
// are erased), when given.
int load_prefixes(const std::string& dir, uint64_t fingerprint, PrefixCache& cache, model::Backend& backend,
                  uint64_t& next_id, std::ostream& log, std::map<uint64_t, std::vector<float>>* head_rows = nullptr);

}  // namespace nemotron::runtime
