#include "app/api/handler.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <unordered_map>

#include "app/scan_steps.hpp"

namespace ipsecgw::api {

using model::json;
using model::Kind;

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    auto j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  // neutronclient's older versions append ".json" to the last segment.
  if (!out.empty() && out.back().size() > 5 &&
      out.back().compare(out.back().size() - 5, 5, ".json") == 0)
    out.back().resize(out.back().size() - 5);
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Does field value v equal the query text q (Neutron's equality filters)?
bool matches(const json& v, const std::string& q) {
  if (v.is_string()) return v.get<std::string>() == q;
  if (v.is_boolean()) return (lower(q) == "true") == v.get<bool>() && (lower(q) == "true" || lower(q) == "false");
  if (v.is_number()) return v.dump() == q;
  if (v.is_null()) return q.empty() || q == "None" || q == "null";
  if (v.is_array())
    return std::any_of(v.begin(), v.end(), [&](const json& e) { return matches(e, q); });
  return false;
}

// Applies ?key=value filters (several values of one key: any of them) and ?fields=.
json filter_list(const std::vector<json>& objs, const std::multimap<std::string, std::string>& q) {
  static const char* kIgnored[] = {"sort_key", "sort_dir", "limit", "marker", "page_reverse",
                                   "verbose", "fields"};
  json out = json::array();
  for (const auto& o : objs) {
    bool keep = true;
    for (auto it = q.begin(); it != q.end() && keep; it = q.upper_bound(it->first)) {
      const std::string& key = it->first;
      if (std::find_if(std::begin(kIgnored), std::end(kIgnored),
                       [&](const char* k) { return key == k; }) != std::end(kIgnored))
        continue;
      if (!o.contains(key)) continue;  // unknown filters are ignored
      auto [b, e] = q.equal_range(key);
      keep = std::any_of(b, e, [&](const auto& kv) { return matches(o[key], kv.second); });
    }
    if (!keep) continue;
    auto [fb, fe] = q.equal_range("fields");
    if (fb == fe) {
      out.push_back(o);
    } else {
      json sel = json::object();
      for (auto f = fb; f != fe; ++f)
        if (o.contains(f->second)) sel[f->second] = o[f->second];
      out.push_back(sel);
    }
  }
  return out;
}

ApiResponse ok(int status, const json& j) { return {status, j.dump()}; }

}  // namespace

std::string vpnservice_status(bool admin_state_up, const std::vector<std::string>& connections) {
  if (!admin_state_up) return "DOWN";
  for (const char* st : {"ACTIVE", "PENDING_CREATE", "ERROR"})
    for (const auto& c : connections)
      if (c == st) return st;
  return "DOWN";
}

ApiResponse neutron_error(int status, const std::string& type, const std::string& message) {
  json j = {{"NeutronError", {{"type", type}, {"message", message}, {"detail", ""}}}};
  return {status, j.dump()};
}

ApiResponse ApiHandler::handle(const ApiRequest& req) {
  ApiResponse r;
  try {
    r = route(req);
  } catch (const std::exception& e) {
    r = neutron_error(500, "HTTPInternalServerError",
                      std::string("internal error: ") + e.what());
  }
  if (log_) log_(req.method + " " + req.path + " -> " + std::to_string(r.status));
  return r;
}

std::string ApiHandler::conn_status(const std::string& id) const {
  return status_ ? status_(id) : std::string("DOWN");
}

// The fields the State does not hold: a connection's status (and status_detail), a
// vpnservice's status (from its connections' statuses) and external addresses.
void ApiHandler::add_status(json& j, const model::SiteConnection& c) const {
  j["status"] = conn_status(c.id);
  if (detail_) j["status_detail"] = detail_(c.id);
}
void ApiHandler::add_status(json& j, const model::VpnService& s,
                            const std::vector<std::string>& conn_statuses) const {
  j["status"] = vpnservice_status(s.admin_state_up, conn_statuses);
  j["external_v4_ip"] = env_.external_v4_ip.empty() ? json(nullptr) : json(env_.external_v4_ip);
  j["external_v6_ip"] = nullptr;
}

json ApiHandler::object(Kind k, const std::string& id) const {
  json j = model::to_json(state_, k, id);
  if (j.is_null()) return j;
  if (k == Kind::kConnection) {
    add_status(j, *state_.connection(id));
  } else if (k == Kind::kVpnService) {
    std::vector<std::string> conns;
    for (auto& c : state_.ipsec_site_connections) {
      app::count_scan_steps();
      if (c.vpnservice_id == id) conns.push_back(conn_status(c.id));
    }
    add_status(j, *state_.vpnservice(id), conns);
  }
  return j;
}

// A whole collection in one walk: each connection's status asked once, the vpnservices'
// statuses from one pass over the connections (not one pass per service).
std::vector<json> ApiHandler::objects(Kind k) const {
  std::vector<json> out = model::to_json_all(state_, k);
  if (k == Kind::kConnection) {
    for (std::size_t i = 0; i < out.size(); ++i)
      add_status(out[i], state_.ipsec_site_connections[i]);
  } else if (k == Kind::kVpnService) {
    std::unordered_map<std::string_view, std::vector<std::string>> by_service;
    for (auto& c : state_.ipsec_site_connections) {
      app::count_scan_steps();
      by_service[c.vpnservice_id].push_back(conn_status(c.id));
    }
    static const std::vector<std::string> kNone;
    for (std::size_t i = 0; i < out.size(); ++i) {
      const model::VpnService& s = state_.vpnservices[i];
      auto it = by_service.find(s.id);
      add_status(out[i], s, it != by_service.end() ? it->second : kNone);
    }
  }
  return out;
}

ApiResponse ApiHandler::route(const ApiRequest& req) {
  auto seg = split_path(req.path);
  if (seg.empty() || (seg.size() == 1 && seg[0] == "v2.0")) {
    if (req.method != "GET") return neutron_error(405, "HTTPMethodNotAllowed", "use GET");
    std::string host = req.host.empty() ? "127.0.0.1:9696" : req.host;
    json link = {{"href", "http://" + host + "/v2.0/"}, {"rel", "self"}};
    if (seg.empty())
      return ok(200, {{"versions", {{{"id", "v2.0"}, {"status", "CURRENT"}, {"links", {link}}}}}});
    return ok(200, {{"resources", json::array()}});
  }
  if (seg[0] != "v2.0") return neutron_error(404, "HTTPNotFound", "no such path: " + req.path);

  // The gateway's own router and protected subnets, for the client's lookups.
  if (seg.size() >= 2 && seg.size() <= 3 && (seg[1] == "routers" || seg[1] == "subnets")) {
    if (req.method != "GET")
      return neutron_error(405, "HTTPMethodNotAllowed",
                           seg[1] + " are read-only here: the gateway is the one router");
    std::vector<json> objs;
    if (seg[1] == "routers") {
      json r = {{"id", env_.router_id}, {"name", env_.router_name}, {"status", "ACTIVE"},
                {"admin_state_up", true}, {"tenant_id", ""}, {"project_id", ""},
                {"description", "the ipsecgw gateway"}};
      r["external_gateway_info"] =
          env_.external_v4_ip.empty()
              ? json(nullptr)
              : json({{"external_fixed_ips", {{{"ip_address", env_.external_v4_ip}}}}});
      objs.push_back(r);
    } else {
      for (auto& s : env_.subnets)
        objs.push_back({{"id", s.id}, {"name", s.name}, {"cidr", s.cidr}, {"ip_version", 4},
                        {"network_id", model::stable_uuid("network:" + s.name)},
                        {"tenant_id", ""}, {"project_id", ""}, {"enable_dhcp", false},
                        {"gateway_ip", nullptr}});
    }
    const std::string singular = seg[1] == "routers" ? "router" : "subnet";
    if (seg.size() == 2) return ok(200, {{seg[1], filter_list(objs, req.query)}});
    for (auto& o : objs)
      if (o["id"] == seg[2]) return ok(200, {{singular, o}});
    return neutron_error(404, seg[1] == "routers" ? "RouterNotFound" : "SubnetNotFound",
                         (seg[1] == "routers" ? "Router " : "Subnet ") + seg[2] +
                             " could not be found");
  }
  if (seg.size() >= 3 && seg.size() <= 4 && seg[1] == "vpn") {
    auto k = model::kind_from_collection(seg[2]);
    if (k) return collection(req, *k, seg.size() == 4 ? seg[3] : std::string());
  }
  return neutron_error(404, "HTTPNotFound", "no such resource: " + req.path);
}

ApiResponse ApiHandler::collection(const ApiRequest& req, Kind k, const std::string& id) {
  const auto& ki = model::info(k);
  const std::string singular(ki.singular), plural(ki.plural);
  auto not_found = [&] {
    return neutron_error(404, std::string(ki.not_found),
                         std::string(ki.neutron) + " " + id + " could not be found");
  };
  auto body_object = [&](json& inner) -> std::optional<ApiResponse> {
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception&) {
      return neutron_error(400, "MalformedRequestBody",
                           "Malformed request body: the body is not JSON");
    }
    if (!body.is_object() || !body.contains(singular))
      return neutron_error(400, "HTTPBadRequest",
                           "Unable to find '" + singular + "' in request body");
    inner = body[singular];
    if (!inner.is_object())
      return neutron_error(400, "HTTPBadRequest", "'" + singular + "' must be a JSON object");
    return std::nullopt;
  };

