// A State's objects by id, for the callers that look up one object per connection (model::diff,
// the reconciler's mapping onto IKE): State's own lookups walk its vectors, which makes a pass
// over N connections cost N^2. Built in one pass (O(objects)); it refers to the State, which
// must outlive it and not change while it is used. Each lookup counts one scan step
// (app/scan_steps.hpp), so tests/app/test_scaling.cpp can tell linear from quadratic.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "app/model/model.hpp"

namespace ipsecgw::model {

class StateLookup {
 public:
  explicit StateLookup(const State& s);
  const State& state() const noexcept { return s_; }

  const IkePolicy* ikepolicy(std::string_view id) const;
  const IpsecPolicy* ipsecpolicy(std::string_view id) const;
  const VpnService* vpnservice(std::string_view id) const;
  const EndpointGroup* endpoint_group(std::string_view id) const;
  const SiteConnection* connection(std::string_view id) const;

 private:
  using Index = std::unordered_map<std::string_view, std::size_t>;
  const State& s_;
  Index ike_, ipsec_, services_, groups_, conns_;
};

// local_cidrs / peer_cidrs (model.hpp) through the lookup.
std::vector<std::string> local_cidrs(const StateLookup& l, const Environment& env,
                                     const SiteConnection& c);
std::vector<std::string> peer_cidrs(const StateLookup& l, const SiteConnection& c);

}  // namespace ipsecgw::model
