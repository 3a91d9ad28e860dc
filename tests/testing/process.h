// Process harness: runs the real `sluice` binary (SLUICE_BINARY), or the test
// binary sluice-testkit (SLUICE_TESTKIT_BINARY: the shipped commands plus the
// test hooks of testkit/testkit.h) for tests that need one, the way an
// operator would — in its own temp dir, on its own port, with its output in a
// log file — and kills (-9), stops, continues, terminates and restarts it.
// Plus a tiny blocking HTTP client for tests. Thread-compatible.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sluice::testing {

// The shipped binary, and the test binary with the test hooks.
inline constexpr const char* kSluiceBinary = SLUICE_BINARY;
inline constexpr const char* kTestkitBinary = SLUICE_TESTKIT_BINARY;

struct HttpResult {
  int status = 0;  // 0 when the request failed (connection refused, timeout)
  std::string body;
  std::string error;                                         // why status is 0
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string Header(const std::string& lower_name) const;
};

// kTestkitBinary when `config_text` names a test-only setting (a "test"
// consumer, the naive claim, fencing off, ingest fault injection), which the
// shipped binary refuses; else kSluiceBinary.
std::string BinaryFor(const std::string& config_text);

// Blocking HTTP; `headers` as "Name: value"-style pairs.
HttpResult HttpGet(const std::string& url,
                   const std::vector<std::pair<std::string, std::string>>& headers = {},
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
HttpResult HttpPost(const std::string& url, const std::string& body,
                    const std::vector<std::pair<std::string, std::string>>& headers = {},
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct CommandResult {
  int exit_code = -1;  // -signal when killed by a signal
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs `sluice ARGS...` to completion (status, dlq, migrate, send...).
CommandResult RunSluice(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env = {},
                        std::chrono::milliseconds timeout = std::chrono::seconds(60),
                        const std::string& binary = kSluiceBinary);

struct SluiceProcessOptions {
  std::string dir;                         // working dir; REQUIRES: exists
  std::vector<std::string> args;           // after "serve"; --listen is added unless present
  std::map<std::string, std::string> env;  // added to the environment
  int port = 0;                            // 0: the server picks one (read from its log)
  std::string log_name = "sluice.log";     // stdout+stderr, appended across restarts
  std::string binary = kSluiceBinary;      // kTestkitBinary for the test hooks
};

class SluiceProcess {
 public:
  explicit SluiceProcess(SluiceProcessOptions options);
  ~SluiceProcess();  // SIGKILL if still running.

  SluiceProcess(const SluiceProcess&) = delete;
  SluiceProcess& operator=(const SluiceProcess&) = delete;

  // Starts `sluice serve ...`, waits for its "listening" log line and a 200
  // from /healthz. False (with the log in `error()`) when it did not come up.
  bool Start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Terminate-or-kill is not implied: Restart() expects the process stopped.
  bool Restart(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    return Start(timeout);
  }

  // SIGKILL and reap. Returns the exit status (-9).
  int Kill();
  // SIGTERM and wait up to `timeout`; the exit code, or nullopt on timeout
  // (the process is then still running).
  std::optional<int> Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // SIGSTOP / SIGCONT.
  void Pause();
  void Resume();
  // Non-blocking: true while the child has not exited.
  bool Running();
  // The exit code after it exited on its own (nullopt while running).
  std::optional<int> ExitCode();

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string Url(const std::string& path) const { return url() + path; }
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;
  const std::string& error() const { return error_; }

 private:
  SluiceProcessOptions options_;
  std::string log_path_;
  size_t log_offset_ = 0;  // where this run's output starts in the log
  pid_t pid_ = -1;
  int port_ = 0;
  std::optional<int> exit_code_;
  std::string error_;
};

// The port in the last {"msg":"listening","addr":"HOST:PORT"} line of `log`; 0 when absent.
int ParseListeningPort(const std::string& log);

}  // namespace sluice::testing
