#include "profile/profile.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <tuple>

namespace sluice {
namespace {

constexpr __int128 kScale = 1'000'000'000;  // Decimal: 9 fraction digits
// 1e27 * 1e9: far below __int128's 1.7e38, so sums never overflow before saturating.
const __int128 kMaxNanos = static_cast<__int128>(1'000'000'000'000'000'000LL) * 1'000'000'000 *
                           1'000'000'000;

__int128 Saturate(__int128 v) { return std::clamp(v, -kMaxNanos, kMaxNanos); }

// (key, unset, value): the greater write wins; an $unset beats a $set of the
// same event; equal keys and kinds fall back to the value so the result
// never depends on which one was seen first.
bool WriteLess(const PropertyState::Write& a, const PropertyState::Write& b) {
  return std::tie(a.key, a.unset, a.value) < std::tie(b.key, b.unset, b.value);
}

bool OnceLess(const PropertyState::Once& a, const PropertyState::Once& b) {
  return std::tie(a.key, a.value) < std::tie(b.key, b.value);
}

bool IsJsonNumber(std::string_view v) {
  return !v.empty() && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'));
}

}  // namespace

// ---- Decimal ----

std::optional<Decimal> Decimal::Parse(std::string_view s) {
  // JSON number grammar: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && s[i] == '-') {
    neg = true;
    ++i;
  }
  std::string digits;  // integer and fraction digits, no dot
  int frac = 0;        // digits after the dot
  bool any = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    digits.push_back(s[i++]);
    any = true;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (i == s.size() || s[i] < '0' || s[i] > '9') return std::nullopt;  // "1." is not JSON
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      digits.push_back(s[i++]);
      ++frac;
      any = true;
    }
  }
  if (!any) return std::nullopt;
  int exp = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool eneg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
    int e = 0;
    bool edigit = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      e = std::min(e * 10 + (s[i++] - '0'), 1000);
      edigit = true;
    }
    if (!edigit) return std::nullopt;
    exp = eneg ? -e : e;
  }
  if (i != s.size()) return std::nullopt;
  // value = digits * 10^(exp - frac); we want nanos = value * 1e9.
  int shift = exp - frac + 9;
  // Strip leading zeros so the length check below is about magnitude.
  size_t lead = digits.find_first_not_of('0');
  if (lead == std::string::npos) return Decimal();
  digits.erase(0, lead);
  if (static_cast<int>(digits.size()) + shift > 37) return std::nullopt;  // >= 1e28 nanos-ish
  __int128 v = 0;
  bool round_up = false;
  if (shift >= 0) {
    for (char c : digits) v = v * 10 + (c - '0');
    for (int k = 0; k < shift; ++k) v *= 10;
  } else {
    // Drop -shift trailing digits, rounding half-even.
    const size_t keep = digits.size() > static_cast<size_t>(-shift)
                            ? digits.size() - static_cast<size_t>(-shift)
                            : 0;
    for (size_t k = 0; k < keep; ++k) v = v * 10 + (digits[k] - '0');
    const std::string rest = keep < digits.size() ? digits.substr(keep) : std::string();
    // rest may be shorter than -shift (leading zeros implied): pad on the left.
    std::string dropped = std::string(static_cast<size_t>(-shift) - rest.size(), '0') + rest;
    if (!dropped.empty()) {
      const char first = dropped[0];
      const bool tail = dropped.find_first_not_of('0', 1) != std::string::npos;
      if (first > '5' || (first == '5' && (tail || (v % 2) == 1))) round_up = true;
    }
  }
  if (round_up) ++v;
  if (v > kMaxNanos) return std::nullopt;
  Decimal d;
  d.nanos_ = neg ? -v : v;
  return d;
}

Decimal Decimal::FromInt(int64_t v) {
  Decimal d;
  d.nanos_ = Saturate(static_cast<__int128>(v) * kScale);
  return d;
}

Decimal& Decimal::operator+=(const Decimal& o) {
  nanos_ = Saturate(nanos_ + o.nanos_);
  return *this;
}

