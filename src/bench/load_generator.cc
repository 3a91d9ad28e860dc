#include "bench/load_generator.h"

// <utility> first: Boost 1.74's awaitable.hpp uses std::exchange without it.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "common/time.h"
#include "ingest/formats/gzip.h"
#include "ingest/formats/native.h"

namespace sluice {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr int kPrefixChars = 12;   // random per run: ids never collide across runs
constexpr int kCounterChars = 16;  // hex digits of the per-event counter

struct ParsedUrl {
  std::string host;
  std::string port = "80";
  std::string path = "/v1/events";
};

Result<ParsedUrl> ParseUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) return Status::InvalidArgument("--url must start with http://");
  ParsedUrl out;
  std::string rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    if (slash + 1 < rest.size()) out.path = rest.substr(slash);
    rest.resize(slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    out.port = rest.substr(colon + 1);
    rest.resize(colon);
  }
  if (rest.empty()) return Status::InvalidArgument("--url has no host");
  out.host = rest;
  return out;
}

// splitmix64's finalizer: a bijection on 64 bits, so distinct counters stay
// distinct ids, spread like random ones (UUIDv4 messageIds, random insert_ids).
uint64_t Scramble(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void WriteHex(uint64_t v, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int k = kCounterChars - 1; k >= 0; --k) {
    out[k] = kHex[v & 15];
    v >>= 4;
  }
}

// One request body of `batch` events, written once by the native encoder;
// the id counters are patched in place per request (the hot path).
struct BodyTemplate {
  std::string body;
  std::vector<size_t> counter_offsets;

  void Build(const SyntheticEvents& gen, const std::string& prefix, int64_t first_index,
             int32_t batch) {
    const std::string placeholder = prefix + "-" + std::string(kCounterChars, '0');
    NativeBodyBuilder builder;
    std::vector<size_t> starts;
    for (int32_t j = 0; j < batch; ++j) {
      Event e = gen.Make(first_index + j);
      e.insert_id = placeholder;
      starts.push_back(builder.Add(e));
    }
    body = builder.Finish();
    // The placeholder (hex digits and '-') needs no escaping, so it stands
    // verbatim in each object; the counter digits follow prefix + '-'.
    for (size_t start : starts) {
      counter_offsets.push_back(body.find(placeholder, start) + prefix.size() + 1);
    }
  }

  // Event j of request `req` gets counter req*batch+j, or with probability
  // dup_frac an earlier counter (a duplicate the server must drop); with
  // random_ids the counter is scrambled before it is written.
  void Patch(int64_t req, double dup_frac, bool random_ids, std::mt19937_64* rng) {
    const int64_t batch = static_cast<int64_t>(counter_offsets.size());
    std::uniform_real_distribution<double> coin(0.0, 1.0);
    for (int64_t j = 0; j < batch; ++j) {
      uint64_t counter = static_cast<uint64_t>(req * batch + j);
      if (dup_frac > 0 && counter > 0 && coin(*rng) < dup_frac) counter = (*rng)() % counter;
      WriteHex(random_ids ? Scramble(counter) : counter,
               body.data() + counter_offsets[static_cast<size_t>(j)]);
    }
  }
};

struct Shared {
  const IngestBenchOptions* o = nullptr;
  ParsedUrl url;
  tcp::endpoint endpoint;
  int64_t total_requests = 0;
  std::string prefix;
  std::vector<std::string> gzip_bodies;  // gzip: request i's compressed body
  int64_t t0_us = 0;

  std::atomic<int64_t> next_request{0};
  std::atomic<int64_t> requests_ok{0};
  std::atomic<int64_t> requests_failed{0};
  std::atomic<int64_t> events_ok{0};
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> last_answer_us{0};
  std::atomic<int64_t> connected{0};

  std::mutex mu;
  std::map<std::string, int64_t> errors;  // GUARDED_BY(mu)

  void Error(const std::string& what) {
    requests_failed.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    ++errors[what];
  }
};

std::string Header(const Shared& s, size_t body_len) {
  std::string h = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\n",
      s.url.path, s.url.host, s.url.port, body_len);
  if (!s.o->write_key.empty()) h += fmt::format("Authorization: Bearer {}\r\n", s.o->write_key);
  if (s.o->gzip) h += "Content-Encoding: gzip\r\n";
  h += "\r\n";
  return h;
}

