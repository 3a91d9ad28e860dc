#include "testing/in_store.h"

#include <algorithm>
#include <utility>

#include "common/event.h"

namespace sluice::testing {

InStoreBuilder FromConsumer(const Consumer& consumer) {
  return InStoreBuilder{consumer.bit(),
                        [&consumer](std::span<const ClaimedEvent* const> rows, Effects* out) {
                          // Decoded here, not cached: replica processes see many bodies.
                          std::vector<Event> bodies(rows.size());
                          std::vector<DecodedEvent> events(rows.size());
                          for (size_t i = 0; i < rows.size(); ++i) {
                            events[i].row = rows[i];
                            if (ParseBody(rows[i]->body, &bodies[i]).ok())
                              events[i].event = &bodies[i];
                          }
                          consumer.BuildEffects(events, out);
                        },
                        {}};
}

std::vector<InStoreEffects> BuildInStore(std::span<const ClaimedEvent> events,
                                         const std::vector<InStoreBuilder>& builders,
                                         std::vector<std::vector<const ClaimedEvent*>>* rows) {
  std::vector<InStoreEffects> out;
  rows->clear();
  for (const InStoreBuilder& b : builders) {
    std::vector<const ClaimedEvent*> lacking;
    for (const ClaimedEvent& e : events) {
      if ((e.done_mask & b.bit) == 0) lacking.push_back(&e);
    }
    if (lacking.empty()) continue;
    InStoreEffects part{.bit = b.bit, .effects = {}};
    if (b.build) b.build(lacking, &part.effects);
    out.push_back(std::move(part));
    rows->push_back(std::move(lacking));
  }
  return out;
}

std::vector<ClaimedEvent> WithCurrentMasks(std::span<const ClaimedEvent> events,
                                           std::span<const HeldRow> held) {
  std::vector<ClaimedEvent> out;
  for (const HeldRow& h : held) {
    auto it = std::find_if(events.begin(), events.end(),
                           [&](const ClaimedEvent& e) { return e.seq == h.seq; });
    if (it == events.end()) continue;
    out.push_back(*it);
    out.back().done_mask = h.done_mask;
  }
  return out;
}

namespace {

constexpr int kMaxRebuilds = 3;

void ReportApplied(const std::vector<InStoreBuilder>& builders,
                   const std::vector<InStoreEffects>& parts,
                   const std::vector<std::vector<const ClaimedEvent*>>& rows) {
  for (size_t i = 0; i < parts.size(); ++i) {
    for (const InStoreBuilder& b : builders) {
      if (b.bit == parts[i].bit && b.applied) b.applied(rows[i]);
    }
  }
}

// Shared by MarkDone and Complete: Req is the request, Call runs it.
template <typename Req, typename Call>
auto Building(Req req, const std::vector<InStoreBuilder>& builders, int* stale_answers, Call call) {
  std::vector<ClaimedEvent> rows(req.events.begin(), req.events.end());
  std::vector<std::vector<const ClaimedEvent*>> parts_rows;
  for (int attempt = 0;; ++attempt) {
    req.events = rows;
    req.in_store = BuildInStore(rows, builders, &parts_rows);
    auto r = call(req);
    if (!r.ok() || !r->stale || attempt == kMaxRebuilds) {
      if (r.ok() && !r->stale) ReportApplied(builders, req.in_store, parts_rows);
      return r;
    }
    if (stale_answers != nullptr) ++*stale_answers;
    rows = WithCurrentMasks(rows, r->held);
  }
}

}  // namespace

Result<MarkDoneResult> MarkDoneBuilding(Store& store, MarkDoneRequest req,
                                        const std::vector<InStoreBuilder>& builders,
                                        int* stale_answers) {
  return Building(std::move(req), builders, stale_answers,
                  [&](const MarkDoneRequest& r) { return store.MarkDone(r); });
}

Result<CompleteResult> CompleteBuilding(Store& store, CompleteRequest req,
                                        const std::vector<InStoreBuilder>& builders,
                                        int* stale_answers) {
  return Building(std::move(req), builders, stale_answers,
                  [&](const CompleteRequest& r) { return store.Complete(r); });
}

}  // namespace sluice::testing
