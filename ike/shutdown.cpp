// Clean shutdown: the peers learn at once that our SAs are gone (RFC 2408 §3.15 Delete, sent
// in an informational exchange protected by the ISAKMP SA, RFC 2409 §5.7) instead of sending
// into a black hole until their DPD gives up.
#include "ike/daemon.hpp"
#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

bool IkeSa::shut_down_children() {
  if (!p1_established_ || state_ == State::kFailed || done_) return false;
  if (children_deleted_) return true;
  log(LogLevel::kInfo, tag() + ": shutting down: Delete for the CHILD SAs");
  // One Delete per CHILD SA (our inbound SPI: replaced pairs, then the current one). The SAs
  // stay in the data plane: the gateway stops right after and its exit report still shows them.
  for (std::uint32_t spi : inbound_spis()) send_esp_delete(spi);
  // A Quick Mode past QM2 may have given the peer a pair that is not ours to switch to yet.
  for (const auto& [mid, q] : qms_)
    if (q->in_installed && (q->stage == Quick::Stage::kQm2Sent ||
                            q->stage == Quick::Stage::kOutPending))
      send_esp_delete(q->spi_in);
  children_deleted_ = true;
  return true;
}

bool IkeSa::shut_down() {
  if (!shut_down_children()) return false;
  log(LogLevel::kInfo, tag() + ": shutting down: Delete for the ISAKMP SA");
  send_informational(PayloadType::kDelete, build_delete({1, kProtoIsakmp, 16, {cookie_spi()}}));
  done_ = true;
  return true;
}

std::size_t Daemon::delete_all_child_sas() {
  std::size_t n = 0;
  for (auto& p : peers_) {
    // The peer may have moved CHILD SAs of older ISAKMP SAs onto the newest one (strongSwan
    // adopts them and ignores Deletes under the old one): their Deletes also go out under it.
    IkeSa* newest = p->carrier();
    if (newest != nullptr && !newest->children_deleted())
      for (auto& sa : p->sas)
        if (sa.get() != newest && !sa->failed() && !sa->done() && !sa->children_deleted())
          for (std::uint32_t spi : sa->inbound_spis()) newest->send_esp_delete(spi);
    for (auto& sa : p->sas)
      if (sa.get() != newest) n += sa->shut_down_children();
    if (newest != nullptr) n += newest->shut_down_children();
    touch(*p);
  }
  return n;
}

std::size_t Daemon::delete_all_sas() {
  delete_all_child_sas();  // no-op for the SAs whose CHILD SAs' Deletes went already
  std::size_t n = 0;
  for (auto& p : peers_) {
    IkeSa* newest = p->carrier();
    for (auto& sa : p->sas)
      if (sa.get() != newest) n += sa->shut_down();
    if (newest != nullptr) n += newest->shut_down();
    touch(*p);
  }
  return n;
}

}  // namespace ipsecgw::ike
