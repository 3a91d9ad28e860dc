// Per-person profiles as mergeable state (DESIGN §4 `users`).
//
// A profile is a function of the SET of events, never of their order,
// batching or replica: everything the users consumer stores per distinct id
// combines with a commutative, associative operation (sums, min/max,
// last-writer-wins registers ordered by (event time, insert_id)), each event
// being applied exactly once by the store's fenced transaction.
//
//   field          per distinct id                 combine
//   events         count                           +
//   event_counts   count per event name            +
//   first_seen     earliest event time             min
//   last_seen      latest event time               max
//   $set / $unset  per property: the op with the   max by (time, insert_id, unset > set, value)
//                  greatest key (an $unset is a
//                  timestamped removal)
//   $set_once      per property: the earliest op   min by (time, insert_id, value)
//   $add           per property: sum of amounts    + (exact decimal), and the latest key (max)
//   identity       user_seen, linked_to (bools),   or, or, min per target
//                  links to other ids (earliest
//                  key per target)
//
// A property's value is read from its registers (PropertyState::Value):
//  - the base is the last $set; after a last $unset, the earliest $set_once
//    if that came after the $unset, else nothing; without either, the
//    earliest $set_once;
//  - $add increments: when every increment is older than the base, the base
//    wins; otherwise the value is the base (0 if absent or not a number) plus
//    the sum of ALL increments. (Exact sequential semantics would need every
//    increment's time; the one case that differs — increments, then a $set,
//    then more increments — counts the early increments too. docs/users.md.)
//
// Identity merge (the policy is itself a function of the set of events):
//  - an event with both a user_id U and an anonymous_id A (an identify, any
//    Amplitude event with device_id and user_id, a Segment call with both
//    ids) links A -> U; an alias links previous_id -> user_id;
//  - an id is a ROOT (a person of its own) when it is the target of some
//    link, or when it appeared as a user_id and never as a link's source;
//  - any other id with links joins the target of its earliest link (by
//    (time, insert_id)); an id with no links is its own person;
//  - a link whose source is itself a root would merge two persons: it is
//    never applied; it is reported on both profiles (merges_refused).
//  Every link target is a root, so there are no chains: a -> b -> c makes b
//  a root (target of a), b -> c is refused, a joins b. Cycles refuse both.
//
// Thread-compatible value types; pure functions.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/event.h"
#include "common/status.h"

namespace sluice {

// The order of operations on a profile: event time, then insert_id. Never
// seq or arrival.
struct OpKey {
  int64_t time_ms = 0;
  std::string insert_id;
  friend auto operator<=>(const OpKey&, const OpKey&) = default;
  friend bool operator==(const OpKey&, const OpKey&) = default;
};

// An exact decimal with 9 fraction digits, for $add sums: floating-point
// addition is not associative, so a double sum would depend on the order of
// the increments. Amounts with more fraction digits are rounded half-even
// when parsed (a function of the amount alone).
class Decimal {
 public:
  Decimal() = default;
  // A JSON number ("12", "-0.5", "1e3"); nullopt when not a number or beyond
  // +/-1e27.
  static std::optional<Decimal> Parse(std::string_view json_number);
  static Decimal FromInt(int64_t v);
  // Saturates at +/-1e27 instead of overflowing.
  Decimal& operator+=(const Decimal& o);
  friend bool operator==(const Decimal&, const Decimal&) = default;
  // Shortest exact JSON number: "12", "-0.5", "0.000000001".
  std::string ToJson() const;

 private:
  __int128 nanos_ = 0;  // value * 1e9
};

// One property's registers. Empty optionals: that kind of op never touched it.
struct PropertyState {
  struct Write {  // a $set (value) or $unset (unset == true) at key
    OpKey key;
    bool unset = false;
    std::string value;  // minified JSON; "" when unset
    friend bool operator==(const Write&, const Write&) = default;
  };
  struct Once {  // a $set_once
    OpKey key;
    std::string value;
    friend bool operator==(const Once&, const Once&) = default;
  };
  struct Add {  // the $add increments
    Decimal sum;
    OpKey last;  // the latest increment's key
    friend bool operator==(const Add&, const Add&) = default;
  };
  std::optional<Write> last_write;
  std::optional<Once> first_once;
  std::optional<Add> add;

