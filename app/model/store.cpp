#include "app/model/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>

#include "app/model/yaml_wipe.hpp"
#include "app/scan_steps.hpp"

namespace ipsecgw::model {

namespace {

// YAML -> the model's neutral JSON: every scalar is a string (the model takes "1400", "true").
json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: return n.Scalar();
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (auto it = n.begin(); it != n.end(); ++it) o[it->first.as<std::string>()] = to_json(it->second);
      return o;
    }
    default: return nullptr;
  }
}

template <class T>
std::string names_of(const std::vector<T>& v) {
  std::string s;
  for (auto& e : v) s += (s.empty() ? "" : ", ") + (e.name.empty() ? e.id : e.name);
  return s.empty() ? std::string("none defined") : s;
}

// A reference in the file: an id, or a name that exactly one object has.
template <class T>
std::optional<std::string> resolve(const std::vector<T>& v, const std::string& ref,
                                   std::string_view what, const std::string& field,
                                   std::vector<std::string>& errors) {
  for (auto& e : v) {
    app::count_scan_steps();
    if (e.id == ref) return e.id;
  }
  const T* found = nullptr;
  for (auto& e : v) {
    app::count_scan_steps();
    if (e.name != ref) continue;
    if (found) {
      errors.push_back(field + ": '" + ref + "' names more than one " + std::string(what) +
                       " (use its id)");
      return std::nullopt;
    }
    found = &e;
  }
  if (found) return found->id;
  const char* article = std::string_view("aeiou").find(what.front()) != std::string_view::npos ? "an" : "a";
  errors.push_back(field + ": '" + ref + "' is not " + article + " " + std::string(what) + " (defined: " +
                   names_of(v) + ")");
  return std::nullopt;
}

// resolve() through hash maps of the ids and names (rebuilt when the list grew): the file's
// connections each name their endpoint groups, and there may be one per connection. A name
// that no object has goes the slow way, for resolve()'s message.
class RefIndex {
 public:
  template <class T>
  std::optional<std::string> resolve(const std::vector<T>& v, const std::string& ref,
                                     std::string_view what, const std::string& field,
                                     std::vector<std::string>& errors) {
    if (size_ != v.size()) {
      ids_.clear();
      names_.clear();
      for (std::size_t i = 0; i < v.size(); ++i) {
        ids_.emplace(v[i].id, i);
        names_[v[i].name].push_back(i);
      }
      size_ = v.size();
    }
    app::count_scan_steps();
    if (auto it = ids_.find(ref); it != ids_.end()) return v[it->second].id;
    if (auto it = names_.find(ref); it != names_.end() && it->second.size() == 1)
      return v[it->second.front()].id;
    return model::resolve(v, ref, what, field, errors);
  }

 private:
  std::size_t size_ = static_cast<std::size_t>(-1);
  std::unordered_map<std::string, std::size_t> ids_;
  std::unordered_map<std::string, std::vector<std::size_t>> names_;
};

template <class T>
std::string ref_of(const std::vector<T>& v, const std::string& id) {
  const T* obj = nullptr;
  int same = 0;
  for (auto& e : v)
    if (e.id == id) obj = &e;
  if (!obj || obj->name.empty()) return id;
  for (auto& e : v) same += e.name == obj->name;
  // A name that is unique and not another object's id is written as the reference.
  for (auto& e : v)
    if (e.id == obj->name) return id;
  return same == 1 ? obj->name : id;
}

void add_error(std::vector<std::string>& errors, const Error& e) {
  errors.push_back(e.message);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& e : v) s += (s.empty() ? "" : "\n") + e;
  return s;
}

// The state file holds PSKs: its raw text, the parsed YAML tree and the JSON made of it are
// overwritten before they are freed, as the config file's are (app/config.cpp).
// Every string value of a JSON document (keys are the schema's names).
void wipe_json(json& j) {
  if (j.is_string()) {
    wipe_text(j.get_ref<std::string&>());
  } else if (j.is_structured()) {
    for (auto& e : j) wipe_json(e);
  }
}


}  // namespace

