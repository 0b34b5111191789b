// CudaModel's state primitives besides the step (see cuda_model.h): speculative decoding's
// roll-back (kept states and rows of keep_states chunks, Mamba replays queued by roll_back and
// enqueued in a batch by settle(), the penalty repair), the MTP head's roll-back, prefix-cache
// snapshots (copies into a pool of fixed-size units; exported to and imported from host bytes
// for --prefix-cache-dir) and observe_prompt.
//
// Roll-back by replay: a keep_states chunk's step first copies its slot's conv windows and SSM
// states (every trunk Mamba layer) into the chunk's entry of spec_state, and, right after each
// Mamba layer's in_proj, the chunk's rows' xBC | dt columns into spec_saved. roll_back(pos)
// keeping n of the chunk's T rows (0 <= n < T) copies the saved states back and runs the same
// conv1d_prefill_silu_cuda and (sequential) ssm_scan_cuda over the first n saved rows: the same
// kernels on the same inputs, so the states are bit for bit those the step had after row n - 1.
// Nothing is kept per row of state (a row of Nano's state is ~46 MiB; a saved row ~0.3 MiB).
//
// Every copy and kernel here goes on the model's stream, after the work before it and before
// the next step (whose input upload, a memcpy, also orders every kernel of the step after it).
#ifdef NEMOTRON_HAVE_CUDA

#include <algorithm>
#include <cstring>

#include "kernels/copy_cuda.h"
#include "kernels/mamba_cuda.h"
#include "kernels/sampling_cuda.h"
#include "model/cuda/cuda_model_internal.h"

