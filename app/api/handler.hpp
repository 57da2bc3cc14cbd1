// The Neutron VPNaaS v2.0 API's request handling, independent of the HTTP library: one
// ApiRequest in, one ApiResponse out, run on the control thread (it reads and changes the
// desired state). app/api/server.* puts it behind cpp-httplib and the request queue.
//
// A change goes: request -> model::create/update/remove (validation, candidate state) ->
// Store::save (atomic; a failed write changes nothing) -> commit -> model::diff -> on_change
// (the reconciler's hook; not wired to the gateway yet, see docs/api.md).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "app/model/diff.hpp"
#include "app/model/model.hpp"
#include "app/model/store.hpp"

namespace ipsecgw::api {

struct ApiRequest {
  std::string method;  // GET POST PUT DELETE
  std::string path;    // without the query
  std::multimap<std::string, std::string> query;
  std::string body;
  std::string host;  // the Host header, for the links of GET /
};

struct ApiResponse {
  int status = 200;
  std::string body;  // JSON, or empty (204)
};

class ApiHandler {
 public:
  using ChangeHook = std::function<void(const std::vector<model::ConnectionChange>&,
                                        const model::State& prev, const model::State& next)>;
  using StatusSource = std::function<std::string(const std::string& connection_id)>;
  using DetailSource = std::function<nlohmann::json(const std::string& connection_id)>;
  using LogSink = std::function<void(const std::string&)>;

  ApiHandler(model::State initial, model::Environment env, const model::Store* store)
      : state_(std::move(initial)), env_(std::move(env)), store_(store) {}

  ApiResponse handle(const ApiRequest& req);

  const model::State& state() const { return state_; }
  const model::Environment& env() const { return env_; }
  void on_change(ChangeHook h) { on_change_ = std::move(h); }
  // A connection's status (DOWN, PENDING_CREATE, ACTIVE, ERROR); default: DOWN for every
  // connection (ipsecgw-api-server: no IKE daemon). A vpnservice's status follows from its
  // connections (vpnservice_status).
  void status_source(StatusSource s) { status_ = std::move(s); }
  // Extra status fields of a connection, shown as its `status_detail` object next to
  // Neutron's fields (none without a source).
  void detail_source(DetailSource s) { detail_ = std::move(s); }
  // One line per request (method, path, status); never a body: bodies hold PSKs.
  void log_sink(LogSink l) { log_ = std::move(l); }

 private:
  ApiResponse route(const ApiRequest& req);
  ApiResponse collection(const ApiRequest& req, model::Kind k, const std::string& id);
  ApiResponse commit(model::Outcome r, model::Kind k, int status);
  // One resource as the API shows it (null when there is none), and a whole collection in
  // the State's order: linear in the number of connections, also for the vpnservices.
  nlohmann::json object(model::Kind k, const std::string& id) const;
  std::vector<nlohmann::json> objects(model::Kind k) const;
  std::string conn_status(const std::string& id) const;
  void add_status(nlohmann::json& j, const model::SiteConnection& c) const;
  void add_status(nlohmann::json& j, const model::VpnService& s,
                  const std::vector<std::string>& conn_statuses) const;

  model::State state_;
  model::Environment env_;
  const model::Store* store_;
  ChangeHook on_change_;
  StatusSource status_;
  DetailSource detail_;
  LogSink log_;
};

// A vpnservice's status from its own admin state and its connections' statuses: DOWN when
// disabled, else ACTIVE when any connection is ACTIVE, else PENDING_CREATE when any is, else
// ERROR when any is, else DOWN (also without connections).
std::string vpnservice_status(bool admin_state_up, const std::vector<std::string>& connections);

// {"NeutronError": {"type", "message", "detail"}}
ApiResponse neutron_error(int status, const std::string& type, const std::string& message);

}  // namespace ipsecgw::api
