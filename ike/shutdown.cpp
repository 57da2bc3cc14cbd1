// Clean shutdown: the peers learn at once that our SAs are gone (RFC 2408 §3.15 Delete, sent
// in an informational exchange protected by the ISAKMP SA, RFC 2409 §5.7) instead of sending
// into a black hole until their DPD gives up.
#include "ike/daemon.hpp"
#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

bool IkeSa::shut_down() {
  if (!p1_established_ || state_ == State::kFailed || done_) return false;
  log(LogLevel::kInfo, tag() + ": shutting down: Delete for the CHILD SAs and the ISAKMP SA");
  // One Delete per CHILD SA (our inbound SPI: replaced pairs, then the current one), then
  // the ISAKMP SA's. The SAs stay in the data plane: the gateway stops right after and its
  // exit report still shows them.
  for (std::uint32_t spi : inbound_spis()) send_esp_delete(spi);
  // A Quick Mode past QM2 may have given the peer a pair that is not ours to switch to yet.
  for (const auto& [mid, q] : qms_)
    if (q->in_installed && (q->stage == Quick::Stage::kQm2Sent ||
                            q->stage == Quick::Stage::kOutPending))
      send_esp_delete(q->spi_in);
  send_informational(PayloadType::kDelete, build_delete({1, kProtoIsakmp, 16, {cookie_spi()}}));
  done_ = true;
  return true;
}

std::size_t Daemon::delete_all_sas() {
  std::size_t n = 0;
  for (auto& p : peers_) {
    // The peer may have moved CHILD SAs of older ISAKMP SAs onto the newest one (strongSwan
    // adopts them and ignores Deletes under the old one): their Deletes also go out under it,
    // before any ISAKMP SA is deleted.
    IkeSa* newest = p->carrier();
    if (newest != nullptr)
      for (auto& sa : p->sas)
        if (sa.get() != newest && !sa->failed() && !sa->done())
          for (std::uint32_t spi : sa->inbound_spis()) newest->send_esp_delete(spi);
    for (auto& sa : p->sas)
      if (sa.get() != newest) n += sa->shut_down();
    if (newest != nullptr) n += newest->shut_down();
    touch(*p);
  }
  return n;
}

}  // namespace ipsecgw::ike