namespace nemotron::model {

using cuda_detail::check;
using cuda_detail::kPage;
using kernels::CopyBlock;

namespace {

std::string slot_name(int slot) { return "slot " + std::to_string(slot); }

}  // namespace

void CudaModel::Impl::init_state_pools() {
  kept.assign(static_cast<std::size_t>(opt.max_seqs), Kept{});
  free_entries.clear();
  for (int64_t e = spec_entries - 1; e >= 0; --e) free_entries.push_back(static_cast<int>(e));
  snap_layout = cuda_detail::snapshot_layout(model.config, opt.kv_fp8, opt.ssm_state.dtype);
  if (snap_layout.unit != snap_unit) throw Error("CUDA model: the snapshot unit differs from the planned one");
  free_units.clear();
  for (int64_t u = snap_units - 1; u >= 0; --u) free_units.push_back(static_cast<int32_t>(u));
}

void CudaModel::Impl::add_copy(std::vector<CopyBlock>& list, const void* a, void* b, int64_t bytes, bool forward) {
  auto* pa = static_cast<uint8_t*>(const_cast<void*>(a));
  auto* pb = static_cast<uint8_t*>(b);
  for (int64_t off = 0; off < bytes; off += kernels::kCopyPiece) {
    const int64_t n = std::min(kernels::kCopyPiece, bytes - off);
    if (forward) list.push_back({pa + off, pb + off, n});
    else list.push_back({pb + off, pa + off, n});
  }
}

void CudaModel::Impl::copy_blocks(const std::vector<CopyBlock>& list) {
  // Pageable uploads: cudaMemcpyAsync has read the host table when it returns; the device
  // table is rewritten only after the launch before it (stream order).
  for (std::size_t at = 0; at < list.size(); at += static_cast<std::size_t>(copy_table_entries)) {
    const std::size_t n = std::min(static_cast<std::size_t>(copy_table_entries), list.size() - at);
    check(cudaMemcpyAsync(copy_table, list.data() + at, n * sizeof(CopyBlock), cudaMemcpyHostToDevice, stream),
          "copy table");
    kernels::copy_blocks_cuda(copy_table, static_cast<int64_t>(n), stream);
  }
}

void CudaModel::Impl::upload_aux(int64_t at, const int32_t* v, int64_t n) {
  if (n <= 0) return;
  if (at < 0 || at + n > aux_ints)
    throw Error("CUDA model: the aux scratch holds " + std::to_string(aux_ints) + " ints");
  check(cudaMemcpyAsync(aux + at, v, static_cast<std::size_t>(n) * 4, cudaMemcpyHostToDevice, stream), "aux upload");
}

void CudaModel::Impl::cut(Stack& st, int slot, int64_t pos) {
  st.pos[slot] = pos;
  auto& pg = st.pages[slot];
  const auto keep = static_cast<std::size_t>((pos + kPage - 1) / kPage);
  // Pages past the new end: their contents are never read (attention reads positions below
  // its query's); block-table entries are rewritten when pages are appended again.
  while (pg.size() > keep) {
    st.free_pages.push_back(pg.back());
    pg.pop_back();
  }
}

void CudaModel::Impl::drop_kept(int slot) {
  Kept& k = kept.at(static_cast<std::size_t>(slot));
  if (k.entry >= 0) free_entries.push_back(k.entry);
  k = Kept{};
  for (auto it = replays.begin(); it != replays.end();) {
    if (it->slot != slot) {
      ++it;
      continue;
    }
    free_entries.push_back(it->entry);
    it = replays.erase(it);
  }
}

void CudaModel::Impl::begin_keep(const std::vector<model::StepChunk>& chunks, const std::vector<StepChunk>& steps) {
  const Config& c = model.config;
  const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
  const int64_t ssm = ssm_slot_bytes();
  const int64_t words = (c.vocab_size + 31) / 32, W = c.in_proj_dim(), di = c.d_inner(), Lm = spec_layers;
  const int64_t Wk = spec_row_width, F = spec_layer_floats;
  // Entries: free ones, else those of slots outside this step (their kept chunks are given up).
  std::vector<bool> in_step(static_cast<std::size_t>(opt.max_seqs), false);
  int64_t need = 0, total = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    in_step[static_cast<std::size_t>(chunks[i].slot)] = true;
    if (chunks[i].keep_states) {
      ++need;
      total += chunks[i].T;
    }
  }
  for (int slot = 0; slot < opt.max_seqs && static_cast<int64_t>(free_entries.size()) < need; ++slot)
    if (!in_step[static_cast<std::size_t>(slot)] && kept[static_cast<std::size_t>(slot)].entry >= 0) drop_kept(slot);
  if (static_cast<int64_t>(free_entries.size()) < need)
    throw Error("CUDA model: " + std::to_string(need) + " keep_states chunks but " +
                std::to_string(free_entries.size()) + " free entries (internal)");
  std::vector<CopyBlock> saves;
  // Row saves, [layer, keep row]: the chunk's in_proj rows (xBC | dt columns) into its entry.
  std::vector<CopyBlock> rows(static_cast<std::size_t>(Lm * total));
  int64_t row0 = 0, r = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const model::StepChunk& ch = chunks[i];
    if (ch.keep_states) {
      const int e = free_entries.back();
      free_entries.pop_back();
      Kept& k = kept[static_cast<std::size_t>(ch.slot)];
      k = Kept{};
      k.valid = true;
      k.entry = e;
      k.serial = pending.serial;
      k.pos0 = trunk.pos[ch.slot];
      k.T = ch.T;
      k.S = ch.sample ? ch.sample_rows : 0;
      k.penalized = ch.sampling && ch.sampling->penalized();
      k.ids.assign(ch.ids, ch.ids + ch.T);
      for (const DBlock& b : trunk.blocks) {
        if (b.kind != LayerKind::Mamba) continue;
        const int64_t l = b.mamba_index;
        float* dst = spec_state + (e * Lm + l) * F;
        add_copy(saves, b.m.conv_state + ch.slot * conv, dst, conv * 4, true);
        add_copy(saves, b.m.ssm_state + ch.slot * ssm, dst + spec_conv_pad, ssm, true);
        for (int64_t t = 0; t < ch.T; ++t) {
          uint16_t* saved = spec_saved + ((e * Lm + l) * spec_rows + t) * Wk;
          rows[static_cast<std::size_t>(l * total + r + t)] = {big + (row0 + t) * W + di, saved, Wk * 2};
        }
      }
      if (k.penalized) add_copy(saves, pen_seen + ch.slot * words, spec_seen + e * words, words * 4, true);
      r += ch.T;
    }
    row0 += steps[i].T;
  }
  copy_blocks(saves);
  if (!rows.empty())
    check(cudaMemcpyAsync(spec_table, rows.data(), rows.size() * sizeof(CopyBlock), cudaMemcpyHostToDevice, stream),
          "row-save table");
  keep_rows = total;
}