int64_t FindNumber(std::string_view body, std::string_view key) {
  const size_t at = body.find(key);
  if (at == std::string_view::npos) return 0;
  return std::strtoll(body.data() + at + key.size(), nullptr, 10);
}

struct Connection {
  BodyTemplate tpl;
  std::string header;  // non-gzip: every body of this connection has the same length
  std::mt19937_64 rng;
  std::vector<int64_t> latencies_us;
  std::vector<int64_t> sent_at_us;  // with window_s: each latency's send (due) time - t0
};

asio::awaitable<void> RunConnection(Shared* s, Connection* c) {
  auto executor = co_await asio::this_coro::executor;
  tcp::socket socket(executor);
  asio::steady_timer timer(executor);
  bool open = false;
  std::string rbuf;
  const IngestBenchOptions& o = *s->o;
  for (;;) {
    const int64_t i = s->next_request.fetch_add(1, std::memory_order_relaxed);
    if (i >= s->total_requests) break;
    std::string gz_header;
    if (o.gzip) {
      gz_header = Header(*s, s->gzip_bodies[static_cast<size_t>(i)].size());
    } else {
      c->tpl.Patch(i, o.dup_frac, o.random_ids, &c->rng);
    }
    int64_t start_us = NowMicros();
    if (o.rate > 0) {
      // Open loop: request i is due at t0 + i*batch/rate. Latency counts from
      // when it was due, so a stalled server is not hidden by a stalled client.
      const int64_t due_us =
          s->t0_us + static_cast<int64_t>(static_cast<double>(i) * o.batch / o.rate * 1e6);
      if (due_us > start_us) {
        timer.expires_after(std::chrono::microseconds(due_us - start_us));
        co_await timer.async_wait(asio::use_awaitable);
      }
      start_us = due_us;
    }
    try {
      if (!open) {
        co_await socket.async_connect(s->endpoint, asio::use_awaitable);
        socket.set_option(tcp::no_delay(true));
        open = true;
        rbuf.clear();
        s->connected.fetch_add(1, std::memory_order_relaxed);
      }
      std::array<asio::const_buffer, 2> bufs = {
          o.gzip ? asio::buffer(gz_header) : asio::buffer(c->header),
          o.gzip ? asio::buffer(s->gzip_bodies[static_cast<size_t>(i)])
                 : asio::buffer(c->tpl.body)};
      co_await asio::async_write(socket, bufs, asio::use_awaitable);
      const size_t head_len = co_await asio::async_read_until(socket, asio::dynamic_buffer(rbuf),
                                                              "\r\n\r\n", asio::use_awaitable);
      std::string head = rbuf.substr(0, head_len);
      for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      const int status = head.size() > 12 ? std::atoi(head.c_str() + 9) : 0;
      const size_t content_length = static_cast<size_t>(FindNumber(head, "content-length:"));
      const bool close = head.find("connection: close") != std::string::npos;
      if (head.find("transfer-encoding: chunked") != std::string::npos) {
        throw std::runtime_error("chunked responses are not supported");
      }
      const size_t need = head_len + content_length;
      if (rbuf.size() < need) {
        co_await asio::async_read(socket, asio::dynamic_buffer(rbuf),
                                  asio::transfer_exactly(need - rbuf.size()), asio::use_awaitable);
      }
      const std::string_view body(rbuf.data() + head_len, content_length);
      const int64_t end_us = NowMicros();
      if (status == 200) {
        s->requests_ok.fetch_add(1, std::memory_order_relaxed);
        s->events_ok.fetch_add(o.batch, std::memory_order_relaxed);
        s->accepted.fetch_add(FindNumber(body, "\"accepted\":"), std::memory_order_relaxed);
        s->duplicates.fetch_add(FindNumber(body, "\"duplicates\":"), std::memory_order_relaxed);
        c->latencies_us.push_back(end_us - start_us);
        if (o.window_s > 0) c->sent_at_us.push_back(start_us - s->t0_us);
      } else {
        s->Error(fmt::format("HTTP {}", status));
      }
      int64_t prev = s->last_answer_us.load(std::memory_order_relaxed);
      while (prev < end_us && !s->last_answer_us.compare_exchange_weak(prev, end_us)) {
      }
      rbuf.erase(0, need);
      if (close) {
        boost::system::error_code ignored;
        socket.close(ignored);
        open = false;
      }
    } catch (const std::exception& e) {
      s->Error(e.what());
      boost::system::error_code ignored;
      socket.close(ignored);
      open = false;
    }
  }
  boost::system::error_code ignored;
  socket.close(ignored);
}

