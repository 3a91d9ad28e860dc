#include "testing/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "http_client/simple_http.h"
#include "testing/testing.h"

extern char** environ;

namespace sluice::testing {
namespace {

HttpResult Call(const std::string& method, const std::string& url, const std::string& body,
                const std::vector<std::pair<std::string, std::string>>& headers,
                std::chrono::milliseconds timeout) {
  SimpleHttpRequest req;
  req.method = method;
  req.url = url;
  req.body = body;
  req.headers = headers;
  req.timeout_ms = timeout.count();
  HttpResult out;
  Result<SimpleHttpResponse> resp = SimpleHttp(req);
  if (!resp.ok()) {
    out.error = resp.status().ToString();
    return out;
  }
  out.status = resp->status;
  out.body = std::move(resp->body);
  out.headers = std::move(resp->headers);
  return out;
}

std::string ReadFileFrom(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return offset <= all.size() ? all.substr(offset) : std::string();
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

// argv/envp prepared before fork: the child only calls async-signal-safe functions.
struct ExecPlan {
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;

  ExecPlan(const std::string& binary, const std::vector<std::string>& args,
           const std::map<std::string, std::string>& env) {
    argv_storage.push_back(binary);
    for (const std::string& a : args) argv_storage.push_back(a);
    std::map<std::string, std::string> merged;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : env) merged[k] = v;
    for (const auto& [k, v] : merged) env_storage.push_back(k + "=" + v);
    for (std::string& s : argv_storage) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (std::string& s : env_storage) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
};

// Forks and execs; the child's stdout goes to out_fd, stderr to err_fd, cwd = dir.
pid_t Spawn(const ExecPlan& plan, const std::string& dir, int out_fd, int err_fd) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (!dir.empty() && chdir(dir.c_str()) != 0) _exit(126);
  dup2(out_fd, STDOUT_FILENO);
  dup2(err_fd, STDERR_FILENO);
  const int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, STDIN_FILENO);
  execve(plan.argv[0], plan.argv.data(), plan.envp.data());
  _exit(127);
}

}  // namespace

std::string HttpResult::Header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

HttpResult HttpGet(const std::string& url,
                   const std::vector<std::pair<std::string, std::string>>& headers,
                   std::chrono::milliseconds timeout) {
  return Call("GET", url, "", headers, timeout);
}

HttpResult HttpPost(const std::string& url, const std::string& body,
                    const std::vector<std::pair<std::string, std::string>>& headers,
                    std::chrono::milliseconds timeout) {
  auto with_type = headers;
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    if (strcasecmp(k.c_str(), "content-type") == 0) has_type = true;
  }
  if (!has_type) with_type.emplace_back("Content-Type", "application/json");
  return Call("POST", url, body, with_type, timeout);
}

std::string BinaryFor(const std::string& config_text) {
  for (const char* needle : {"type = \"test\"", "claim_strategy", "fencing", "fail_first_requests",
                             "fail_after_commit"}) {
    if (config_text.find(needle) != std::string::npos) return kTestkitBinary;
  }
  return kSluiceBinary;
}

CommandResult RunSluice(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env,
                        std::chrono::milliseconds timeout, const std::string& binary) {
  CommandResult result;
  TempDir tmp;
  const std::string out_path = tmp.File("stdout");
  const std::string err_path = tmp.File("stderr");
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ExecPlan plan(binary, args, env);
  const pid_t pid = Spawn(plan, "", out_fd, err_fd);
  close(out_fd);
  close(err_fd);
  if (pid < 0) return result;
  int status = 0;
  const bool done = WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout,
                              std::chrono::milliseconds(5));
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  result.exit_code = DecodeWaitStatus(status);
  result.out = ReadFileFrom(out_path, 0);
  result.err = ReadFileFrom(err_path, 0);
  return result;
}