void CudaModel::Impl::settle() {
  if (replays.empty()) return;
  const Config& c = model.config;
  const int64_t C = c.conv_dim(), conv = (c.conv_kernel - 1) * C;
  const int64_t ssm = ssm_slot_bytes();
  const int64_t words = (c.vocab_size + 31) / 32, Lm = spec_layers, Wk = spec_row_width, F = spec_layer_floats;
  const int64_t stage_rows = spec_entries * spec_rows;
  // Groups of replays whose rows fit the step buffers the kernels write (conv_out, ssm_y).
  for (std::size_t i = 0; i < replays.size();) {
    std::vector<CopyBlock> list;
    std::vector<int32_t> cu{0}, slots, row_pos;  // row_pos: each replayed row's position
    int64_t rows = 0;
    std::size_t j = i;
    for (; j < replays.size(); ++j) {
      const Replay& rp = replays[j];
      if (j > i && rows + rp.n > opt.max_step_tokens) break;
      for (const DBlock& b : trunk.blocks) {
        if (b.kind != LayerKind::Mamba) continue;
        const int64_t l = b.mamba_index;
        const float* saved = spec_state + (rp.entry * Lm + l) * F;
        add_copy(list, saved, b.m.conv_state + rp.slot * conv, conv * 4, true);
        add_copy(list, saved + spec_conv_pad, b.m.ssm_state + rp.slot * ssm, ssm, true);
        if (rp.n > 0)
          add_copy(list, spec_saved + (rp.entry * Lm + l) * spec_rows * Wk, spec_stage + (l * stage_rows + rows) * Wk,
                   rp.n * Wk * 2, true);
      }
      if (rp.penalized) add_copy(list, spec_seen + rp.entry * words, pen_seen + rp.slot * words, words * 4, true);
      if (rp.n > 0) {
        rows += rp.n;
        cu.push_back(static_cast<int32_t>(rows));
        slots.push_back(rp.slot);
        for (int64_t t = 0; t < rp.n; ++t) row_pos.push_back(static_cast<int32_t>(rp.pos0 + t));
      }
    }
    copy_blocks(list);
    const auto B = static_cast<int64_t>(slots.size());
    if (B > 0) {
      upload_aux(0, cu.data(), B + 1);
      upload_aux(B + 1, slots.data(), B);
      upload_aux(2 * B + 1, row_pos.data(), rows);
      for (const DBlock& b : trunk.blocks) {
        if (b.kind != LayerKind::Mamba) continue;
        // mamba_block's prefill path over the saved rows: xBC at column 0, dt at C.
        const uint16_t* stage = spec_stage + b.mamba_index * stage_rows * Wk;
        kernels::ConvPrefillArgs ca = conv_prefill_args(b);
        ca.xbc = stage;
        ca.xbc_stride = Wk;
        ca.slot = aux + B + 1;
        ca.cu_rows = aux;
        ca.B = B;
        ca.rows = rows;
        ca.out = conv_out;
        kernels::conv1d_prefill_silu_cuda(ca, stream);
        kernels::SsmScanArgs sa;
        mamba_layer_args(b, sa);
        sa.xbc = conv_out;
        sa.xbc_stride = C;
        sa.dt_raw = stage + C;
        sa.dt_stride = Wk;
        sa.row_pos = aux + 2 * B + 1;  // a 16-bit state is rounded as the step that kept the rows would
        sa.slot = aux + B + 1;
        sa.cu_rows = aux;
        sa.B = B;
        sa.rows = rows;
        sa.y = ssm_y;
        // Sequential, as the keep_states step that kept these rows (mamba_block): the same
        // arithmetic per row.
        sa.algo = 1;
        kernels::ssm_scan_cuda(sa, stream);
      }
    }
    i = j;
  }
  // The penalty state: seen words restored above; now the kept rows' marks, and the dropped
  // draws' counts taken back.
  std::vector<int32_t> seen, seen_of, drop, drop_of;
  for (const Replay& rp : replays) {
    if (!rp.penalized) continue;
    seen.insert(seen.end(), rp.seen_ids.begin(), rp.seen_ids.end());
    seen_of.insert(seen_of.end(), rp.seen_ids.size(), rp.slot);
    drop.insert(drop.end(), rp.drop_ids.begin(), rp.drop_ids.end());
    drop_of.insert(drop_of.end(), rp.drop_ids.size(), rp.slot);
  }
  const auto m = static_cast<int64_t>(seen.size()), d = static_cast<int64_t>(drop.size());
  if (m + d > 0) {
    upload_aux(0, seen.data(), m);
    upload_aux(m, seen_of.data(), m);
    upload_aux(2 * m, drop.data(), d);
    upload_aux(2 * m + d, drop_of.data(), d);
    kernels::penalty_mark_seen_cuda(aux, aux + m, m, pen_seen, c.vocab_size, stream);
    kernels::penalty_count_cuda(aux + 2 * m, aux + 2 * m + d, d, -1, pen_counts, c.vocab_size, stream);
  }
  for (const Replay& rp : replays) free_entries.push_back(rp.entry);
  replays.clear();
}

