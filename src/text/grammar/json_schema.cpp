// JSON Schema -> grammar. docs/grammar.md lists the coverage; in short:
//  - type (and type arrays), enum, const, properties / required / additionalProperties,
//    items / prefixItems / additionalItems / minItems / maxItems, minLength / maxLength,
//    pattern, format (date-time, date, time, uuid, email, ipv4), minimum / maximum /
//    exclusiveMinimum / exclusiveMaximum, allOf / anyOf / oneOf (json_schema_norm.h),
//    $ref to local pointers (recursion included).
//  - Objects: properties in the schema's order; required ones always, optional ones may be
//    skipped. Extra properties only where additionalProperties allows them and, when it is
//    absent, only for a schema that declares neither properties nor required (an object
//    schema with declared properties generates just those, as xgrammar does). Extra keys
//    never equal a declared name and are written without escapes.
//  - oneOf is compiled as anyOf: a text matching several branches is not excluded.
//  - Unknown keywords are ignored (as validators do); known keywords that cannot be enforced
//    are refused with an Error naming the keyword and the JSON pointer.
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "text/grammar/charset.h"
#include "text/grammar/grammar.h"
#include "text/grammar/json_rules.h"
#include "text/grammar/json_schema_norm.h"
#include "text/grammar/regex.h"
#include "util/error.h"