// Groups every answered request by the window its send (due) time falls in.
// A window is judged by what was sent in it, so a stall shows up in the
// window whose requests waited, not in the one where the answers arrived.
std::vector<IngestWindow> SplitWindows(const std::vector<std::unique_ptr<Connection>>& conns,
                                       double window_s, int32_t batch) {
  const auto width_us = static_cast<int64_t>(window_s * 1e6);
  std::vector<std::vector<int64_t>> by_window;
  for (const auto& c : conns) {
    for (size_t k = 0; k < c->sent_at_us.size(); ++k) {
      const auto w = static_cast<size_t>(std::max<int64_t>(0, c->sent_at_us[k]) / width_us);
      if (w >= by_window.size()) by_window.resize(w + 1);
      by_window[w].push_back(c->latencies_us[k]);
    }
  }
  std::vector<IngestWindow> out(by_window.size());
  for (size_t w = 0; w < by_window.size(); ++w) {
    out[w].start_s = static_cast<double>(w) * window_s;
    out[w].events_ok = static_cast<int64_t>(by_window[w].size()) * batch;
    out[w].latency = Summarize(&by_window[w]);
  }
  return out;
}

}  // namespace

Result<IngestBenchResult> RunIngestBench(const IngestBenchOptions& o) {
  if (o.events <= 0 || o.batch <= 0 || o.batch > 1000 || o.connections <= 0 || o.threads <= 0 ||
      o.dup_frac < 0 || o.dup_frac > 1 || o.rate < 0 || o.window_s < 0) {
    return Status::InvalidArgument(
        "need events > 0, 1 <= batch <= 1000, connections >= 1, threads >= 1, "
        "0 <= dup-frac <= 1, rate >= 0, window >= 0");
  }
  auto shared = std::make_unique<Shared>();
  Shared& s = *shared;
  s.o = &o;
  SLUICE_ASSIGN_OR_RETURN(s.url, ParseUrl(o.url));
  try {
    asio::io_context resolver_io;
    tcp::resolver resolver(resolver_io);
    auto results = resolver.resolve(s.url.host, s.url.port);
    if (results.empty()) return Status::Unavailable("cannot resolve " + s.url.host);
    s.endpoint = *results.begin();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("resolve: ") + e.what());
  }
  s.total_requests = (o.events + o.batch - 1) / o.batch;
  s.prefix = RandomHex(kPrefixChars);
  const SyntheticEvents gen(o.users, o.event_bytes, WallNowMs());

  std::random_device rd;
  std::vector<std::unique_ptr<Connection>> conns;
  for (int32_t k = 0; k < o.connections; ++k) {
    auto c = std::make_unique<Connection>();
    c->rng.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
    c->tpl.Build(gen, s.prefix, static_cast<int64_t>(k) * o.batch, o.batch);
    c->latencies_us.reserve(static_cast<size_t>(s.total_requests / o.connections + 16));
    conns.push_back(std::move(c));
  }
  IngestBenchResult r;
  r.body_bytes = static_cast<int64_t>(conns[0]->tpl.body.size());
  if (o.gzip) {
    // Every body differs (unique ids), so each is compressed before the clock starts.
    BodyTemplate tpl;
    tpl.Build(gen, s.prefix, 0, o.batch);
    std::mt19937_64 rng(rd());
    s.gzip_bodies.reserve(static_cast<size_t>(s.total_requests));
    for (int64_t i = 0; i < s.total_requests; ++i) {
      tpl.Patch(i, o.dup_frac, o.random_ids, &rng);
      SLUICE_ASSIGN_OR_RETURN(std::string gz, Compress(tpl.body, Compression::kGzip));
      s.gzip_bodies.push_back(std::move(gz));
    }
  } else {
    for (auto& c : conns) c->header = Header(s, c->tpl.body.size());
  }

  asio::io_context io(o.threads);
  const double cpu0 = ProcessCpuSeconds();
  s.t0_us = NowMicros();
  for (auto& c : conns) asio::co_spawn(io, RunConnection(&s, c.get()), asio::detached);
  std::vector<std::thread> threads;
  for (int32_t t = 1; t < o.threads; ++t) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : threads) t.join();
  r.client_cpu_s = ProcessCpuSeconds() - cpu0;

  if (s.connected.load() == 0) {
    return Status::Unavailable(fmt::format("no connection to {}:{} succeeded ({})", s.url.host,
                                           s.url.port,
                                           s.errors.empty() ? "" : s.errors.begin()->first));
  }
  std::vector<int64_t> all;
  for (auto& c : conns) all.insert(all.end(), c->latencies_us.begin(), c->latencies_us.end());
  if (o.window_s > 0) r.windows = SplitWindows(conns, o.window_s, o.batch);
  r.latency = Summarize(&all);
  r.requests_ok = s.requests_ok.load();
  r.requests_failed = s.requests_failed.load();
  r.events_ok = s.events_ok.load();
  r.accepted = s.accepted.load();
  r.duplicates = s.duplicates.load();
  r.errors = s.errors;
  const int64_t end_us = std::max(s.last_answer_us.load(), s.t0_us + 1);
  r.seconds = static_cast<double>(end_us - s.t0_us) / 1e6;
  r.events_per_s = static_cast<double>(r.events_ok) / r.seconds;
  r.requests_per_s = static_cast<double>(r.requests_ok) / r.seconds;
  return r;
}