void CudaModel::Impl::snapshot_copies(int slot, const Snapshot& snap, bool save, std::vector<CopyBlock>& list) const {
  const Config& c = model.config;
  const cuda_detail::SnapshotLayout& L = snap_layout;
  const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
  const int64_t ssm = ssm_slot_bytes();
  // Mamba states: byte v of the packed states lies in unit units[v / unit] at v % unit.
  int64_t v = 0;
  auto mamba = [&](void* p, int64_t bytes) {
    auto* q = static_cast<uint8_t*>(p);
    while (bytes > 0) {
      const int64_t u = snap.units[static_cast<std::size_t>(v / L.unit)], off = v % L.unit;
      const int64_t n = std::min(bytes, L.unit - off);
      add_copy(list, q, snap_pool + u * L.unit + off, n, save);
      q += n;
      v += n;
      bytes -= n;
    }
  };
  for (const Stack* st : {&trunk, &mtp})
    for (const DBlock& b : st->blocks)
      if (b.kind == LayerKind::Mamba) {
        mamba(b.m.conv_state + slot * conv, conv * 4);
        mamba(b.m.ssm_state + slot * ssm, ssm);
      }
  // K/V: logical page j of both stacks in unit units[mamba_units + j].
  const int64_t pages = (snap.pos + kPage - 1) / kPage;
  for (int64_t j = 0; j < pages; ++j) {
    uint8_t* unit = snap_pool + static_cast<int64_t>(snap.units[static_cast<std::size_t>(L.mamba_units + j)]) * L.unit;
    int64_t off = 0;
    for (const Stack* st : {&trunk, &mtp}) {
      const int64_t spos = st == &trunk ? snap.pos : snap.mtp_pos;
      const bool have = j < (spos + kPage - 1) / kPage;
      for (const DBlock& b : st->blocks) {
        if (b.kind != LayerKind::Attention) continue;
        if (have) {
          const int64_t phys = st->pages[static_cast<std::size_t>(slot)][static_cast<std::size_t>(j)];
          add_copy(list, static_cast<uint8_t*>(b.a.cache.k) + phys * L.page_bytes, unit + off, L.page_bytes, save);
          add_copy(list, static_cast<uint8_t*>(b.a.cache.v) + phys * L.page_bytes, unit + off + L.page_bytes,
                   L.page_bytes, save);
        }
        off += 2 * L.page_bytes;
      }
    }
  }
}

