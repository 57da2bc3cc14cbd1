// Make-before-break for the rekeys we initiate. After QM2 both new SAs are known, but the
// peer installs its new inbound SA only when our QM3 arrives: an outbound switch at QM2 time
// sends the first packets ahead of it and they are lost. So QM3 goes out with only our new
// inbound SA added; the current pair keeps carrying our traffic until the new inbound SA has
// carried a packet (the peer installed the pair and switched to it) or kOutboundSwitchDelay
// has passed (a peer with nothing to send); then the outbound SA is installed (re-pointing
// the policy) and the new pair becomes the current one.
#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

void IkeSa::defer_outbound_switch(Quick& q) {
  q.stage = Quick::Stage::kOutPending;
  q.switch_by = ctx_.clock->now() + kOutboundSwitchDelay;
  log(LogLevel::kInfo, tag() + ": rekey negotiated, SPI in " + hex(be32(q.spi_in)) + " out " +
                           hex(be32(q.spi_out)) + ": outbound switch when the peer uses it");
}

void IkeSa::outbound_switch_tick(Millis now) {
  for (auto& [mid, qp] : qms_) {
    Quick& q = *qp;
    if (q.stage != Quick::Stage::kOutPending) continue;
    const auto in = ctx_.installer->query_sa(dp::Direction::kInbound, q.spi_in);
    const bool peer_uses_it = in && in->packets > 0;
    if (!peer_uses_it && now < q.switch_by) continue;
    log(LogLevel::kInfo, tag() + ": switching outbound to SPI " + hex(be32(q.spi_out)) +
                             (peer_uses_it ? " (peer sends on the new SA)" : " (after delay)"));
    if (auto r = qm_install(q, dp::Direction::kOutbound); !r) {
      (void)qm_fail(q, r.error(), 0);
      return;
    }
    child_activate(q);
  }
}

}  // namespace ipsecgw::ike
