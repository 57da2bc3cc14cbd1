// The REST API's HTTP front end: cpp-httplib on its own threads (127.0.0.1:9696 by default).
// Handler threads never touch the model: each request is posted to a RequestQueue as a closure
// with a promise, and the HTTP thread waits for the future (request_timeout; 503 after it).
// The control loop calls poll() each iteration; poll() runs the queued requests through the
// ApiHandler on the control thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "app/api/handler.hpp"
#include "app/api/request_queue.hpp"
#include "common/result.hpp"

namespace httplib {
class Server;
}

namespace ipsecgw::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 9696;  // 0: any free port (see port())
  std::chrono::milliseconds request_timeout{10000};
};

// Parses "HOST:PORT" (e.g. 127.0.0.1:9696) into o.host and o.port.
Result<void> parse_listen(const std::string& text, ServerOptions& o);

class ApiServer {
 public:
  ApiServer(ApiHandler& handler, ServerOptions opt);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds (the error says why it cannot) and starts the HTTP thread.
  Result<void> start();
  void stop();
  int port() const { return port_; }

  // On the control thread: handles every queued request; returns how many.
  std::size_t poll() { return queue_.drain(); }
  // For a control loop with nothing else to do: waits until a request is queued.
  bool wait_for(std::chrono::milliseconds d) { return queue_.wait_for(d); }

 private:
  ApiHandler& handler_;
  ServerOptions opt_;
  RequestQueue queue_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace ipsecgw::api