std::string IngestBenchResult::ToJson(const IngestBenchOptions& o) const {
  JsonObject opts;
  opts.Add("url", o.url).Add("events", o.events).Add("batch", static_cast<int64_t>(o.batch));
  opts.Add("connections", static_cast<int64_t>(o.connections));
  opts.Add("event_bytes", static_cast<int64_t>(o.event_bytes)).Add("dup_frac", o.dup_frac);
  opts.Add("random_ids", static_cast<int64_t>(o.random_ids));
  opts.AddBool("gzip", o.gzip).Add("rate", o.rate).Add("threads", static_cast<int64_t>(o.threads));
  opts.Add("window_s", o.window_s);
  JsonObject errs;
  for (const auto& [what, n] : errors) errs.Add(what, n);
  JsonObject j;
  j.Add("bench", "ingest").AddRaw("options", opts.Build());
  j.Add("events_per_s", events_per_s).Add("requests_per_s", requests_per_s);
  j.Add("seconds", seconds).Add("client_cpu_s", client_cpu_s).Add("requests_ok", requests_ok);
  j.Add("requests_failed", requests_failed);
  j.Add("events_ok", events_ok).Add("accepted", accepted).Add("duplicates", duplicates);
  j.Add("body_bytes", body_bytes).AddLatency("latency", latency).AddRaw("errors", errs.Build());
  std::string ws = "[";
  for (const IngestWindow& w : windows) {
    JsonObject jw;
    jw.Add("start_s", w.start_s).Add("events_ok", w.events_ok).AddLatency("latency", w.latency);
    ws += (ws.size() > 1 ? "," : "") + jw.Build();
  }
  j.AddRaw("windows", ws + "]");
  return j.Build();
}

std::string IngestBenchResult::ToText(const IngestBenchOptions& o) const {
  std::string out = fmt::format(
      "{:.0f} events/s  {:.0f} requests/s  ({} events in {:.2f} s, {} x {} events of {} bytes, "
      "{} connections{}{})\n",
      events_per_s, requests_per_s, events_ok, seconds, requests_ok, o.batch, body_bytes,
      o.connections, o.gzip ? ", gzip" : "",
      o.rate > 0 ? fmt::format(", target {:.0f} events/s", o.rate) : "");
  out += fmt::format("accepted {}  duplicates {}  failed requests {}  client CPU {:.2f} s\n",
                     accepted, duplicates, requests_failed, client_cpu_s);
  out += "ack latency " + FormatLatency(latency) + "\n";
  for (const IngestWindow& w : windows) {
    out += fmt::format("  from {:.0f} s: {} events, ack {}\n", w.start_s, w.events_ok,
                       FormatLatency(w.latency));
  }
  for (const auto& [what, n] : errors) out += fmt::format("  error x{}: {}\n", n, what);
  return out;
}

}  // namespace sluice
