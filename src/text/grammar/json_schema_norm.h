#pragma once
// JSON Schema normalization: a schema becomes a list of SIMPLE schemas (alternatives) with no
// allOf / anyOf / oneOf at their top and no $ref combined with other keywords. allOf is
// merged keyword by keyword (types intersected, properties merged with each side's
// additionalProperties applied to the other's names, required united, bounds tightened,
// enums intersected); anyOf / oneOf distribute over what they are combined with
// (A and (B or C) = (A and B) or (A and C)). A $ref alone stays a reference (the compiler
// gives every referenced location one rule, which is how recursion works); a $ref combined
// with other keywords is inlined and merged (draft 7 ignores such siblings, later drafts
// apply them: applying them is right under both).
#include <string>
#include <vector>

#include "util/json.h"

namespace nemotron::text::grammar {

class SchemaNormalizer {
 public:
  explicit SchemaNormalizer(const Json& root) : root_(root) {}

  // Simple schemas whose union is `schema` (located at JSON pointer `ptr`).
  std::vector<Json> normalize(const Json& schema, const std::string& ptr, int depth = 0) const;
  // The schema a local $ref ("#", "#/definitions/x", ...) points to; its pointer in `ptr_out`.
  const Json& resolve(const std::string& ref, const std::string& at, std::string& ptr_out) const;

  static bool is_pure_ref(const Json& s);
  static bool is_annotation(const std::string& key);
  static bool has_assertions(const Json& s);

 private:
  std::vector<Json> merge(const Json& a, const Json& b, const std::string& ptr, int depth) const;
  Json merge_simple(const Json& a, const Json& b, const std::string& ptr) const;
  const Json& root_;
};

std::string json_pointer_child(const std::string& ptr, const std::string& key);
std::string where(const std::string& ptr);  // "/" for the root

}  // namespace nemotron::text::grammar