namespace {

// The top-level keys of a state or config file that the model reads; any other is an error.
std::vector<std::string> check_top_level(const json& doc) {
  static constexpr std::string_view kKnown[] = {
      "vpnservice", "vpnservices", "ikepolicies", "ipsecpolicies", "endpoint_groups",
      "ipsec_site_connections", "dataplane"};
  std::vector<std::string> errors;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (std::find(std::begin(kKnown), std::end(kKnown), it.key()) == std::end(kKnown))
      errors.push_back(it.key() + ": unknown key (allowed: vpnservice, vpnservices, ikepolicies, "
                                  "ipsecpolicies, endpoint_groups, ipsec_site_connections, "
                                  "dataplane)");
    else if (it.key() != "vpnservice" && it.key() != "dataplane" && !it->is_null() &&
             !it->is_array())
      errors.push_back(it.key() + ": must be a list");
  }
  return errors;
}

// Builds a State from a parsed document, one section at a time, through the model's own
// create() so the file and the API share every check.
class StateLoader {
 public:
  StateLoader(const json& doc, const Environment& env) : doc_(doc), env_(env) {}

  void policies_groups_services() {
    each("ikepolicies", Kind::kIkePolicy);
    each("ipsecpolicies", Kind::kIpsecPolicy);
    // In the config file an endpoint group's type is optional (cidr); the API requires it.
    const json& list = section("endpoint_groups");
    for (std::size_t i = 0; i < list.size(); ++i) {
      json item = list[i];
      if (item.is_object() && !item.contains("type")) item["type"] = "cidr";
      add(Kind::kEndpointGroup, item, "endpoint_groups[" + std::to_string(i) + "]");
    }
    each("vpnservices", Kind::kVpnService);
    if (doc_.contains("vpnservice") && doc_["vpnservice"].is_object()) config_vpnservice();
  }

  void connections(bool skip_manual_keys) {
    const json& conns = section("ipsec_site_connections");
    for (std::size_t i = 0; i < conns.size(); ++i) {
      std::string path = "ipsec_site_connections[" + std::to_string(i) + "]";
      if (!conns[i].is_object()) {
        errors_.push_back(path + ": must be a mapping");
        continue;
      }
      if (conns[i].contains("manual_keys") && skip_manual_keys) continue;
      if (conns[i].contains("manual_keys")) {
        errors_.push_back(path + ".manual_keys: not supported by the API's model yet (static SAs "
                                 "come from the gateway's config file only)");
        continue;
      }
      json item = conns[i];  // holds the PSK: wiped below
      if (resolve_references(item, path)) add(Kind::kConnection, item, path);
      wipe_json(item);
    }
  }

  std::vector<std::string>& errors() { return errors_; }
  State& state() { return s_; }

 private:
  // A reference, not a copy: the document's strings are wiped once, by the caller.
  const json& section(const char* key) const {
    static const json kEmpty = json::array();
    if (!doc_.contains(key) || doc_[key].is_null()) return kEmpty;
    return doc_[key];
  }

  void add(Kind k, const json& item, const std::string& path) {
    Options opt{true, path};
    auto r = bulk_.add(k, item, opt);
    if (!r.ok()) add_error(errors_, *r.error);
  }

  void each(const char* key, Kind k) {
    const json& list = section(key);
    for (std::size_t i = 0; i < list.size(); ++i)
      add(k, list[i], std::string(key) + "[" + std::to_string(i) + "]");
  }

  // The config file's single vpnservice (its ports, routes ... are the gateway's, not the
  // model's): one vpnservice on the gateway's router and the subnet it names.
  void config_vpnservice() {
    const json& v = doc_["vpnservice"];
    json item = json::object();
    for (auto k : {"name", "description", "admin_state_up"})
      if (v.contains(k)) item[k] = v[k];
    if (!item.contains("name")) item["name"] = "vpnservice";
    item["router_id"] = env_.router_id;
    std::string subnet_id;
    if (v.contains("subnet") && v["subnet"].is_string()) {
      for (auto& sn : env_.subnets)
        if (sn.cidr == v["subnet"].get<std::string>()) subnet_id = sn.id;
    } else if (!env_.subnets.empty()) {
      subnet_id = env_.subnets.front().id;
    }
    if (!subnet_id.empty()) item["subnet_id"] = subnet_id;
    add(Kind::kVpnService, item, "vpnservice");
  }

