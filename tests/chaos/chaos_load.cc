// The load of a chaos round: the clients and what each answer tells them
// about the events it carried (chaos_round.h).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>

#include "chaos/chaos_round.h"
#include "common/clock.h"
#include "ingest/formats/native.h"

namespace sluice::testing::chaos {
namespace {

using std::chrono::milliseconds;

std::string Body(const std::vector<const SentEvent*>& events) {
  NativeBodyBuilder body;
  for (const SentEvent* s : events) {
    Event e;
    e.insert_id = s->insert_id;
    e.event = s->event;
    e.user_id = s->user;
    e.time_ms = s->time_ms;
    body.Add(e);
  }
  return body.Finish();
}

// Sends a POST over a raw socket and hangs up: `cut` after half the body
// (the server must store nothing), else after the whole request without
// reading the answer (the server may or may not store it).
void RawPostAndHangUp(int port, const std::string& key, const std::string& body, bool cut) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req =
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer " +
        key + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    req += cut ? body.substr(0, body.size() / 2) : body;
    size_t off = 0;
    while (off < req.size()) {
      const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (!cut) Clock::Real().SleepMs(1);
  }
  ::close(fd);
}

}  // namespace

Load::Load(const ChaosOptions& o, std::vector<int> ports, int64_t start, int64_t end)
    : o_(o), ports_(std::move(ports)), start_(start), end_(end) {}

Load::~Load() { Join(); }

void Load::Start() {
  for (int c = 0; c < o_.clients; ++c) clients_.emplace_back([this, c] { Client(c); });
}

void Load::Join() {
  for (auto& t : clients_) t.join();
  clients_.clear();
}

void Load::Report(ChaosReport* r) const {
  r->requests = requests_.load();
  r->events_sent = sent_.load();
  r->cut_requests = cut_.load();
  r->abandoned_requests = abandoned_.load();
  r->poison_events = poison_.load();
}

void Load::Client(int c) {
  const ChaosOptions& o = o_;
  std::mt19937_64 rng(o.seed * 1000 + static_cast<uint64_t>(c));
  std::vector<SentEvent> mine;
  int64_t n = 0;
  int64_t paced = 0;  // events this client sent, for pacing
  while (NowMs() < end_) {
    const int p = static_cast<int>(rng() % kProjects);
    const size_t size = 1 + rng() % 40;
    std::vector<SentEvent> batch;
    for (size_t i = 0; i < size; ++i) {
      if (!mine.empty() && std::uniform_real_distribution<double>(0, 1)(rng) < o.dup_rate) {
        const SentEvent& old = mine[rng() % mine.size()];
        if (old.project == p) {
          batch.push_back(old);
          continue;
        }
      }
      SentEvent e;
      e.project = p;
      e.insert_id = "c" + std::to_string(c) + "-" + std::to_string(n++);
      e.event = "event_" + std::to_string(rng() % kNames);
      e.user = "user_" + std::to_string(rng() % kUsersPerProject);
      e.time_ms = kBaseMs + static_cast<int64_t>(rng() % (6 * kHourMs));
      if (o.poison && c < 2 && n == 5) {
        e.event = "poison";
        ++poison_;
      }
      batch.push_back(e);
    }
    // No insert_id twice in one request: keep the first.
    std::set<std::string> ids;
    std::vector<const SentEvent*> ptrs;
    for (const SentEvent& e : batch) {
      if (ids.insert(e.insert_id).second) ptrs.push_back(&e);
    }
    const std::string body = Body(ptrs);
    const int port = ports_[rng() % ports_.size()];
    int kind = 0;  // 0 normal, 1 cut mid-body, 2 abandoned
    if (o.disconnect) {
      const uint64_t roll = rng() % 100;
      kind = roll < 3 ? 1 : roll < 6 ? 2 : 0;
    }
    Outcome got;
    if (kind == 1) {
      RawPostAndHangUp(port, WriteKey(p), body, true);
      got.refused = true;
      ++cut_;
    } else if (kind == 2) {
      RawPostAndHangUp(port, WriteKey(p), body, false);
      got.unknown = true;
      ++abandoned_;
    } else {
      HttpResult r = HttpPost(
          "http://127.0.0.1:" + std::to_string(port) + "/v1/events", body,
          {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + WriteKey(p)}},
          milliseconds(5000));
      if (r.status == 200) {
        got.acked = true;
      } else if (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429) {
        got.refused = true;
      } else {
        got.unknown = true;  // 0 (cut, refused connection, timeout), 5xx, 429
      }
    }
    ++requests_;
    sent_ += static_cast<int64_t>(ptrs.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const SentEvent* e : ptrs) {
        const std::string key = Project(e->project) + "/" + e->insert_id;
        events_.emplace(key, *e);
        Outcome& out = outcomes_[key];
        out.acked |= got.acked;
        out.unknown |= got.unknown;
        out.refused |= got.refused;
      }
    }
    for (const SentEvent* e : ptrs) {
      if (mine.size() < 5000 && e->insert_id.rfind("c" + std::to_string(c) + "-", 0) == 0) {
        mine.push_back(*e);
      }
    }
    if (got.unknown && !got.acked) Clock::Real().SleepMs(20);
    if (o.client_pause_ms > 0) Clock::Real().SleepMs(o.client_pause_ms);
    if (o.events_per_second > 0) {
      // Pace this client to its share of the offered load.
      paced += static_cast<int64_t>(ptrs.size());
      const int64_t due = start_ + paced * 1000 * o.clients / o.events_per_second;
      const int64_t wait = due - NowMs();
      if (wait > 0) Clock::Real().SleepMs(std::min<int64_t>(wait, 1000));
    }
  }
}

}  // namespace sluice::testing::chaos