namespace nemotron::text::grammar {
namespace {

// Formats and the regexes that produce them (a generated value always passes the usual
// checkers: Python's date.fromisoformat, RFC 3339, ipaddress).
//  date: years 1000-9999, day ranges per month (February up to 28).
//  time: RFC 3339 full-time, offset required, no leap second.
const std::map<std::string, std::string>& formats() {
  static const std::map<std::string, std::string> f = [] {
    const std::string date =
        "[1-9][0-9]{3}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))";
    const std::string time = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
    const std::string octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    const std::string label = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
    return std::map<std::string, std::string>{
        {"date", date},
        {"time", time},
        {"date-time", date + "T" + time},
        {"uuid", "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"},
        {"email", "[A-Za-z0-9_%+-]+(\\.[A-Za-z0-9_%+-]+)*@" + label + "(\\." + label + ")+"},
        {"ipv4", octet + "(\\." + octet + "){3}"},
    };
  }();
  return f;
}

const std::set<std::string>& unsupported_keywords() {
  static const std::set<std::string> k = {
      "if",        "then",          "else",           "not",           "contains",         "minContains",
      "maxContains", "patternProperties", "propertyNames", "dependencies", "dependentRequired", "dependentSchemas",
      "unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef", "$dynamicAnchor",
      "$recursiveAnchor", "minProperties", "maxProperties", "multipleOf", "uniqueItems"};
  return k;
}

const std::set<std::string>& known_keywords() {
  static const std::set<std::string> k = {"type", "enum", "const", "properties", "required", "additionalProperties",
                                          "items", "prefixItems", "additionalItems", "minItems", "maxItems",
                                          "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                                          "exclusiveMinimum", "exclusiveMaximum", "$ref"};
  return k;
}

constexpr int64_t kMaxBound = 1000000000000000000;  // 10^18
constexpr int kMaxDigits = 18;                       // unbounded magnitudes: below 10^18

std::string pow10_minus1(int n) { return std::string(static_cast<std::size_t>(n), '9'); }

// Digit strings of equal length n with x <= s <= y (as numbers).
Expr same_length_range(const std::string& x, const std::string& y) {
  const std::size_t n = x.size();
  if (n == 0) return Expr::empty();
  if (x == y) return Expr::literal(x);
  const auto digit = [](char lo, char hi) { return Expr::byteset(ByteSet::range(static_cast<unsigned char>(lo), static_cast<unsigned char>(hi))); };
  const std::string xr = x.substr(1), yr = y.substr(1);
  if (x[0] == y[0]) return Expr::seq({digit(x[0], x[0]), same_length_range(xr, yr)});
  const auto any = [&](std::size_t k) { return Expr::repeat(digit('0', '9'), static_cast<int32_t>(k), static_cast<int32_t>(k)); };
  if (xr == std::string(n - 1, '0') && yr == std::string(n - 1, '9')) return Expr::seq({digit(x[0], y[0]), any(n - 1)});
  std::vector<Expr> alts;
  alts.push_back(Expr::seq({digit(x[0], x[0]), same_length_range(xr, std::string(n - 1, '9'))}));
  if (y[0] - x[0] > 1) alts.push_back(Expr::seq({digit(static_cast<char>(x[0] + 1), static_cast<char>(y[0] - 1)), any(n - 1)}));
  alts.push_back(Expr::seq({digit(y[0], y[0]), same_length_range(std::string(n - 1, '0'), yr)}));
  return Expr::alt(std::move(alts));
}

// Decimal magnitudes (no leading zeros) in [a, b]; b < 0 means unbounded (below 10^18, or
// one more digit than a).
Expr magnitude_range(int64_t a, int64_t b) {
  const std::string as = std::to_string(a);
  const int la = static_cast<int>(as.size());
  const int lb = b < 0 ? std::max(la, kMaxDigits) : static_cast<int>(std::to_string(b).size());
  if (b >= 0 && a > b) return Expr::nothing();
  std::vector<Expr> alts;
  for (int len = la; len <= lb; ++len) {
    const std::string lo = len == la ? as : "1" + std::string(static_cast<std::size_t>(len - 1), '0');
    const std::string hi = (b >= 0 && len == lb) ? std::to_string(b) : pow10_minus1(len);
    alts.push_back(same_length_range(lo, hi));
  }
  return Expr::alt(std::move(alts));
}

// Integers in [lo, hi]; has_lo / has_hi false: unbounded on that side.
Expr integer_range(bool has_lo, int64_t lo, bool has_hi, int64_t hi) {
  if (has_lo && has_hi && lo > hi) return Expr::nothing();
  std::vector<Expr> alts;
  // Negative values: magnitudes [max(1, -hi), -lo].
  if (!has_lo || lo <= -1) {
    const int64_t mag_lo = has_hi ? std::max<int64_t>(1, -std::min<int64_t>(hi, -1)) : 1;
    const int64_t mag_hi = has_lo ? -lo : -1;
    if (!has_hi || hi >= -mag_hi || mag_hi < 0) {
      if (mag_hi < 0 || mag_lo <= mag_hi) alts.push_back(Expr::seq({Expr::byte('-'), magnitude_range(mag_lo, mag_hi)}));
    }
  }
  // Non-negative values: [max(lo, 0), hi].
  if (!has_hi || hi >= 0) {
    const int64_t a = has_lo ? std::max<int64_t>(lo, 0) : 0;
    if (!has_hi || a <= hi) alts.push_back(magnitude_range(a, has_hi ? hi : -1));
  }
  return Expr::alt(std::move(alts));
}

class SchemaCompiler {
 public:
  SchemaCompiler(const Json& root, const JsonOptions& opt) : root_(root), norm_(root), json_(b_, opt) {
    scan(root, "", true);
  }

  std::shared_ptr<const Grammar> compile() {
    const Expr body = compile_schema(root_, "");
    const int32_t r = b_.add("root", body);
    return b_.build(r, "JSON schema");
  }

 private:
  [[noreturn]] void unsupported(const std::string& key, const std::string& ptr, const std::string& why = "") const {
    throw Error("unsupported JSON Schema keyword '" + key + "' at " + where(ptr) + (why.empty() ? "" : " (" + why + ")"));
  }
  [[noreturn]] void invalid(const std::string& ptr, const std::string& why) const {
    throw Error("invalid JSON Schema at " + where(ptr) + ": " + why);
  }

  // Nested $id (a new base URI for references) is refused when the document uses $ref.
  void scan(const Json& s, const std::string& ptr, bool top) {
    if (top) has_refs_ = root_.dump().find("\"$ref\"") != std::string::npos;
    if (s.is_object()) {
      if (!top && has_refs_)
        for (const char* k : {"$id", "id"})
          if (s.contains(k) && s[k].is_string() && !s[k].get<std::string>().empty() && s[k].get<std::string>()[0] != '#' &&
              !(std::string(k) == "id" && ptr.size() > 11 && ptr.substr(ptr.size() - 3) == "/id"))
            unsupported(k, ptr, "nested schema resources with references");
      for (auto it = s.begin(); it != s.end(); ++it)
        if (it.key() != "enum" && it.key() != "const" && it.key() != "default" && it.key() != "examples")
          scan(it.value(), json_pointer_child(ptr, it.key()), false);
    } else if (s.is_array()) {
      for (std::size_t i = 0; i < s.size(); ++i) scan(s[i], json_pointer_child(ptr, std::to_string(i)), false);
    }
  }

  Expr compile_schema(const Json& s, const std::string& ptr) {
    std::vector<Expr> alts;
    for (const Json& simple : norm_.normalize(s, ptr)) alts.push_back(compile_simple(simple, ptr));
    return Expr::alt(std::move(alts));
  }

  // A rule per (schema location) so that references and shared sub-schemas compile once.
  Expr as_rule(const Json& s, const std::string& ptr, const std::string& name) {
    const int32_t r = b_.declare(name);
    b_.define(r, compile_schema(s, ptr));
    return Expr::ref(r);
  }

  Expr ref_rule(const std::string& ref, const std::string& ptr) {
    auto it = refs_.find(ref);
    if (it != refs_.end()) return Expr::ref(it->second);
    std::string tptr;
    const Json& target = norm_.resolve(ref, ptr, tptr);
    const int32_t r = b_.declare("ref:" + ref);
    refs_.emplace(ref, r);
    b_.define(r, compile_schema(target, tptr));
    return Expr::ref(r);
  }

  Expr compile_simple(const Json& s, const std::string& ptr) {
    if (s.is_boolean()) return s.get<bool>() ? json_.value() : Expr::nothing();
    if (SchemaNormalizer::is_pure_ref(s)) return ref_rule(s["$ref"].get<std::string>(), ptr);
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (!unsupported_keywords().count(k)) continue;
      const Json& v = it.value();
      // Trivially satisfied forms are accepted.
      if (k == "uniqueItems" && v.is_boolean() && !v.get<bool>()) continue;
      if (k == "minProperties" && v.is_number() && v.get<double>() <= 0) continue;
      if (k == "multipleOf" && v.is_number() && v.get<double>() == 1.0) continue;  // handled in numbers
      unsupported(k, ptr);
    }
    if (s.contains("format")) {
      // A format is enforced or refused (validators may assert formats).
      const Json& f = s["format"];
      if (!f.is_string()) invalid(json_pointer_child(ptr, "format"), "must be a string");
      if (!formats().count(f.get<std::string>())) unsupported("format", ptr, "format '" + f.get<std::string>() + "'");
    }
    std::set<std::string> types;
    if (s.contains("type")) {
      const Json& t = s["type"];
      if (t.is_string()) types.insert(t.get<std::string>());
      else if (t.is_array())
        for (const Json& x : t) {
          if (!x.is_string()) invalid(json_pointer_child(ptr, "type"), "type names must be strings");
          types.insert(x.get<std::string>());
        }
      else invalid(json_pointer_child(ptr, "type"), "must be a string or an array of strings");
      static const std::set<std::string> names = {"string", "number", "integer", "boolean", "null", "object", "array"};
      for (const std::string& n : types)
        if (!names.count(n)) invalid(json_pointer_child(ptr, "type"), "unknown type '" + n + "'");
      if (types.empty()) return Expr::nothing();
    }
    if (s.contains("enum") || s.contains("const")) return compile_enum(s, ptr, types);
    if (types.empty()) {
      // Inferred from the keywords present (a subset of what the schema allows: sound).
      static const std::map<std::string, std::string> owner = {
          {"properties", "object"}, {"required", "object"}, {"additionalProperties", "object"},
          {"items", "array"},       {"prefixItems", "array"}, {"additionalItems", "array"},
          {"minItems", "array"},    {"maxItems", "array"},  {"minLength", "string"},
          {"maxLength", "string"},  {"pattern", "string"},  {"format", "string"},
          {"minimum", "number"},    {"maximum", "number"},  {"exclusiveMinimum", "number"},
          {"exclusiveMaximum", "number"}, {"multipleOf", "number"}};
      for (auto it = s.begin(); it != s.end(); ++it) {
        auto o = owner.find(it.key());
        if (o == owner.end()) continue;
        types.insert(o->second);
      }
      if (types.empty()) return json_.value();
    }
    if (types.count("number")) types.erase("integer");
    std::vector<Expr> alts;
    for (const std::string& t : types) {
      if (t == "null") alts.push_back(Expr::literal("null"));
      else if (t == "boolean") alts.push_back(Expr::alt({Expr::literal("true"), Expr::literal("false")}));
      else if (t == "string") alts.push_back(compile_string(s, ptr));
      else if (t == "number") alts.push_back(compile_number(s, ptr, false));
      else if (t == "integer") alts.push_back(compile_number(s, ptr, true));
      else if (t == "object") alts.push_back(compile_object(s, ptr));
      else if (t == "array") alts.push_back(compile_array(s, ptr));
    }
    return Expr::alt(std::move(alts));
  }

  static bool type_matches(const Json& v, const std::string& t) {
    if (t == "null") return v.is_null();
    if (t == "boolean") return v.is_boolean();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    return false;
  }

  Expr compile_enum(const Json& s, const std::string& ptr, const std::set<std::string>& types) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (k == "enum" || k == "const" || k == "type" || SchemaNormalizer::is_annotation(k)) continue;
      if (known_keywords().count(k)) unsupported(k, ptr, "alongside enum/const");
    }
    std::vector<Json> values;
    if (s.contains("const")) values.push_back(s["const"]);
    if (s.contains("enum")) {
      if (!s["enum"].is_array()) invalid(json_pointer_child(ptr, "enum"), "must be an array");
      std::vector<Json> e(s["enum"].begin(), s["enum"].end());
      if (s.contains("const")) {
        std::vector<Json> keep;
        for (const Json& v : e)
          if (v == s["const"]) keep.push_back(v);
        values = keep;
      } else {
        values = e;
      }
    }
    std::vector<Expr> alts;
    for (const Json& v : values) {
      bool ok = types.empty();
      for (const std::string& t : types) ok = ok || type_matches(v, t);
      if (!ok) continue;
      std::string text;
      try {
        text = v.dump();
      } catch (const std::exception& e) {
        invalid(ptr, std::string("enum value cannot be written as JSON: ") + e.what());
      }
      alts.push_back(Expr::literal(text));
    }
    return Expr::alt(std::move(alts));
  }