  // The file's references (by name or id) become the API's *_id fields. False on an error.
  bool resolve_references(json& item, const std::string& path) {
    auto ref = [&](const char* file_key, const char* api_key, const auto& vec, const char* what) {
      if (!item.contains(file_key)) return;
      const json v = item[file_key];
      item.erase(file_key);
      if (!v.is_string()) {
        errors_.push_back(path + "." + file_key + ": must be a name or id");
        return;
      }
      if (auto id = refs_[what].resolve(vec, v.get<std::string>(), what, path + "." + file_key,
                                        errors_))
        item[api_key] = *id;
    };
    const std::size_t before = errors_.size();
    ref("ikepolicy", "ikepolicy_id", s_.ikepolicies, "ikepolicy");
    ref("ipsecpolicy", "ipsecpolicy_id", s_.ipsecpolicies, "ipsecpolicy");
    ref("local_ep_group", "local_ep_group_id", s_.endpoint_groups, "endpoint group");
    ref("peer_ep_group", "peer_ep_group_id", s_.endpoint_groups, "endpoint group");
    ref("vpnservice", "vpnservice_id", s_.vpnservices, "vpnservice");
    if (!item.contains("vpnservice_id") && s_.vpnservices.size() == 1)
      item["vpnservice_id"] = s_.vpnservices.front().id;
    return errors_.size() == before;
  }

  const json& doc_;
  const Environment& env_;
  State s_;
  BulkLoad bulk_{s_, env_};
  std::map<std::string_view, RefIndex> refs_;  // by kind ("ikepolicy", "endpoint group" ...)
  std::vector<std::string> errors_;
};

}  // namespace

Result<State> parse_state(std::string_view yaml_text, const Environment& env,
                          bool skip_manual_keys) {
  std::string text(yaml_text);
  return parse_state_and_wipe(text, env, skip_manual_keys);
}

Result<State> parse_state_and_wipe(std::string& text, const Environment& env,
                                   bool skip_manual_keys) {
  auto loaded = load_yaml_and_wipe(text);
  if (!loaded.ok()) return make_error(loaded.error());
  YAML::Node root = *loaded;
  json doc;
  // The tree and the document are wiped on every way out.
  struct Wipe {
    YAML::Node& root;
    json& doc;
    ~Wipe() {
      wipe_scalars(root);
      wipe_json(doc);
    }
  } wipe{root, doc};
  if (!root || root.IsNull()) return State{};
  if (!root.IsMap()) return make_error("(top level): must be a mapping");
  try {
    doc = to_json(root);
  } catch (const YAML::Exception& e) {
    return make_error(std::string("(top level): unexpected YAML structure: ") + e.msg);
  }
  if (auto errors = check_top_level(doc); !errors.empty()) return make_error(join(errors));

  StateLoader loader(doc, env);
  loader.policies_groups_services();
  if (!loader.errors().empty()) return make_error(join(loader.errors()));
  loader.connections(skip_manual_keys);
  if (!loader.errors().empty()) return make_error(join(loader.errors()));
  if (auto e = validate(loader.state(), env)) return make_error(e->message);
  return std::move(loader.state());
}