std::string Decimal::ToJson() const {
  __int128 v = nanos_;
  const bool neg = v < 0;
  if (neg) v = -v;
  __int128 whole = v / kScale;
  int64_t frac = static_cast<int64_t>(v % kScale);
  std::string w;
  if (whole == 0) w = "0";
  while (whole > 0) {
    w.push_back(static_cast<char>('0' + static_cast<int>(whole % 10)));
    whole /= 10;
  }
  std::reverse(w.begin(), w.end());
  std::string out = neg && (w != "0" || frac != 0) ? "-" + w : w;
  if (frac != 0) {
    std::string f = std::to_string(frac);
    f = std::string(9 - f.size(), '0') + f;
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out;
}

// ---- PropertyState ----

void PropertyState::Merge(const PropertyState& o) {
  if (o.last_write && (!last_write || WriteLess(*last_write, *o.last_write))) {
    last_write = o.last_write;
  }
  if (o.first_once && (!first_once || OnceLess(*o.first_once, *first_once))) {
    first_once = o.first_once;
  }
  if (o.add) {
    if (!add) {
      add = o.add;
    } else {
      add->sum += o.add->sum;
      add->last = std::max(add->last, o.add->last);
    }
  }
}

std::optional<std::string> PropertyState::Value() const {
  // The base: a value, a removal (tombstone) or nothing, with its key.
  const std::string* base = nullptr;
  const OpKey* base_key = nullptr;
  if (last_write) {
    if (!last_write->unset) {
      base = &last_write->value;
      base_key = &last_write->key;
    } else if (first_once && first_once->key > last_write->key) {
      base = &first_once->value;
      base_key = &first_once->key;
    } else {
      base_key = &last_write->key;  // removed at this key
    }
  } else if (first_once) {
    base = &first_once->value;
    base_key = &first_once->key;
  }
  if (!add || (base_key != nullptr && *base_key > add->last)) {
    if (base == nullptr) return std::nullopt;
    return *base;
  }
  Decimal sum = add->sum;
  if (base != nullptr && IsJsonNumber(*base)) {
    if (std::optional<Decimal> b = Decimal::Parse(*base)) sum += *b;
  }
  return sum.ToJson();
}

// ---- IdState ----

void IdState::Merge(const IdState& o) {
  if (o.events > 0) {
    if (events == 0) {
      first_seen_ms = o.first_seen_ms;
      last_seen_ms = o.last_seen_ms;
    } else {
      first_seen_ms = std::min(first_seen_ms, o.first_seen_ms);
      last_seen_ms = std::max(last_seen_ms, o.last_seen_ms);
    }
    events += o.events;
  }
  for (const auto& [name, n] : o.event_counts) event_counts[name] += n;
  for (const auto& [k, p] : o.properties) properties[k].Merge(p);
  user_seen = user_seen || o.user_seen;
  linked_to = linked_to || o.linked_to;
  for (const auto& [target, key] : o.links) {
    auto [it, inserted] = links.try_emplace(target, key);
    if (!inserted && key < it->second) it->second = key;
  }
}

bool IsRoot(const IdState& s) { return s.linked_to || (s.user_seen && s.links.empty()); }

std::optional<std::pair<std::string, OpKey>> EarliestLink(const IdState& s) {
  std::optional<std::pair<std::string, OpKey>> best;
  for (const auto& [target, key] : s.links) {
    if (!best || std::tie(key, target) < std::tie(best->second, best->first)) {
      best.emplace(target, key);
    }
  }
  return best;
}

std::string PersonOf(const std::string& id, const IdState& s) {
  if (IsRoot(s)) return id;
  auto link = EarliestLink(s);
  return link ? link->first : id;
}

LinkCounts CountLinks(const IdState& s) {
  LinkCounts c;
  if (s.links.empty()) return c;
  // With links, an id is a root exactly when it is a link target.
  if (IsRoot(s)) {
    c.refused = static_cast<int64_t>(s.links.size());
  } else {
    c.applied = 1;
  }
  return c;
}

// ---- building from events ----

namespace {

// Iterates the members of a minified JSON object; false when it is not one.
template <typename Fn>
bool ForEachMember(simdjson::dom::parser& parser, const std::string& text, Fn&& fn) {
  if (text.empty()) return true;
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS) return false;
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return false;
  for (auto field : obj) fn(field.key, field.value);
  return true;
}

void AddLink(const std::string& project, const std::string& from, const std::string& to,
             const OpKey& key, ProfileBatch* batch) {
  if (from.empty() || to.empty() || from == to) return;
  IdState& source = (*batch)[{project, from}];
  auto [it, inserted] = source.links.try_emplace(to, key);
  if (!inserted && key < it->second) it->second = key;
  (*batch)[{project, to}].linked_to = true;
}

}  // namespace

