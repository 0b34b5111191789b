#pragma once
// OpenAI response and stream-chunk JSON.
//
// chat.completion:  {"id":"chatcmpl-…","object":"chat.completion","created":…,"model":…,
//   "choices":[{"index":i,"message":{"role":"assistant","content":…,"reasoning_content":…,
//   "reasoning":…,"tool_calls":[{"id","type":"function","function":{"name","arguments"}}]},
//   "logprobs":null|{"content":[{"token","logprob","bytes","top_logprobs":[…]}]},
//   "finish_reason":…,"stop_reason":…}],"usage":{"prompt_tokens","completion_tokens","total_tokens"}}
// chat.completion.chunk: same envelope, "choices":[{"index":i,"delta":{…},"logprobs":…,
//   "finish_reason":null|…}]; deltas: {"role":"assistant","content":""} first, then
//   {"content":…} / {"reasoning_content":…,"reasoning":…} / {"tool_calls":[{"index":k,
//   "id","type","function":{"name","arguments"}}]} (later fragments: {"index":k,
//   "function":{"arguments":…}}); the last has "finish_reason". With include_usage a final
//   chunk with "choices":[] and "usage" precedes "data: [DONE]".
// text_completion: {"id":"cmpl-…","object":"text_completion",…,"choices":[{"index","text",
//   "logprobs":null|{"tokens","token_logprobs","top_logprobs":[{tok:lp}],"text_offset"},
//   "finish_reason","stop_reason"}],"usage":…}; chunks have the same object name.
#include <cstdint>
#include <string>
#include <vector>

#include "server/output_pipeline.h"
#include "util/json.h"

namespace nemotron::server {

std::string make_id(const std::string& prefix);  // prefix + 24 random hex digits

// usage: prompt, completion and total tokens, and prompt_tokens_details.cached_tokens (the
// prompt tokens resumed from the prefix cache).
Json usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens = 0);
Json chat_logprobs_json(const std::vector<LogprobEntry>& entries);
// `offset`: text_offset of the first entry; advanced past these entries.
Json completion_logprobs_json(const std::vector<LogprobEntry>& entries, int64_t& offset);
Json chat_message_json(const text::OutputResult& result, bool include_reasoning);

// Chat deltas for one pipeline output (one delta per event, in order; reasoning dropped
// when !include_reasoning).
std::vector<Json> chat_deltas(const std::vector<text::OutputEvent>& events, bool include_reasoning);

// Serialises one SSE event: "data: <json>\n\n".
std::string sse(const Json& payload);

}  // namespace nemotron::server