std::vector<std::pair<uint8_t*, int64_t>> CudaModel::Impl::snapshot_pieces(const Snapshot& snap) const {
  const cuda_detail::SnapshotLayout& L = snap_layout;
  std::vector<std::pair<uint8_t*, int64_t>> out;
  // Bytes [at, at + n) of the snapshot's units taken in order (its unit image).
  auto image = [&](int64_t at, int64_t n) {
    while (n > 0) {
      const int64_t u = snap.units[static_cast<std::size_t>(at / L.unit)], off = at % L.unit;
      const int64_t m = std::min(n, L.unit - off);
      out.emplace_back(snap_pool + u * L.unit + off, m);
      at += m;
      n -= m;
    }
  };
  image(0, L.mamba_bytes);
  int64_t trunk_kv = 0;
  for (const DBlock& b : trunk.blocks) trunk_kv += b.kind == LayerKind::Attention;
  const int64_t pages = (snap.pos + kPage - 1) / kPage, mtp_pages = (snap.mtp_pos + kPage - 1) / kPage;
  for (int64_t j = 0; j < pages; ++j) {
    // Page j's unit: the trunk's blocks' K | V pages, then the MTP head's (snapshot_copies).
    const int64_t unit0 = (L.mamba_units + j) * L.unit;
    const int64_t blocks = j < mtp_pages ? L.kv_blocks : trunk_kv;
    if (blocks > 0) image(unit0, blocks * 2 * L.page_bytes);
  }
  return out;
}

// ---- The public calls.

bool CudaModel::can_roll_back() const { return impl_->spec_entries > 0; }

KeepLimits CudaModel::keep_limits() const {
  const Impl& s = *impl_;
  if (s.spec_entries == 0) return {0, 0};
  return {s.spec_entries, s.spec_rows};
}

void CudaModel::roll_back(int slot, int64_t pos) {
  Impl& s = *impl_;
  if (s.pending.active) throw Error("CUDA model: roll_back while a step is in flight (finish_step first)");
  if (slot < 0 || slot >= slots() || !s.in_use[static_cast<std::size_t>(slot)])
    throw Error("CUDA model: " + slot_name(slot) + " is not in use");
  Impl::Kept& k = s.kept[static_cast<std::size_t>(slot)];
  if (!k.valid)
    throw Error("CUDA model: roll_back of " + slot_name(slot) +
                " without a kept step (keep_states, in the slot's last step, not given up to a later step's)");
  if (pos < k.pos0 || pos > k.pos0 + k.T)
    throw Error("CUDA model: roll_back to " + std::to_string(pos) + " outside the kept chunk [" +
                std::to_string(k.pos0) + ", " + std::to_string(k.pos0 + k.T) + "]");
  if (k.S > 0 && static_cast<int64_t>(k.draws.size()) != k.S)
    throw Error("CUDA model: roll_back of " + slot_name(slot) + " before its step's draws were collected");
  const int64_t n = pos - k.pos0;
  k.valid = false;
  s.cut(s.trunk, slot, pos);
  if (n == k.T) {  // every row kept: the state is the step's own
    s.free_entries.push_back(k.entry);
    k.entry = -1;
    return;
  }
  Impl::Replay r;
  r.slot = slot;
  r.entry = k.entry;
  r.n = n;
  r.pos0 = k.pos0;
  r.penalized = k.penalized;
  k.entry = -1;
  if (k.penalized) {
    // As the CPU backend: the penalty state before the chunk, plus the marks of the kept rows
    // up to the first sampled one and the kept rows' draws (seen and counted); the step
    // counted every draw, so the dropped ones are taken back.
    const int64_t first = k.T - k.S;
    const int64_t prompt = std::min(n, k.S > 0 ? first + 1 : k.T);
    r.seen_ids.assign(k.ids.begin(), k.ids.begin() + prompt);
    const int64_t kept_draws = std::clamp<int64_t>(n - first, 0, k.S);
    r.seen_ids.insert(r.seen_ids.end(), k.draws.begin(), k.draws.begin() + kept_draws);
    r.drop_ids.assign(k.draws.begin() + kept_draws, k.draws.end());
  }
  s.replays.push_back(std::move(r));
}

void CudaModel::mtp_roll_back(int slot, int64_t pos) {
  Impl& s = *impl_;
  const Config& c = s.model.config;
  if (!c.has_mtp()) throw Error(c.path + ": this model has no MTP head (num_nextn_predict_layers is 0)");
  if (slot < 0 || slot >= slots() || !s.in_use[static_cast<std::size_t>(slot)])
    throw Error("CUDA model: " + slot_name(slot) + " is not in use");
  for (const auto& b : s.mtp.blocks)
    if (b.kind == LayerKind::Mamba)
      throw Error("CUDA model: the MTP head has recurrent blocks; it cannot be rolled back by length");
  if (pos < 0 || pos > s.mtp.pos[slot])
    throw Error("CUDA model: mtp_roll_back to " + std::to_string(pos) + " outside [0, " +
                std::to_string(s.mtp.pos[slot]) + "]");
  s.cut(s.mtp, slot, pos);
}

