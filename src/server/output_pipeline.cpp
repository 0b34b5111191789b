#include "server/output_pipeline.h"

#include <algorithm>

namespace nemotron::server {

OutputPipeline::OutputPipeline(const text::Tokenizer& tokenizer, PipelineOptions options)
    : tokenizer_(tokenizer), opt_(std::move(options)), detok_(tokenizer_, false), stop_(opt_.stop) {
  if (opt_.chat) parser_ = std::make_unique<text::OutputParser>(opt_.parser);
}

void OutputPipeline::add_events(std::vector<text::OutputEvent> events, PipelineOutput& out) {
  for (auto& e : events) {
    if (e.kind == text::OutputEvent::Kind::kToolCall) {
      if (opt_.max_tool_calls >= 0 && e.tool_index >= opt_.max_tool_calls) continue;
      saw_tool_call_ = true;
    }
    text::accumulate(result_, {e});
    out.events.push_back(std::move(e));
  }
}

void OutputPipeline::emit_text(const std::string& text, bool final, PipelineOutput& out) {
  if (!parser_) {
    if (!text.empty()) {
      text::OutputEvent e;
      e.kind = text::OutputEvent::Kind::kContent;
      e.text = text;
      add_events({e}, out);
    }
    return;
  }
  if (!text.empty()) add_events(parser_->feed(text), out);
  if (final) add_events(parser_->finish(), out);
}

void OutputPipeline::finish(PipelineOutput& out, const std::string& reason) {
  done_ = true;
  finish_reason_ = reason;
  out.finished = true;
}

PipelineOutput OutputPipeline::push(const runtime::TokenEvent& ev) {
  PipelineOutput out;
  if (done_) return out;
  std::string text;
  if (ev.token >= 0) {
    completion_tokens_++;
    const bool is_stop_token = ev.finished && ev.reason == runtime::FinishReason::Stop;
    const bool hidden = is_stop_token ||
                        (opt_.skip_special_tokens && tokenizer_.is_special(ev.token) &&
                         std::find(opt_.keep_special_ids.begin(), opt_.keep_special_ids.end(), ev.token) ==
                             opt_.keep_special_ids.end());
    if (!hidden) text = detok_.push(ev.token);
    if (opt_.logprobs) {
      LogprobEntry e;
      e.token = ev.token;
      e.text = tokenizer_.decode({ev.token});
      e.logprob = ev.logprob;
      for (const auto& t : ev.top_logprobs) {
        if (static_cast<int>(e.top.size()) >= opt_.top_logprobs) break;
        e.top.emplace_back(tokenizer_.decode({t.token}), t.logprob);
      }
      pending_logprobs_.push_back(e);
      all_logprobs_.push_back(std::move(e));
    }
    if (is_stop_token &&
        std::find(opt_.eos_ids.begin(), opt_.eos_ids.end(), ev.token) == opt_.eos_ids.end())
      stop_reason_ = ev.token;
  }
  const bool final = ev.finished;
  if (final) text += detok_.flush();
  std::string visible = stop_.push(text);
  if (stop_.stopped()) {
    emit_text(visible, true, out);
    stop_reason_ = stop_.matched();
    finish(out, "stop");
  } else if (final) {
    visible += stop_.flush();
    emit_text(visible, true, out);
    switch (ev.reason) {
      case runtime::FinishReason::Length: finish(out, "length"); break;
      case runtime::FinishReason::Cancelled: finish(out, "abort"); break;
      case runtime::FinishReason::Error:
        error_ = ev.error;
        finish(out, "error");
        break;
      default: finish(out, saw_tool_call_ ? "tool_calls" : "stop"); break;
    }
  } else {
    emit_text(visible, false, out);
  }
  if (out.finished && finish_reason_ == "stop" && saw_tool_call_) finish_reason_ = "tool_calls";
  if (!out.events.empty() || out.finished) {
    out.logprobs = std::move(pending_logprobs_);
    pending_logprobs_.clear();
  }
  return out;
}

}  // namespace nemotron::server
