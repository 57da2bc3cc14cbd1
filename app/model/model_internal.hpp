// Private to app/model: what model.cpp (requests, checks) and fields.cpp (reading a JSON body
// into a resource) share.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/model/model.hpp"
#include "app/scan_steps.hpp"

namespace ipsecgw::model::detail {


constexpr std::size_t kMaxName = 255;  // Neutron's NAME_FIELD_SIZE / DESCRIPTION_FIELD_SIZE

template <class T>
const T* find_in(const std::vector<T>& v, std::string_view id) {
  for (auto& e : v) {
    app::count_scan_steps();
    if (e.id == id) return &e;
  }
  return nullptr;
}
template <class T>
T* find_in(std::vector<T>& v, std::string_view id) {
  for (auto& e : v) {
    app::count_scan_steps();
    if (e.id == id) return &e;
  }
  return nullptr;
}

// Errors of one request. Each line is "<path>.<field>: <message>" (path may be empty).
struct Ctx {
  std::string path;
  std::vector<std::string> errors;
  std::optional<Error> hard;  // a 404 (a referenced object does not exist)
  std::vector<std::string> warnings;  // valid but unwise, "<path>.<field>: <why>"

  std::string field(std::string_view f) const {
    return path.empty() ? std::string(f) : path + "." + std::string(f);
  }
  void err(std::string_view f, std::string msg) { errors.push_back(field(f) + ": " + msg); }
  void warn(std::string_view f, std::string msg) { warnings.push_back(field(f) + ": " + msg); }
  void not_found(Kind k, std::string_view f, std::string_view id) {
    if (!hard)
      hard = Error{ErrorKind::kNotFound, std::string(info(k).not_found),
                   field(f) + ": " + std::string(info(k).neutron) + " " + std::string(id) +
                       " could not be found"};
  }
};


// JSON helpers (fields.cpp).
std::string shown(const json& v);
bool present(const json& in, std::string_view key);
const json& at(const json& in, std::string_view key);
void refuse_keys(const json& in, std::initializer_list<std::string_view> keys, bool update,
                 Ctx& c);

// Read a request body's fields into a resource; `update`: only the fields present change.
void fields_ike(const json& in, IkePolicy& p, bool update, Ctx& c);
void fields_ipsec(const json& in, IpsecPolicy& p, bool update, Ctx& c);
void fields_service(const json& in, VpnService& v, bool update, const Environment& env, Ctx& c);
void fields_group(const json& in, EndpointGroup& g, bool update, const Environment& env, Ctx& c);
void fields_connection(const json& in, SiteConnection& x, bool update, Ctx& c);

}  // namespace ipsecgw::model::detail