bool CudaModel::can_snapshot() const { return impl_->snap_units > 0; }

int64_t CudaModel::snapshot_bytes(int64_t pos) const { return impl_->snap_layout.bytes(std::max<int64_t>(0, pos)); }

int64_t CudaModel::snapshot_capacity() const { return impl_->snap_units * impl_->snap_unit; }

void CudaModel::save_snapshot(int slot, uint64_t id) {
  Impl& s = *impl_;
  if (slot < 0 || slot >= slots() || !s.in_use[static_cast<std::size_t>(slot)])
    throw Error("CUDA model: " + slot_name(slot) + " is not in use");
  if (s.snapshots.count(id)) throw Error("CUDA model: snapshot " + std::to_string(id) + " exists");
  if (s.snap_units == 0) throw Error("CUDA model: no snapshot pool (prefix_cache_bytes is 0)");
  Impl::Snapshot snap;
  snap.pos = s.trunk.pos[slot];
  snap.mtp_pos = s.mtp.blocks.empty() ? 0 : s.mtp.pos[slot];
  if (snap.mtp_pos > snap.pos)
    throw Error("CUDA model: snapshot of " + slot_name(slot) + ": the MTP head is at " + std::to_string(snap.mtp_pos) +
                ", past the trunk's " + std::to_string(snap.pos));
  const int64_t need = s.snap_layout.units(snap.pos);
  if (need > static_cast<int64_t>(s.free_units.size()))
    throw Error("CUDA model: a snapshot at position " + std::to_string(snap.pos) + " needs " + std::to_string(need) +
                " units of the snapshot pool, " + std::to_string(s.free_units.size()) + " of " +
                std::to_string(s.snap_units) + " are free (the cache's budget must not exceed snapshot_capacity())");
  // Queued roll-backs first: the snapshot is the slot's state as its position says.
  s.settle();
  snap.units.assign(s.free_units.end() - need, s.free_units.end());
  s.free_units.resize(s.free_units.size() - static_cast<std::size_t>(need));
  std::vector<CopyBlock> list;
  s.snapshot_copies(slot, snap, true, list);
  s.copy_blocks(list);
  s.snapshots.emplace(id, std::move(snap));
}

void CudaModel::load_snapshot(uint64_t id, int slot) {
  Impl& s = *impl_;
  const auto it = s.snapshots.find(id);
  if (it == s.snapshots.end()) throw Error("CUDA model: no snapshot " + std::to_string(id));
  if (slot < 0 || slot >= slots() || !s.in_use[static_cast<std::size_t>(slot)])
    throw Error("CUDA model: " + slot_name(slot) + " is not in use");
  const Impl::Snapshot& snap = it->second;
  const bool mtp = !s.mtp.blocks.empty();
  const auto fresh = [&](const cuda_detail::Stack& st) { return st.pos[slot] == 0 && st.pages[slot].empty(); };
  if (!fresh(s.trunk) || (mtp && !fresh(s.mtp)))
    throw Error("CUDA model: load_snapshot into " + slot_name(slot) + ", which is not fresh");
  const auto pages = [](int64_t pos) { return static_cast<std::size_t>((pos + kPage - 1) / kPage); };
  if (pages(snap.pos) > s.trunk.free_pages.size() || (mtp && pages(snap.mtp_pos) > s.mtp.free_pages.size()))
    throw Error("CUDA model: the KV cache is full");
  s.settle();
  s.drop_kept(slot);
  // The slot's pages for the snapshot's positions, and their block-table entries.
  check(cudaEventSynchronize(s.inputs_done), "step inputs");
  for (cuda_detail::Stack* st : {&s.trunk, &s.mtp}) {
    if (st == &s.mtp && !mtp) continue;
    const int64_t spos = st == &s.trunk ? snap.pos : snap.mtp_pos;
    auto& pg = st->pages[slot];
    while (pg.size() < pages(spos)) {
      pg.push_back(st->free_pages.back());
      st->free_pages.pop_back();
      st->block_tables_host[static_cast<std::size_t>(slot * s.num_pages) + pg.size() - 1] = pg.back();
    }
    if (!pg.empty()) {
      const std::size_t at = static_cast<std::size_t>(slot * s.num_pages);
      check(cudaMemcpyAsync(st->block_tables + at, st->block_tables_host + at, pg.size() * 4, cudaMemcpyHostToDevice,
                            s.stream),
            "block table");
    }
    st->pos[slot] = spos;
  }
  check(cudaEventRecord(s.inputs_done, s.stream), "step inputs");
  std::vector<CopyBlock> list;
  s.snapshot_copies(slot, snap, false, list);
  s.copy_blocks(list);
}

