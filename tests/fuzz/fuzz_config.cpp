// Fuzz target: arbitrary bytes as the gateway's YAML configuration (app/config.hpp,
// parse_config: Neutron VPNaaS names, validated field by field).
//
// parse_config must never crash, hang or throw: whatever the text, it returns a Config or an
// error. Besides ASan, the contract of app/config.hpp is checked:
//  - an error is non-empty and names where the problem is: a field path
//    ("ikepolicies[1].lifetime.value: ..."), or says the YAML itself is broken or empty;
//  - an accepted configuration holds only values inside the documented limits (lifetimes, MTUs,
//    DPD timers, replay window, SPIs, policy indexes), and what the gateway does with it next
//    works: describe(), to_gateway_config(), manual_sa_specs(), and ike_connection_configs()
//    whose every connection ike::validate() accepts.
// Seeds: tests/fuzz/seeds/fuzz_config (the examples and variants of them; IPSECGW_FUZZ_VERBOSE=1
// prints what parse_config says of each input).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "app/config.hpp"
#include "app/ike_config.hpp"
#include "ike/config.hpp"

using namespace ipsecgw;
using namespace ipsecgw::app;

namespace {

[[noreturn]] void die(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
  std::abort();
}

// Every error line is "<field path>: <problem>" or a whole-document error ("YAML syntax error
// at line ...", "empty configuration ..."). Only the first line is checked: a key is user text
// and may itself hold a newline.
void check_error(const std::string& e) {
  if (e.empty()) die("parse_config failed with an empty error");
  const std::string_view first = std::string_view(e).substr(0, e.find('\n'));
  if (first.rfind("YAML syntax error at line ", 0) == 0) return;
  if (first.rfind("empty configuration", 0) == 0) return;
  if (first.find(": ") == std::string_view::npos && e.find('\n') == std::string::npos)
    die("error without a field path", e);
}

void check_config(const Config& cfg) {
  auto in = [](std::uint64_t v, std::uint64_t lo, std::uint64_t hi) { return v >= lo && v <= hi; };
  for (const auto& p : cfg.ikepolicies)
    if (!in(p.lifetime.value, kLifetimeMin, kLifetimeMax)) die("accepted ikepolicy lifetime out of range");
  for (const auto& p : cfg.ipsecpolicies)
    if (!in(p.lifetime.value, kLifetimeMin, kLifetimeMax)) die("accepted ipsecpolicy lifetime out of range");
  for (const auto* port : {&cfg.vpnservice.unprotected, &cfg.vpnservice.protected_port})
    if (!in(port->mtu, kPortMtuMin, kPortMtuMax)) die("accepted port mtu out of range");
  for (const auto& c : cfg.ipsec_site_connections) {
    if (c.name.empty()) die("accepted connection without a name");
    if (!in(c.mtu, kConnMtuMin, kConnMtuMax)) die("accepted connection mtu out of range");
    if (c.ipsecpolicy_index >= cfg.ipsecpolicies.size()) die("ipsecpolicy index out of range");
    if (c.peer_cidrs.size() != 1) die("accepted connection without exactly one peer CIDR");
    if (c.local_cidrs.size() > 1) die("accepted connection with several local CIDRs");
    if (c.manual_keys) {
      const auto& mk = *c.manual_keys;
      if (mk.inbound.spi < kMinSpi || mk.outbound.spi < kMinSpi) die("accepted reserved SPI");
      if (mk.replay_window > kReplayWindowMax) die("accepted replay window out of range");
      const auto& pol = cfg.ipsecpolicies[c.ipsecpolicy_index];
      const auto ek = crypto::cipher_key_len(to_cipher(pol.encryption_algorithm));
      const auto ak = crypto::integ_key_len(to_integ(pol.auth_algorithm));
      for (const auto* sa : {&mk.inbound, &mk.outbound})
        if (sa->encryption_key.size() != ek || sa->auth_key.size() != ak)
          die("accepted manual key of the wrong length");
    } else {
      if (c.ikepolicy_index >= cfg.ikepolicies.size()) die("ikepolicy index out of range");
      if (c.psk.size() == 0) die("accepted IKE connection without psk");
      if (c.dpd.timeout <= c.dpd.interval || c.dpd.timeout > kDpdMax || c.dpd.interval < 1)
        die("accepted dpd timers out of range");
    }
  }

  // What the gateway does next with an accepted configuration.
  (void)describe(cfg);
  (void)to_gateway_config(cfg);
  (void)manual_sa_specs(cfg);
  for (const auto& ic : ike_connection_configs(cfg)) {
    auto v = ike::validate(ic);
    if (!v.ok()) die("ike::validate rejects a connection parse_config accepted", v.error());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto r = parse_config(text);
    if (std::getenv("IPSECGW_FUZZ_VERBOSE") != nullptr)  // to check what a seed reaches
      std::fprintf(stderr, "%s\n", r.ok() ? "accepted" : r.error().c_str());
    if (!r.ok()) {
      check_error(r.error());
      return 0;
    }
    check_config(r.value());
  } catch (const std::exception& e) {
    die("exception escaped parse_config or the use of its result", e.what());
  } catch (...) {
    die("non-std exception escaped parse_config or the use of its result");
  }
  return 0;
}