  // ---- strings ----
  Expr compile_string(const Json& s, const std::string& ptr) {
    const bool has_pattern = s.contains("pattern");
    std::string fmt;
    if (s.contains("format") && s["format"].is_string() && formats().count(s["format"].get<std::string>()))
      fmt = s["format"].get<std::string>();
    const bool has_len = s.contains("minLength") || s.contains("maxLength");
    const Expr quote = Expr::byte('"');
    if (has_pattern) {
      if (!s["pattern"].is_string()) invalid(json_pointer_child(ptr, "pattern"), "must be a string");
      if (has_len) unsupported(s.contains("minLength") ? "minLength" : "maxLength", ptr, "together with 'pattern'");
      if (!fmt.empty()) unsupported("format", ptr, "together with 'pattern'");
      return Expr::seq({quote, compile_regex(s["pattern"].get<std::string>(), {true, true},
                                             "JSON Schema 'pattern' at " + where(ptr) + ":"),
                        quote});
    }
    if (!fmt.empty()) {
      if (has_len) unsupported(s.contains("minLength") ? "minLength" : "maxLength", ptr, "together with 'format'");
      return Expr::seq({quote, compile_regex(formats().at(fmt), {true, false}, "format"), quote});
    }
    const int32_t lo = count(s, "minLength", ptr, 0), hi = count(s, "maxLength", ptr, -1);
    if (hi >= 0 && hi < lo) return Expr::nothing();
    if (lo == 0 && hi < 0) return json_.string();
    return Expr::seq({quote, Expr::repeat(json_.chr(), lo, hi), quote});
  }