void CudaModel::drop_snapshot(uint64_t id) {
  Impl& s = *impl_;
  const auto it = s.snapshots.find(id);
  if (it == s.snapshots.end()) return;
  // A load enqueued from these units runs before any later save rewrites them (stream order).
  s.free_units.insert(s.free_units.end(), it->second.units.begin(), it->second.units.end());
  s.snapshots.erase(it);
}

namespace {

// export_snapshot's header: kSnapMagic, then kSnapFields int64: the page size, the K/V
// element bytes + 256 * the SSM state's StateDType (0: fp32, as before 16-bit states), the layout (unit, page_bytes, kv_blocks, the trunk's K/V blocks, mamba_bytes,
// mamba_units), the trunk and MTP positions; the state bytes follow (snapshot_pieces order).
constexpr char kSnapMagic[8] = {'N', 'M', 'C', 'U', 'S', 'N', 'P', '1'};
constexpr int kSnapFields = 10;
constexpr std::size_t kSnapHeader = 8 + 8 * kSnapFields;

}  // namespace

std::vector<uint8_t> CudaModel::export_snapshot(uint64_t id) const {
  const Impl& s = *impl_;
  const auto it = s.snapshots.find(id);
  if (it == s.snapshots.end()) throw Error("CUDA model: no snapshot " + std::to_string(id));
  const Impl::Snapshot& snap = it->second;
  const cuda_detail::SnapshotLayout& L = s.snap_layout;
  int64_t trunk_kv = 0;
  for (const auto& b : s.trunk.blocks) trunk_kv += b.kind == LayerKind::Attention;
  const int64_t fields[kSnapFields] = {
      kPage, s.element_code(), L.unit, L.page_bytes, L.kv_blocks, trunk_kv, L.mamba_bytes, L.mamba_units,
      snap.pos, snap.mtp_pos};
  const auto pieces = s.snapshot_pieces(snap);
  std::size_t total = kSnapHeader;
  for (const auto& [p, n] : pieces) total += static_cast<std::size_t>(n);
  std::vector<uint8_t> out(total);
  std::memcpy(out.data(), kSnapMagic, 8);
  std::memcpy(out.data() + 8, fields, sizeof fields);
  // Pageable copies on the model's stream: after the save that wrote the units (and any step
  // in flight), waited for at the end.
  std::size_t at = kSnapHeader;
  for (const auto& [p, n] : pieces) {
    check(cudaMemcpyAsync(out.data() + at, p, static_cast<std::size_t>(n), cudaMemcpyDeviceToHost, s.stream),
          "snapshot export");
    at += static_cast<std::size_t>(n);
  }
  check(cudaStreamSynchronize(s.stream), "snapshot export");
  return out;
}