  // Folds `o` in. Commutative and associative.
  void Merge(const PropertyState& o);
  // The effective value as minified JSON; nullopt when the property is absent.
  std::optional<std::string> Value() const;
  friend bool operator==(const PropertyState&, const PropertyState&) = default;
};

using PropertyMap = std::map<std::string, PropertyState>;

// Everything stored per (project, distinct id).
struct IdState {
  int64_t events = 0;        // events attributed to this id (user_id, else anonymous_id)
  int64_t first_seen_ms = 0;  // meaningful when events > 0
  int64_t last_seen_ms = 0;
  std::map<std::string, int64_t> event_counts;
  PropertyMap properties;
  bool user_seen = false;  // appeared as the user_id of an event
  bool linked_to = false;  // is the target of a link
  std::map<std::string, OpKey> links;  // link targets of this id -> earliest key

  // Folds `o` in. Commutative and associative (counts add: each event must be
  // applied once, which the store's fenced transaction guarantees).
  void Merge(const IdState& o);
  friend bool operator==(const IdState&, const IdState&) = default;
};

// True when `s` is a person of its own (see the policy above).
bool IsRoot(const IdState& s);
// The earliest link of `s` as (target, key), by (key, target); nullopt without links.
std::optional<std::pair<std::string, OpKey>> EarliestLink(const IdState& s);
// The person `id` belongs to: itself when root or unlinked, else its earliest link's target.
std::string PersonOf(const std::string& id, const IdState& s);

// The merges one id's state takes part in (sluice_identity_links): applied
// is 1 when the id joins another person (not a root, has links); refused is
// the number of its links when it is a root (each would merge two persons).
// Summed over every stored id they are the store-wide figures, so a store
// keeps the sums by adding after - before for each row it rewrites.
struct LinkCounts {
  int64_t applied = 0;
  int64_t refused = 0;
};
// REQUIRES: s.links holds every link of the id.
LinkCounts CountLinks(const IdState& s);

// Per (project, distinct id) state of a batch of events.
using ProfileBatch = std::map<std::pair<std::string, std::string>, IdState>;

// Adds one event (its project and insert_id are queue columns) to `batch`:
// the event's own id gets its counts, times and property ops; a user_id is
// marked user_seen; links (anonymous_id -> user_id, alias previous_id ->
// user_id) go to the source id with the target marked linked_to. Property
// objects that do not parse are skipped (ingest validated them).
void AddEvent(const std::string& project, const std::string& insert_id, const Event& e,
              ProfileBatch* batch);

// The stored form of PropertyMap: a JSON object, keys sorted,
//   {"plan":{"w":[t,"id",<value>]},"gone":{"w":[t,"id"]},
//    "src":{"o":[t,"id",<value>]},"n":{"a":[<sum>,t,"id"]}}
// ("w" with two elements is an $unset). Old plain objects ({"k":v}, schema
// before per-property state) are read as $sets at `legacy_key`.
std::string SerializeProperties(const PropertyMap& props);
Status ParseProperties(std::string_view json, const OpKey& legacy_key, PropertyMap* out);
// The effective properties as a JSON object, keys sorted.
std::string RenderProperties(const PropertyMap& props);

// A link whose source is a root: two persons would merge; never applied.
struct RefusedMerge {
  std::string from;
  std::string to;
  OpKey key;
  friend auto operator<=>(const RefusedMerge&, const RefusedMerge&) = default;
};

// One id's stored state, as the store read it.
struct IdRow {
  std::string id;
  IdState state;
};

// A person assembled from its ids: the rows the store found for it.
struct Person {
  std::string root;              // the person's id
  std::vector<std::string> ids;  // every id merged into it, sorted (root included)
  IdState merged;                // members' states merged (links excluded)
  std::vector<RefusedMerge> refused;  // sorted
};

// Builds the person `root` from `candidates`: the root's own row and every
// row that may belong to it (rows whose earliest link targets it, rows with a
// link to it); rows that do not belong are ignored, so a superset is fine.
Person AssemblePerson(const std::string& root, const std::vector<IdRow>& candidates);

}  // namespace sluice