  int32_t count(const Json& s, const char* key, const std::string& ptr, int32_t dflt) const {
    if (!s.contains(key)) return dflt;
    const Json& v = s[key];
    if (!v.is_number() || v.get<double>() < 0 || std::floor(v.get<double>()) != v.get<double>())
      invalid(json_pointer_child(ptr, key), "must be a non-negative integer");
    if (v.get<double>() > GrammarBuilder::kMaxRepeat)
      unsupported(key, ptr, "values over " + std::to_string(GrammarBuilder::kMaxRepeat));
    return static_cast<int32_t>(v.get<double>());
  }

  // ---- numbers ----
  Expr compile_number(const Json& s, const std::string& ptr, bool integer) {
    if (s.contains("multipleOf")) integer = true;  // multipleOf 1 (anything else was refused)
    bool has_lo = false, has_hi = false, lo_excl = false, hi_excl = false;
    double lo = 0, hi = 0;
    auto num = [&](const char* key) {
      const Json& v = s[key];
      if (!v.is_number()) invalid(json_pointer_child(ptr, key), "must be a number");
      const double d = v.get<double>();
      if (!(std::fabs(d) <= static_cast<double>(kMaxBound))) unsupported(key, ptr, "bounds beyond +-1e18");
      return d;
    };
    auto bound = [&](const char* key, bool& has, double& val, bool& excl, bool lower, bool exclusive) {
      if (!s.contains(key)) return;
      const double d = num(key);
      if (!has || (lower ? d > val || (d == val && exclusive) : d < val || (d == val && exclusive))) {
        val = d;
        excl = exclusive;
      }
      has = true;
    };
    bound("minimum", has_lo, lo, lo_excl, true, false);
    bound("maximum", has_hi, hi, hi_excl, false, false);
    // Draft 4: exclusiveMinimum / exclusiveMaximum are booleans modifying minimum / maximum.
    for (const char* k : {"exclusiveMinimum", "exclusiveMaximum"}) {
      if (!s.contains(k)) continue;
      const bool lower = std::string(k) == "exclusiveMinimum";
      if (s[k].is_boolean()) {
        if (s[k].get<bool>()) (lower ? lo_excl : hi_excl) = true;
        continue;
      }
      if (lower) bound(k, has_lo, lo, lo_excl, true, true);
      else bound(k, has_hi, hi, hi_excl, false, true);
    }
    if (!has_lo && !has_hi) return integer ? json_.integer() : json_.number();
    // Integers in range.
    const int64_t ilo = has_lo ? static_cast<int64_t>(lo_excl ? std::floor(lo) + 1 : std::ceil(lo)) : 0;
    const int64_t ihi = has_hi ? static_cast<int64_t>(hi_excl ? std::ceil(hi) - 1 : std::floor(hi)) : 0;
    std::vector<Expr> alts{integer_range(has_lo, ilo, has_hi, ihi)};
    if (!integer) {
      // i.f with a non-zero last fraction digit lies strictly between i and i + 1.
      const Expr frac = Expr::seq({Expr::byte('.'), Expr::repeat(Expr::byteset(ByteSet::range('0', '9')), 0, 15),
                                   Expr::byteset(ByteSet::range('1', '9'))});
      const int64_t clo = has_lo ? static_cast<int64_t>(std::ceil(lo)) : 0;
      const int64_t fhi = has_hi ? static_cast<int64_t>(std::floor(hi)) : 0;
      // Positive: integer part i in [max(0, ceil(lo)), floor(hi) - 1].
      {
        const int64_t a = has_lo ? std::max<int64_t>(0, clo) : 0;
        if (!has_hi || a <= fhi - 1) alts.push_back(Expr::seq({magnitude_range(a, has_hi ? fhi - 1 : -1), frac}));
      }
      // Negative: -(i.f) with i in [max(0, -floor(hi)), -ceil(lo) - 1].
      {
        const int64_t a = has_hi ? std::max<int64_t>(0, -fhi) : 0;
        if (!has_lo || a <= -clo - 1)
          alts.push_back(Expr::seq({Expr::byte('-'), magnitude_range(a, has_lo ? -clo - 1 : -1), frac}));
      }
    }
    return Expr::alt(std::move(alts));
  }

