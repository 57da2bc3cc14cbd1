#include "app/api/server.hpp"

#include <httplib.h>

#include <charconv>
#include <future>

namespace ipsecgw::api {

Result<void> parse_listen(const std::string& text, ServerOptions& o) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return make_error("--listen '" + text + "': expected HOST:PORT, e.g. 127.0.0.1:9696");
  int port = -1;
  const char* b = text.data() + colon + 1;
  const char* e = text.data() + text.size();
  auto [p, ec] = std::from_chars(b, e, port);
  if (ec != std::errc{} || p != e || port < 0 || port > 65535)
    return make_error("--listen '" + text + "': port out of range 0..65535");
  o.host = text.substr(0, colon);
  o.port = port;
  return {};
}

ApiServer::ApiServer(ApiHandler& handler, ServerOptions opt)
    : handler_(handler), opt_(std::move(opt)), http_(std::make_unique<httplib::Server>()) {}

ApiServer::~ApiServer() { stop(); }

Result<void> ApiServer::start() {
  auto serve = [this](const httplib::Request& req, httplib::Response& res) {
    ApiRequest r;
    r.method = req.method;
    r.path = req.path;
    for (auto& [k, v] : req.params) r.query.emplace(k, v);
    r.body = req.body;
    r.host = req.get_header_value("Host");
    // Hand the request to the control thread and wait for its answer.
    auto done = std::make_shared<std::promise<ApiResponse>>();
    auto fut = done->get_future();
    queue_.post([this, done, r = std::move(r)] { done->set_value(handler_.handle(r)); });
    ApiResponse out;
    if (fut.wait_for(opt_.request_timeout) == std::future_status::ready) {
      out = fut.get();
    } else {
      out = neutron_error(503, "ServiceUnavailable",
                          "the gateway's control loop did not answer in time");
    }
    res.status = out.status;
    res.set_header("X-Openstack-Request-Id", "req-" + model::random_uuid());
    if (!out.body.empty()) res.set_content(out.body, "application/json");
  };
  http_->Get(".*", serve);
  http_->Post(".*", serve);
  http_->Put(".*", serve);
  http_->Delete(".*", serve);
  http_->set_payload_max_length(1 << 20);
  if (opt_.port == 0) {
    port_ = http_->bind_to_any_port(opt_.host);
    if (port_ <= 0) return make_error("cannot listen on " + opt_.host + ": bind failed");
  } else {
    if (!http_->bind_to_port(opt_.host, opt_.port))
      return make_error("cannot listen on " + opt_.host + ":" + std::to_string(opt_.port) +
                        " (address in use, or not a local address)");
    port_ = opt_.port;
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return {};
}

void ApiServer::stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
  // Answer whatever is still queued, so no HTTP thread waits for its timeout.
  queue_.drain();
}

}  // namespace ipsecgw::api