void AddEvent(const std::string& project, const std::string& insert_id, const Event& e,
              ProfileBatch* batch) {
  const std::string& id = e.distinct_id();
  if (id.empty()) return;
  const OpKey key{e.time_ms, insert_id};
  IdState& s = (*batch)[{project, id}];
  IdState one;
  one.events = 1;
  one.first_seen_ms = one.last_seen_ms = e.time_ms;
  one.event_counts[e.event] = 1;
  one.user_seen = !e.user_id.empty();
  thread_local simdjson::dom::parser parser;
  // Duplicate keys inside one object: the last occurrence wins (JSON.parse),
  // so each member simply replaces the previous one of the same name.
  ForEachMember(parser, e.set, [&](std::string_view k, simdjson::dom::element v) {
    one.properties[std::string(k)].last_write =
        PropertyState::Write{key, false, std::string(simdjson::minify(v))};
  });
  ForEachMember(parser, e.set_once, [&](std::string_view k, simdjson::dom::element v) {
    one.properties[std::string(k)].first_once =
        PropertyState::Once{key, std::string(simdjson::minify(v))};
  });
  ForEachMember(parser, e.add, [&](std::string_view k, simdjson::dom::element v) {
    std::optional<Decimal> amount = Decimal::Parse(simdjson::minify(v));
    if (!amount) return;  // ingest accepts numbers only
    PropertyState& p = one.properties[std::string(k)];
    if (!p.add) p.add = PropertyState::Add{Decimal(), key};
    p.add->sum += *amount;
  });
  if (!e.unset.empty()) {
    simdjson::dom::element root;
    simdjson::dom::array keys;
    if (parser.parse(e.unset).get(root) == simdjson::SUCCESS &&
        root.get_array().get(keys) == simdjson::SUCCESS) {
      for (auto k : keys) {
        std::string_view name;
        if (k.get_string().get(name) != simdjson::SUCCESS) continue;
        PropertyState::Write w{key, true, ""};
        PropertyState& p = one.properties[std::string(name)];
        if (!p.last_write || WriteLess(*p.last_write, w)) p.last_write = std::move(w);
      }
    }
  }
  s.Merge(one);
  if (!e.user_id.empty()) {
    AddLink(project, e.anonymous_id, e.user_id, key, batch);
    if (e.type == "alias") AddLink(project, e.previous_id, e.user_id, key, batch);
  }
}

// ---- stored form ----

namespace {

void AppendKey(const OpKey& k, std::string* out) {
  out->append(std::to_string(k.time_ms));
  out->push_back(',');
  AppendJsonString(k.insert_id, out);
}

bool ReadKey(simdjson::dom::array a, size_t at, OpKey* k) {
  int64_t t = 0;
  std::string_view id;
  if (a.at(at).get_int64().get(t) != simdjson::SUCCESS) return false;
  if (a.at(at + 1).get_string().get(id) != simdjson::SUCCESS) return false;
  k->time_ms = t;
  k->insert_id.assign(id);
  return true;
}

}  // namespace

std::string SerializeProperties(const PropertyMap& props) {
  std::string out = "{";
  bool first = true;
  for (const auto& [name, p] : props) {
    if (!p.last_write && !p.first_once && !p.add) continue;
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(name, &out);
    out.append(":{");
    bool inner = false;
    if (p.last_write) {
      out.append("\"w\":[");
      AppendKey(p.last_write->key, &out);
      if (!p.last_write->unset) {
        out.push_back(',');
        out.append(p.last_write->value);
      }
      out.push_back(']');
      inner = true;
    }
    if (p.first_once) {
      if (inner) out.push_back(',');
      out.append("\"o\":[");
      AppendKey(p.first_once->key, &out);
      out.push_back(',');
      out.append(p.first_once->value);
      out.push_back(']');
      inner = true;
    }
    if (p.add) {
      if (inner) out.push_back(',');
      out.append("\"a\":[");
      out.append(p.add->sum.ToJson());
      out.push_back(',');
      AppendKey(p.add->last, &out);
      out.push_back(']');
    }
    out.push_back('}');
  }
  out.push_back('}');
  return out;
}