  // ---- objects ----
  struct Prop {
    std::string name;
    Json schema;
    bool required;
    std::string ptr;
  };

  // A JSON string (quotes included) not equal to any of `names`, written without escapes.
  Expr key_not_in(const std::vector<std::string>& names) {
    if (names.empty()) return json_.string();
    CharSet plain = CharSet::any();
    CharSet special;
    special.add(0, 0x1F);
    special.add('"', '"');
    special.add('\\', '\\');
    plain = plain.minus(special);
    const int32_t rest = b_.add("extra-key-rest", Expr::seq({Expr::star(utf8_expr(plain)), Expr::byte('"')}));
    // Trie of the names' raw bytes (names needing escapes can never be equal: skipped).
    struct Node {
      std::map<unsigned char, int> kids;
      bool terminal = false;
    };
    std::vector<Node> trie(1);
    for (const std::string& n : names) {
      if (n.find_first_of(std::string("\"\\") + std::string(1, '\0')) != std::string::npos) continue;
      bool ctrl = false;
      for (char c : n) ctrl = ctrl || static_cast<unsigned char>(c) < 0x20;
      if (ctrl) continue;
      int cur = 0;
      for (char c : n) {
        const auto b = static_cast<unsigned char>(c);
        auto it = trie[static_cast<std::size_t>(cur)].kids.find(b);
        if (it == trie[static_cast<std::size_t>(cur)].kids.end()) {
          trie.emplace_back();
          it = trie[static_cast<std::size_t>(cur)].kids.emplace(b, static_cast<int>(trie.size() - 1)).first;
        }
        cur = it->second;
      }
      trie[static_cast<std::size_t>(cur)].terminal = true;
    }
    // Character boundaries: after an ASCII byte or the last byte of a character.
    std::function<Expr(int, int)> walk = [&](int n, int pending) -> Expr {
      const Node& nd = trie[static_cast<std::size_t>(n)];
      std::vector<Expr> alts;
      if (!nd.terminal && pending == 0) alts.push_back(Expr::byte('"'));
      for (const auto& [b, kid] : nd.kids) {
        int next_pending;
        if (pending > 0) next_pending = pending - 1;
        else if (b < 0x80) next_pending = 0;
        else if (b >= 0xF0) next_pending = 3;
        else if (b >= 0xE0) next_pending = 2;
        else next_pending = 1;
        alts.push_back(Expr::seq({Expr::byte(b), walk(kid, next_pending)}));
      }
      if (pending == 0) {
        CharSet first = plain;
        for (const auto& kv : nd.kids) {
          const unsigned b = kv.first;
          if (b < 0x80) first = first.minus(CharSet::of(b));
          else if (b >= 0xC2 && b <= 0xDF) first = first.minus(CharSet::range((b & 0x1F) << 6, ((b & 0x1F) << 6) + 63));
          else if (b >= 0xE0 && b <= 0xEF) first = first.minus(CharSet::range((b & 0x0F) << 12, ((b & 0x0F) << 12) + 0xFFF));
          else if (b >= 0xF0 && b <= 0xF4) first = first.minus(CharSet::range((b & 0x07) << 18, ((b & 0x07) << 18) + 0x3FFFF));
        }
        if (!first.empty()) alts.push_back(Expr::seq({utf8_expr(first), Expr::ref(rest)}));
      }
      return Expr::alt(std::move(alts));
    };
    return Expr::seq({Expr::byte('"'), walk(0, 0)});
  }

