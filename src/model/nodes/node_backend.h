#pragma once
// One model over several nodes (docs/parallel.md, "Several nodes"): one process per node,
// started with the same command and flags and its own --node-rank. The processes meet at
// --master-addr:--master-port (model/parallel/socket_mesh.h) and each holds its node's ranks:
// on the CPU one rank per node, its collectives over the sockets; on CUDA the node's GPUs as
// its ranks (CudaRanks), their collectives over NCCL, joined through the ids of node 0's hello.
//
// Node 0, the leader, runs the command: make_backend returns a Backend that forwards each
// call that changes state (steps, MTP calls, slots, roll-backs, snapshots) to every follower
// before or after running it on its own rank, so that every node makes the same calls in the
// same order and meets the others in the same collectives. Results stay on node 0 (every rank
// has the same logits: they are gathered). On a follower, make_backend never returns: it runs
// the calls node 0 sends until node 0's backend goes away, then throws FollowerDone, which
// main() turns into the exit status. A node that fails or disconnects ends the run on every
// node: the others print which one and exit with status 1 (each node watches its links).
//
// The leader's BackendOptions (its memory plan) are the run's: the hello carries them to the
// followers, with the model's shape, which must match theirs (an Error naming what differs).
#include <memory>

#include "model/backend.h"

namespace nemotron::model {

// Thrown on a follower node once the leader ended the run (status 0) or failed (non-zero);
// not a std::exception, so that only main() catches it.
struct FollowerDone {
  int status = 0;
};

// options.parallel.multi_node(): the leader's Backend (node 0), or throws FollowerDone.
std::unique_ptr<Backend> make_node_backend(const Model& model, const BackendOptions& options);

}  // namespace nemotron::model