  if (id.empty()) {
    if (req.method == "GET") {
      std::vector<json> objs = objects(k);
      return ok(200, {{plural, filter_list(objs, req.query)}});
    }
    if (req.method == "POST") {
      json inner;
      if (auto e = body_object(inner)) return *e;
      return commit(model::create(state_, env_, k, inner), k, 201);
    }
    return neutron_error(405, "HTTPMethodNotAllowed", req.method + " is not allowed on " + req.path);
  }
  if (req.method == "GET") {
    if (!state_.contains(k, id)) return not_found();
    return ok(200, {{singular, object(k, id)}});
  }
  if (req.method == "PUT") {
    if (!state_.contains(k, id)) return not_found();
    json inner;
    if (auto e = body_object(inner)) return *e;
    return commit(model::update(state_, env_, k, id, inner), k, 200);
  }
  if (req.method == "DELETE") return commit(model::remove(state_, k, id), k, 204);
  return neutron_error(405, "HTTPMethodNotAllowed", req.method + " is not allowed on " + req.path);
}

ApiResponse ApiHandler::commit(model::Outcome r, Kind k, int status) {
  if (!r.ok()) {
    const auto& e = *r.error;
    int code = e.kind == model::ErrorKind::kNotFound  ? 404
               : e.kind == model::ErrorKind::kConflict ? 409
                                                       : 400;
    std::string msg = e.kind == model::ErrorKind::kBadRequest
                          ? "Invalid input for operation: " + e.message
                          : e.message;
    return neutron_error(code, e.type, msg);
  }
  if (log_)
    for (const auto& w : r.warnings) log_("warning: " + std::string(model::info(k).singular) +
                                          " " + r.id + ": " + w);
  if (!(r.next == state_)) {
    // Persist first: if the write fails, the running state does not change either.
    if (store_) {
      if (auto w = store_->save(r.next); !w.ok())
        return neutron_error(500, "HTTPInternalServerError",
                             "the change was not applied: cannot save the state: " + w.error());
    }
    model::State prev = std::move(state_);
    state_ = std::move(r.next);
    if (on_change_) on_change_(model::diff(prev, state_, env_), prev, state_);
  }
  if (status == 204) return {204, ""};
  return ok(status, {{std::string(model::info(k).singular), object(k, r.id)}});
}

}  // namespace ipsecgw::api
