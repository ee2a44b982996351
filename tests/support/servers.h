// Loopback servers for the remote tests and benchmarks: nginx with a
// generated config and the fault-injecting Python server. Each is a child
// process stopped (SIGTERM, then SIGKILL) when its object is destroyed.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace tptest {

// A child process, killed and reaped on destruction.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { stop(); }
  // Starts argv[0] (searched in PATH) with stdout/stderr to `log`.
  bool start(const std::vector<std::string>& argv, const std::string& log) {
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      ::_exit(127);
    }
    return true;
  }
  bool running() {
    if (pid_ <= 0) return false;
    int st;
    return ::waitpid(pid_, &st, WNOHANG) == 0;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {  // 5 s, then SIGKILL
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

inline bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A port that was free a moment ago.
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline std::string find_nginx() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// True when the nginx at `bin` was built with the HTTP/2 module (`nginx -V`).
inline bool nginx_has_http2(const std::string& bin) {
  std::string out;
  if (FILE* p = popen((bin + " -V 2>&1").c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    pclose(p);
  }
  return out.find("--with-http_v2_module") != std::string::npos;
}

// nginx serving `root` on 127.0.0.1, foreground, single process, every file
// it writes under `work`. With `cert` and `key` (PEM files): https with
// HTTP/2 offered by ALPN (needs nginx's http_v2 module, see nginx_has_http2).
class Nginx {
 public:
  bool start(const std::string& root, const std::string& work, std::string* err, const std::string& cert = "",
             const std::string& key = "") {
    tls_ = !cert.empty();
    std::string bin = find_nginx();
    if (bin.empty()) {
      *err = "nginx not installed (package nginx-light)";
      return false;
    }
    std::filesystem::create_directories(work + "/tmp");
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      std::string conf = work + "/nginx.conf";
      std::ofstream f(conf);
      f << "daemon off;\nmaster_process off;\nworker_processes 1;\npid " << work << "/nginx.pid;\n"
        << "error_log " << work << "/error.log warn;\nevents { worker_connections 1024; }\n"
        << "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n"
        << "  keepalive_timeout 60s;\n  default_type application/octet-stream;\n"
        << "  client_body_temp_path " << work << "/tmp/body;\n  proxy_temp_path " << work << "/tmp/proxy;\n"
        << "  fastcgi_temp_path " << work << "/tmp/fastcgi;\n  uwsgi_temp_path " << work << "/tmp/uwsgi;\n"
        << "  scgi_temp_path " << work << "/tmp/scgi;\n"
        << "  server {\n    listen 127.0.0.1:" << port_ << (tls_ ? " ssl http2" : "") << ";\n    root " << root << ";\n";
      if (tls_) f << "    ssl_certificate " << cert << ";\n    ssl_certificate_key " << key << ";\n";
      f << "  }\n}\n";
      f.close();
      child_ = std::make_unique<Child>();
      child_->start({bin, "-e", work + "/error.log", "-p", work, "-c", conf}, work + "/nginx.out");
      for (int i = 0; i < 100 && child_->running(); ++i) {  // 5 s
        if (port_open(port_)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      child_.reset();
    }
    *err = "nginx did not start; see " + work + "/error.log";
    return false;
  }
  std::string url() const { return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_); }
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  void stop() { child_.reset(); }

 private:
  bool tls_ = false;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

// tests/remote/fault_server.py serving `root`.
class FaultServer {
 public:
  bool start(const std::string& script, const std::string& root, const std::string& work, std::string* err) {
    std::string port_file = work + "/fault.port";
    std::filesystem::remove(port_file);
    child_.start({"python3", script, "--root", root, "--port-file", port_file}, work + "/fault.log");
    for (int i = 0; i < 200; ++i) {  // 10 s
      std::ifstream f(port_file);
      if (f >> port_) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    *err = "fault server did not start; see " + work + "/fault.log";
    return false;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  Child child_;
};

}  // namespace tptest