int ParseListeningPort(const std::string& log) {
  int port = 0;
  size_t pos = 0;
  while ((pos = log.find("\"msg\":\"listening\"", pos)) != std::string::npos) {
    const size_t line_end = log.find('\n', pos);
    const std::string line =
        log.substr(pos, line_end == std::string::npos ? std::string::npos : line_end - pos);
    const size_t addr = line.find("\"addr\":\"");
    if (addr != std::string::npos) {
      const size_t end = line.find('"', addr + 8);
      const std::string hostport = line.substr(addr + 8, end - addr - 8);
      const size_t colon = hostport.rfind(':');
      if (colon != std::string::npos) port = std::atoi(hostport.c_str() + colon + 1);
    }
    pos += 1;
  }
  return port;
}

SluiceProcess::SluiceProcess(SluiceProcessOptions options) : options_(std::move(options)) {
  log_path_ = options_.dir + "/" + options_.log_name;
}

SluiceProcess::~SluiceProcess() {
  if (pid_ > 0 && Running()) Kill();
}

bool SluiceProcess::Start(std::chrono::milliseconds timeout) {
  error_.clear();
  exit_code_.reset();
  std::vector<std::string> args = {"serve"};
  bool has_listen = false;
  for (const std::string& a : options_.args) {
    if (a == "--listen" || a.rfind("--listen=", 0) == 0) has_listen = true;
    args.push_back(a);
  }
  // A restart keeps the port clients already know.
  const int want_port = options_.port != 0 ? options_.port : port_;
  if (!has_listen) {
    args.push_back("--listen");
    args.push_back("127.0.0.1:" + std::to_string(want_port));
  }
  struct stat st {};
  log_offset_ = stat(log_path_.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  const int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    error_ = "cannot open " + log_path_;
    return false;
  }
  ExecPlan plan(options_.binary, args, options_.env);
  pid_ = Spawn(plan, options_.dir, fd, fd);
  close(fd);
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  int port = 0;
  const bool listening = WaitUntil(
      [&] {
        port = ParseListeningPort(ReadLog());
        return port != 0 || !Running();
      },
      timeout);
  if (!listening || port == 0) {
    error_ = "sluice did not start listening; log:\n" + ReadLog();
    return false;
  }
  port_ = port;
  const bool healthy =
      WaitUntil([&] { return HttpGet(Url("/healthz"), {}, std::chrono::seconds(2)).status == 200; },
                timeout, std::chrono::milliseconds(20));
  if (!healthy) {
    error_ = "/healthz did not answer 200; log:\n" + ReadLog();
    return false;
  }
  return true;
}

int SluiceProcess::Kill() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) exit_code_ = DecodeWaitStatus(status);
  pid_ = -1;
  return exit_code_.value_or(-1);
}

std::optional<int> SluiceProcess::Terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return exit_code_;
  kill(pid_, SIGCONT);  // a paused process could not act on SIGTERM
  kill(pid_, SIGTERM);
  const bool exited = WaitUntil([&] { return !Running(); }, timeout);
  if (!exited) return std::nullopt;
  return exit_code_;
}

namespace {

// The state letter of /proc/PID/stat ('R', 'S', 'T' stopped, ...), '?' if unknown.
char ProcState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
}

}  // namespace

void SluiceProcess::Pause() {
  if (pid_ <= 0) return;
  kill(pid_, SIGSTOP);
  // SIGSTOP is asynchronous: return once the process is really stopped.
  WaitUntil([&] { return ProcState(pid_) == 'T'; }, std::chrono::seconds(5),
            std::chrono::milliseconds(1));
}

void SluiceProcess::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

bool SluiceProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) exit_code_ = DecodeWaitStatus(status);
  pid_ = -1;
  return false;
}

std::optional<int> SluiceProcess::ExitCode() {
  if (Running()) return std::nullopt;
  return exit_code_;
}

std::string SluiceProcess::ReadLog() const { return ReadFileFrom(log_path_, log_offset_); }

}  // namespace sluice::testing
