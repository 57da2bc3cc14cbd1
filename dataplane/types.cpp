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

namespace {
#define IPSECGW_DROP_NAME(e, name, desc) name,
#define IPSECGW_DROP_DESC(e, name, desc) desc,
constexpr std::string_view kDropNames[] = {IPSECGW_FOREACH_DROP_REASON(IPSECGW_DROP_NAME)};
constexpr std::string_view kDropDescriptions[] = {IPSECGW_FOREACH_DROP_REASON(IPSECGW_DROP_DESC)};
#undef IPSECGW_DROP_NAME
#undef IPSECGW_DROP_DESC
static_assert(std::size(kDropNames) == kDropReasonCount);
}  // namespace

std::string_view to_string(DropReason r) noexcept {
  const auto i = static_cast<std::size_t>(r);
  return i < kDropReasonCount ? kDropNames[i] : "unknown";
}

std::string_view describe(DropReason r) noexcept {
  const auto i = static_cast<std::size_t>(r);
  return i < kDropReasonCount ? kDropDescriptions[i] : "unknown";
}

}  // namespace ipsecgw::dp