Status ParseProperties(std::string_view json, const OpKey& legacy_key, PropertyMap* out) {
  out->clear();
  if (json.empty()) return Status::Ok();
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::dom::object obj;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS ||
      root.get_object().get(obj) != simdjson::SUCCESS) {
    return Status::Internal("stored properties are not a JSON object");
  }
  for (auto field : obj) {
    PropertyState p;
    simdjson::dom::object regs;
    bool state = field.value.get_object().get(regs) == simdjson::SUCCESS;
    if (state) {
      // A per-property state has only the members w, o, a, each an array.
      for (auto r : regs) {
        simdjson::dom::array a;
        if ((r.key != "w" && r.key != "o" && r.key != "a") ||
            r.value.get_array().get(a) != simdjson::SUCCESS) {
          state = false;
          break;
        }
      }
    }
    if (!state) {  // a plain value of the schema before per-property state
      p.last_write = PropertyState::Write{legacy_key, false, std::string(simdjson::minify(field.value))};
      (*out)[std::string(field.key)] = std::move(p);
      continue;
    }
    for (auto r : regs) {
      simdjson::dom::array a;
      if (r.value.get_array().get(a) != simdjson::SUCCESS) continue;  // checked above
      if (r.key == "w") {
        PropertyState::Write w;
        if (!ReadKey(a, 0, &w.key)) return Status::Internal("stored property: bad w");
        simdjson::dom::element v;
        if (a.at(2).get(v) == simdjson::SUCCESS) {
          w.value = simdjson::minify(v);
        } else {
          w.unset = true;
        }
        p.last_write = std::move(w);
      } else if (r.key == "o") {
        PropertyState::Once o;
        simdjson::dom::element v;
        if (!ReadKey(a, 0, &o.key) || a.at(2).get(v) != simdjson::SUCCESS) {
          return Status::Internal("stored property: bad o");
        }
        o.value = simdjson::minify(v);
        p.first_once = std::move(o);
      } else {
        PropertyState::Add add;
        simdjson::dom::element v;
        if (a.at(0).get(v) != simdjson::SUCCESS || !ReadKey(a, 1, &add.last)) {
          return Status::Internal("stored property: bad a");
        }
        std::optional<Decimal> sum = Decimal::Parse(simdjson::minify(v));
        if (!sum) return Status::Internal("stored property: bad sum");
        add.sum = *sum;
        p.add = std::move(add);
      }
    }
    (*out)[std::string(field.key)] = std::move(p);
  }
  return Status::Ok();
}

std::string RenderProperties(const PropertyMap& props) {
  std::string out = "{";
  bool first = true;
  for (const auto& [name, p] : props) {
    std::optional<std::string> v = p.Value();
    if (!v) continue;
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(name, &out);
    out.push_back(':');
    out.append(*v);
  }
  out.push_back('}');
  return out;
}

// ---- persons ----

Person AssemblePerson(const std::string& root, const std::vector<IdRow>& candidates) {
  Person person;
  person.root = root;
  for (const IdRow& row : candidates) {
    if (PersonOf(row.id, row.state) == root &&
        std::find(person.ids.begin(), person.ids.end(), row.id) == person.ids.end()) {
      person.ids.push_back(row.id);
      IdState counted = row.state;
      counted.links.clear();
      person.merged.Merge(counted);
    }
    // A root's links are merge requests between two persons: refused. They
    // concern this person when they come from or go to one of its ids.
    if (IsRoot(row.state)) {
      for (const auto& [target, key] : row.state.links) {
        if (row.id == root || target == root) person.refused.push_back({row.id, target, key});
      }
    }
  }
  std::sort(person.ids.begin(), person.ids.end());
  std::sort(person.refused.begin(), person.refused.end());
  person.refused.erase(std::unique(person.refused.begin(), person.refused.end()),
                       person.refused.end());
  // The person's flags are the root's own.
  person.merged.user_seen = false;
  person.merged.linked_to = false;
  for (const IdRow& row : candidates) {
    if (row.id == root) {
      person.merged.user_seen = row.state.user_seen;
      person.merged.linked_to = row.state.linked_to;
    }
  }
  return person;
}

}  // namespace sluice
