#include "dataplane/api/types.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <string>

namespace ipsecgw::dp {

std::optional<Ipv4> parse_ipv4(std::string_view s) {
  if (s.empty() || s.size() > 15) return std::nullopt;
  std::string tmp(s);
  in_addr a{};
  if (inet_pton(AF_INET, tmp.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::optional<Ipv4Prefix> parse_prefix(std::string_view s) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = parse_ipv4(s.substr(0, slash));
  if (!addr) return std::nullopt;
  auto len_str = s.substr(slash + 1);
  unsigned len = 0;
  auto [p, ec] = std::from_chars(len_str.data(), len_str.data() + len_str.size(), len);
  if (ec != std::errc{} || p != len_str.data() + len_str.size() || len > 32 || len_str.empty())
    return std::nullopt;
  Ipv4Prefix pfx{*addr, static_cast<std::uint8_t>(len)};
  if ((pfx.addr & ~pfx.mask()) != 0) return std::nullopt;  // host bits set
  return pfx;
}

std::string format_ipv4(Ipv4 a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

std::string format_prefix(const Ipv4Prefix& p) {
  return format_ipv4(p.addr) + "/" + std::to_string(p.len);
}

std::string_view to_string(DropReason r) noexcept {
  switch (r) {
    case DropReason::kRunt: return "runt";
    case DropReason::kBadIpHeader: return "bad_ip_header";
    case DropReason::kNoSa: return "no_sa";
    case DropReason::kEncapMismatch: return "encap_mismatch";
    case DropReason::kBadLength: return "bad_length";
    case DropReason::kBadIcv: return "bad_icv";
    case DropReason::kReplay: return "replay";
    case DropReason::kOutsideWindow: return "outside_window";
    case DropReason::kBadPadding: return "bad_padding";
    case DropReason::kBadNextHeader: return "bad_next_header";
    case DropReason::kSelectorMismatch: return "selector_mismatch";
    case DropReason::kSeqExhausted: return "seq_exhausted";
    case DropReason::kNoPolicy: return "no_policy";
    case DropReason::kNoSpace: return "no_space";
    case DropReason::kMtuExceeded: return "mtu_exceeded";
    case DropReason::kCryptoError: return "crypto_error";
    case DropReason::kNoRoute: return "no_route";
    case DropReason::kTtlExceeded: return "ttl_exceeded";
    case DropReason::kFragError: return "frag_error";
    case DropReason::kRingFull: return "ring_full";
    case DropReason::kTxFull: return "tx_full";
    case DropReason::kNotForUs: return "not_for_us";
    case DropReason::kSaDown: return "sa_down";
    case DropReason::kTrapped: return "trapped";
    case DropReason::kBadInnerChecksum: return "bad_inner_checksum";
    case DropReason::kWrongDstMac: return "wrong_dst_mac";
    case DropReason::kArpUnsolicited: return "arp_unsolicited";
    case DropReason::kArpTableFull: return "arp_table_full";
    case DropReason::kCount: break;
  }
  return "unknown";
}

}  // namespace ipsecgw::dp