void CudaModel::import_snapshot(uint64_t id, const std::vector<uint8_t>& bytes) {
  Impl& s = *impl_;
  if (s.snapshots.count(id)) throw Error("CUDA model: snapshot " + std::to_string(id) + " exists");
  if (s.snap_units == 0) throw Error("CUDA model: no snapshot pool (prefix_cache_bytes is 0)");
  if (bytes.size() < kSnapHeader || std::memcmp(bytes.data(), kSnapMagic, 8) != 0)
    throw Error("CUDA model: the snapshot bytes are not a CUDA snapshot (export_snapshot of the CUDA backend)");
  int64_t f[kSnapFields];
  std::memcpy(f, bytes.data() + 8, sizeof f);
  const cuda_detail::SnapshotLayout& L = s.snap_layout;
  int64_t trunk_kv = 0;
  for (const auto& b : s.trunk.blocks) trunk_kv += b.kind == LayerKind::Attention;
  const int64_t want[8] = {kPage, s.element_code(), L.unit, L.page_bytes, L.kv_blocks, trunk_kv, L.mamba_bytes,
                           L.mamba_units};
  if (!std::equal(want, want + 8, f))
    throw Error("CUDA model: the snapshot bytes do not fit this model (another layout: K/V element size " +
                std::to_string(f[1] % 256) + " vs " + std::to_string(want[1] % 256) + ", SSM state " +
                kernels::state_dtype_name(static_cast<kernels::StateDType>(f[1] / 256 <= 2 ? f[1] / 256 : 0)) +
                (f[1] / 256 > 2 ? "?" : "") + " vs " + kernels::state_dtype_name(s.opt.ssm_state.dtype) + ", unit " +
                std::to_string(f[2]) + " vs " +
                std::to_string(want[2]) + ", Mamba bytes " + std::to_string(f[6]) + " vs " + std::to_string(want[6]) +
                ")");
  Impl::Snapshot snap;
  snap.pos = f[8];
  snap.mtp_pos = f[9];
  if (snap.pos < 0 || snap.pos > (int64_t{1} << 40) || snap.mtp_pos < 0 || snap.mtp_pos > snap.pos ||
      (s.mtp.blocks.empty() && snap.mtp_pos != 0))
    throw Error("CUDA model: the snapshot bytes do not fit this model (positions " + std::to_string(snap.pos) + ", " +
                std::to_string(snap.mtp_pos) + ")");
  const int64_t need = L.units(snap.pos);
  if (need > static_cast<int64_t>(s.free_units.size()))
    throw Error("CUDA model: an imported snapshot at position " + std::to_string(snap.pos) + " needs " +
                std::to_string(need) + " units of the snapshot pool, " + std::to_string(s.free_units.size()) + " of " +
                std::to_string(s.snap_units) + " are free");
  snap.units.assign(s.free_units.end() - need, s.free_units.end());
  const auto pieces = s.snapshot_pieces(snap);
  std::size_t total = kSnapHeader;
  for (const auto& [p, n] : pieces) total += static_cast<std::size_t>(n);
  if (total != bytes.size())
    throw Error("CUDA model: the snapshot bytes do not fit this model (" + std::to_string(bytes.size()) +
                " bytes, a snapshot at position " + std::to_string(snap.pos) + " has " + std::to_string(total) + ")");
  // Pageable copies on the model's stream (after any load still reading these units), waited
  // for here: the bytes are the caller's.
  std::size_t at = kSnapHeader;
  for (const auto& [p, n] : pieces) {
    check(cudaMemcpyAsync(p, bytes.data() + at, static_cast<std::size_t>(n), cudaMemcpyHostToDevice, s.stream),
          "snapshot import");
    at += static_cast<std::size_t>(n);
  }
  check(cudaStreamSynchronize(s.stream), "snapshot import");
  s.free_units.resize(s.free_units.size() - static_cast<std::size_t>(need));
  s.snapshots.emplace(id, std::move(snap));
}

void CudaModel::observe_prompt(int slot, const int32_t* ids, int64_t n) {
  Impl& s = *impl_;
  if (slot < 0 || slot >= slots() || !s.in_use[static_cast<std::size_t>(slot)])
    throw Error("CUDA model: " + slot_name(slot) + " is not in use");
  if (n <= 0) return;
  if (!ids) throw Error("CUDA model: observe_prompt without ids");
  // In pieces of half the aux scratch: ids, then the slot of each.
  const int64_t piece = s.aux_ints / 2;
  const std::vector<int32_t> of(static_cast<std::size_t>(std::min(n, piece)), slot);
  for (int64_t at = 0; at < n; at += piece) {
    const int64_t m = std::min(piece, n - at);
    s.upload_aux(0, ids + at, m);
    s.upload_aux(piece, of.data(), m);
    kernels::penalty_mark_seen_cuda(s.aux, s.aux + piece, m, s.pen_seen, s.model.config.vocab_size, s.stream);
  }
}

}  // namespace nemotron::model

#endif