  Expr compile_object(const Json& s, const std::string& ptr) {
    std::vector<Prop> props;
    std::set<std::string> declared;
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) invalid(json_pointer_child(ptr, "required"), "must be an array");
      for (const Json& r : s["required"]) {
        if (!r.is_string()) invalid(json_pointer_child(ptr, "required"), "names must be strings");
        required.insert(r.get<std::string>());
      }
    }
    const bool has_ap = s.contains("additionalProperties");
    const Json ap = has_ap ? s["additionalProperties"] : Json(true);
    if (s.contains("properties")) {
      const Json& p = s["properties"];
      if (!p.is_object()) invalid(json_pointer_child(ptr, "properties"), "must be an object");
      for (auto it = p.begin(); it != p.end(); ++it) {
        declared.insert(it.key());
        const bool req = required.count(it.key()) != 0;
        if (it.value().is_boolean() && !it.value().get<bool>()) {
          if (req) return Expr::nothing();
          continue;
        }
        props.push_back({it.key(), it.value(), req, json_pointer_child(json_pointer_child(ptr, "properties"), it.key())});
      }
    }
    for (const Json& r : s.value("required", Json::array())) {
      const std::string name = r.get<std::string>();
      if (declared.count(name)) continue;
      if (ap.is_boolean() && !ap.get<bool>()) return Expr::nothing();
      declared.insert(name);
      props.push_back({name, ap, true, json_pointer_child(ptr, "additionalProperties")});
    }
    // Extras: where additionalProperties allows them (absent: only with nothing declared).
    bool extras = has_ap ? !(ap.is_boolean() && !ap.get<bool>()) : (!s.contains("properties") && !s.contains("required"));
    const std::string base = "obj" + where(ptr);
    const Expr ws = json_.ws();
    std::vector<int32_t> kv(props.size());
    for (std::size_t i = 0; i < props.size(); ++i) {
      Json key(props[i].name);
      const Expr value = as_rule(props[i].schema, props[i].ptr, "value" + props[i].ptr);
      kv[i] = b_.add(base + "/kv:" + props[i].name,
                     Expr::seq({Expr::literal(key.dump()), ws, Expr::byte(':'), ws, value}));
    }
    int32_t kvx = -1, x = -1;
    if (extras) {
      std::vector<std::string> names(declared.begin(), declared.end());
      const Expr value = has_ap ? as_rule(ap, json_pointer_child(ptr, "additionalProperties"), "extra" + where(ptr)) : json_.value();
      kvx = b_.add(base + "/kv-extra", Expr::seq({key_not_in(names), ws, Expr::byte(':'), ws, value}));
      x = b_.declare(base + "/extras");
      b_.define(x, Expr::seq({ws, Expr::alt({Expr::byte('}'), Expr::seq({Expr::byte(','), ws, Expr::ref(kvx), Expr::ref(x)})})}));
    }
    // F_i: properties i.. with none written yet; N_i: after at least one.
    const std::size_t n = props.size();
    std::vector<int32_t> F(n + 1), N(n + 1);
    for (std::size_t i = 0; i <= n; ++i) {
      F[i] = b_.declare(base + "/first" + std::to_string(i));
      N[i] = b_.declare(base + "/next" + std::to_string(i));
    }
    for (std::size_t i = n + 1; i-- > 0;) {
      if (i == n) {
        std::vector<Expr> f{Expr::byte('}')}, nx{Expr::seq({ws, Expr::byte('}')})};
        if (extras) {
          f.push_back(Expr::seq({Expr::ref(kvx), Expr::ref(x)}));
          nx.push_back(Expr::seq({ws, Expr::byte(','), ws, Expr::ref(kvx), Expr::ref(x)}));
        }
        b_.define(F[i], Expr::alt(std::move(f)));
        b_.define(N[i], Expr::alt(std::move(nx)));
        continue;
      }
      std::vector<Expr> f{Expr::seq({Expr::ref(kv[i]), Expr::ref(N[i + 1])})};
      std::vector<Expr> nx{Expr::seq({ws, Expr::byte(','), ws, Expr::ref(kv[i]), Expr::ref(N[i + 1])})};
      if (!props[i].required) {
        f.push_back(Expr::ref(F[i + 1]));
        nx.push_back(Expr::ref(N[i + 1]));
      }
      b_.define(F[i], Expr::alt(std::move(f)));
      b_.define(N[i], Expr::alt(std::move(nx)));
    }
    return Expr::seq({Expr::byte('{'), ws, Expr::ref(F[0])});
  }

  // ---- arrays ----
  Expr compile_array(const Json& s, const std::string& ptr) {
    std::vector<Json> prefix;
    std::string prefix_key;
    Json tail(true);
    std::string tail_ptr;
    if (s.contains("prefixItems")) {
      if (!s["prefixItems"].is_array()) invalid(json_pointer_child(ptr, "prefixItems"), "must be an array");
      prefix.assign(s["prefixItems"].begin(), s["prefixItems"].end());
      prefix_key = "prefixItems";
      if (s.contains("items")) {
        tail = s["items"];
        tail_ptr = json_pointer_child(ptr, "items");
      }
    } else if (s.contains("items") && s["items"].is_array()) {
      prefix.assign(s["items"].begin(), s["items"].end());
      prefix_key = "items";
      if (s.contains("additionalItems")) {
        tail = s["additionalItems"];
        tail_ptr = json_pointer_child(ptr, "additionalItems");
      }
    } else if (s.contains("items")) {
      tail = s["items"];
      tail_ptr = json_pointer_child(ptr, "items");
    }
    const auto k = static_cast<int32_t>(prefix.size());
    int32_t lo = count(s, "minItems", ptr, 0), hi = count(s, "maxItems", ptr, -1);
    if (tail.is_boolean() && !tail.get<bool>()) hi = hi < 0 ? k : std::min(hi, k);
    if (hi >= 0 && lo > hi) return Expr::nothing();
    const int32_t unroll = std::max(lo, k) + 1;
    if (hi > GrammarBuilder::kMaxRepeat || unroll > GrammarBuilder::kMaxRepeat) unsupported("maxItems", ptr, "too many items");
    const std::string base = "arr" + where(ptr);
    std::vector<Expr> items;
    for (int32_t i = 0; i < k; ++i)
      items.push_back(as_rule(prefix[static_cast<std::size_t>(i)], json_pointer_child(json_pointer_child(ptr, prefix_key), std::to_string(i)),
                              base + "/item" + std::to_string(i)));
    Expr tail_item = Expr::nothing();
    if (!(tail.is_boolean() && !tail.get<bool>())) tail_item = tail.is_boolean() ? json_.value() : as_rule(tail, tail_ptr, base + "/items");
    auto item = [&](int32_t i) { return i < k ? items[static_cast<std::size_t>(i)] : tail_item; };
    const Expr ws = json_.ws();
    // T_i: i items written so far; from max(k, lo) on an unbounded array shares one loop.
    const int32_t end = hi < 0 ? std::max({k, lo, 1}) : hi;
    std::vector<int32_t> T(static_cast<std::size_t>(end) + 1, -1);
    for (int32_t i = 1; i <= end; ++i) T[static_cast<std::size_t>(i)] = b_.declare(base + "/after" + std::to_string(i));
    if (hi < 0)
      b_.define(T[static_cast<std::size_t>(end)],
                Expr::seq({ws, Expr::alt({Expr::byte(']'), Expr::seq({Expr::byte(','), ws, tail_item, Expr::ref(T[static_cast<std::size_t>(end)])})})}));
    for (int32_t i = (hi < 0 ? end - 1 : end); i >= 1; --i) {
      std::vector<Expr> alts;
      if (i >= lo) alts.push_back(Expr::seq({ws, Expr::byte(']')}));
      if (hi < 0 || i < hi) alts.push_back(Expr::seq({ws, Expr::byte(','), ws, item(i), Expr::ref(T[static_cast<std::size_t>(i) + 1])}));
      b_.define(T[static_cast<std::size_t>(i)], Expr::alt(std::move(alts)));
    }
    auto tail_rule = [&](int32_t i) { return T[static_cast<std::size_t>(i)]; };
    std::vector<Expr> body;
    if (lo == 0) body.push_back(Expr::byte(']'));
    if (hi != 0) body.push_back(Expr::seq({item(0), Expr::ref(tail_rule(1))}));
    return Expr::seq({Expr::byte('['), ws, Expr::alt(std::move(body))});
  }

  const Json& root_;
  SchemaNormalizer norm_;
  GrammarBuilder b_;
  JsonRules json_;
  std::map<std::string, int32_t> refs_;
  bool has_refs_ = false;
};

}  // namespace

std::shared_ptr<const Grammar> from_json_schema(const Json& schema, const JsonOptions& opt) {
  SchemaCompiler c(schema, opt);
  return c.compile();
}

}  // namespace nemotron::text::grammar