std::string emit_state(const State& s) {
  YAML::Emitter o;
  auto common = [&](const auto& e) {
    o << YAML::Key << "id" << YAML::Value << e.id;
    o << YAML::Key << "name" << YAML::Value << e.name;
    if (!e.description.empty()) o << YAML::Key << "description" << YAML::Value << e.description;
    if (!e.tenant_id.empty()) o << YAML::Key << "tenant_id" << YAML::Value << e.tenant_id;
  };
  auto lifetime = [&](const Lifetime& l) {
    o << YAML::Key << "lifetime" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
      << "units" << YAML::Value << l.units << YAML::Key << "value" << YAML::Value << l.value
      << YAML::EndMap;
  };
  auto kv = [&](const char* k, const auto& v) { o << YAML::Key << k << YAML::Value << v; };
  o << YAML::BeginMap;
  o << YAML::Key << "vpnservices" << YAML::Value << YAML::BeginSeq;
  for (auto& v : s.vpnservices) {
    o << YAML::BeginMap;
    common(v);
    kv("admin_state_up", v.admin_state_up);
    kv("router_id", v.router_id);
    if (!v.subnet_id.empty()) kv("subnet_id", v.subnet_id);
    o << YAML::EndMap;
  }
  o << YAML::EndSeq;
  o << YAML::Key << "ikepolicies" << YAML::Value << YAML::BeginSeq;
  for (auto& p : s.ikepolicies) {
    o << YAML::BeginMap;
    common(p);
    kv("auth_algorithm", p.auth_algorithm);
    kv("encryption_algorithm", p.encryption_algorithm);
    kv("ike_version", p.ike_version);
    kv("phase1_negotiation_mode", p.phase1_negotiation_mode);
    kv("pfs", p.pfs);
    lifetime(p.lifetime);
    o << YAML::EndMap;
  }
  o << YAML::EndSeq;
  o << YAML::Key << "ipsecpolicies" << YAML::Value << YAML::BeginSeq;
  for (auto& p : s.ipsecpolicies) {
    o << YAML::BeginMap;
    common(p);
    kv("transform_protocol", p.transform_protocol);
    kv("encapsulation_mode", p.encapsulation_mode);
    kv("auth_algorithm", p.auth_algorithm);
    kv("encryption_algorithm", p.encryption_algorithm);
    kv("pfs", p.pfs);
    lifetime(p.lifetime);
    o << YAML::EndMap;
  }
  o << YAML::EndSeq;
  o << YAML::Key << "endpoint_groups" << YAML::Value << YAML::BeginSeq;
  for (auto& g : s.endpoint_groups) {
    o << YAML::BeginMap;
    common(g);
    kv("type", g.type);
    o << YAML::Key << "endpoints" << YAML::Value << YAML::Flow << g.endpoints;
    o << YAML::EndMap;
  }
  o << YAML::EndSeq;
  o << YAML::Key << "ipsec_site_connections" << YAML::Value << YAML::BeginSeq;
  for (auto& c : s.ipsec_site_connections) {
    o << YAML::BeginMap;
    common(c);
    kv("admin_state_up", c.admin_state_up);
    kv("vpnservice", ref_of(s.vpnservices, c.vpnservice_id));
    kv("peer_address", c.peer_address);
    kv("peer_id", c.peer_id);
    if (!c.local_id.empty()) kv("local_id", c.local_id);
    if (!c.peer_cidrs.empty())
      o << YAML::Key << "peer_cidrs" << YAML::Value << YAML::Flow << c.peer_cidrs;
    if (!c.peer_ep_group_id.empty())
      kv("peer_ep_group", ref_of(s.endpoint_groups, c.peer_ep_group_id));
    if (!c.local_ep_group_id.empty())
      kv("local_ep_group", ref_of(s.endpoint_groups, c.local_ep_group_id));
    o << YAML::Key << "psk" << YAML::Value << YAML::DoubleQuoted << c.psk;
    kv("mtu", c.mtu);
    kv("initiator", c.initiator);
    o << YAML::Key << "dpd" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
      << "action" << YAML::Value << c.dpd.action << YAML::Key << "interval" << YAML::Value
      << c.dpd.interval << YAML::Key << "timeout" << YAML::Value << c.dpd.timeout
      << YAML::EndMap;
    kv("ikepolicy", ref_of(s.ikepolicies, c.ikepolicy_id));
    kv("ipsecpolicy", ref_of(s.ipsecpolicies, c.ipsecpolicy_id));
    o << YAML::EndMap;
  }
  o << YAML::EndSeq;
  o << YAML::EndMap;
  return std::string("# ipsecgw desired state, written by the REST API (docs/api.md).\n"
                     "# Mode 0600: it holds pre-shared keys.\n") +
         o.c_str() + "\n";
}

Result<State> Store::load(const Environment& env) const {
  // read() straight into our buffer (no stream buffer keeps a copy of the text), which
  // parse_state_and_wipe wipes; the stack buffer is wiped here.
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return State{};
    return make_error("cannot open state file '" + path_ + "': " + std::strerror(errno));
  }
  std::string text;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0)
    text.reserve(static_cast<std::size_t>(st.st_size) + 1);
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  const int err = errno;
  explicit_bzero(buf, sizeof buf);
  ::close(fd);
  if (n < 0) {
    wipe_text(text);
    return make_error("cannot read state file '" + path_ + "': " + std::strerror(err));
  }
  auto r = parse_state_and_wipe(text, env);
  if (!r.ok()) return make_error("invalid state file " + path_ + ":\n" + r.error());
  return r;
}

Result<void> Store::save(const State& s) const {
  const std::string text = emit_state(s);
  auto slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  const std::string base = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  std::string tmp = dir + "/." + base + ".tmpXXXXXX";
  int fd = ::mkstemp(tmp.data());  // created with mode 0600
  if (fd < 0) return make_error("cannot create a temp file in " + dir + ": " + std::strerror(errno));
  auto fail = [&](const char* what) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(std::string(what) + " " + tmp + ": " + std::strerror(err));
  };
  if (::fchmod(fd, 0600) != 0) return fail("cannot chmod");
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (::close(fd) != 0) {
    fd = -1;
    return fail("cannot close");
  }
  fd = -1;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return fail("cannot rename");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace ipsecgw::model
