// Liveness: dead peer detection (RFC 3706) and NAT keepalives (RFC 3948 §2.3).
#include <algorithm>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

// R-U-THERE / R-U-THERE-ACK: a Notify with protocol ISAKMP, SPI = CKY-I | CKY-R and a 32-bit
// sequence number as data (RFC 3706 §5.1, §7), sent in a protected informational exchange.
void IkeSa::send_dpd(std::uint16_t type, std::uint32_t seq) {
  send_informational(PayloadType::kNotify,
                     build_notify({1, kProtoIsakmp, type, cookie_spi(), be32(seq)}));
}

void IkeSa::dpd_notify(const NotifyPayload& n) {
  if (state_ < State::kPhase1Done || n.data.size() != 4) return;
  if (n.spi.size() == 16 && !is_our_cookie_spi(n.spi)) {
    log(LogLevel::kWarn, tag() + ": DPD notify for other cookies ignored");
    return;
  }
  const std::uint32_t seq = get32(n.data.data());
  if (n.type == notify::kRUThere) {
    send_dpd(notify::kRUThereAck, seq);  // §5.1: echo the sequence number
    return;
  }
  // §7: an ACK must carry the sequence number of an R-U-THERE we sent and have not seen
  // acknowledged; others are stale or forged.
  if (dpd_outstanding_ && seq - dpd_first_seq_ <= dpd_seq_ - dpd_first_seq_) {
    dpd_outstanding_ = false;
  } else {
    log(LogLevel::kDebug, tag() + ": unexpected R-U-THERE-ACK seq " + std::to_string(seq));
  }
}

void IkeSa::dpd_tick(Millis now) {
  if (state_ != State::kActive || !peer_dpd_ || !any_child()) return;
  // Packets of the current CHILD SAs of every slot (connections and pairs), per direction.
  auto packets = [&](dp::Direction dir) {
    std::uint64_t n = 0;
    for (const auto& s : slots_)
      if (const auto& child = s.sas.current())
        if (auto c = ctx_.installer->query_sa(
                dir, dir == dp::Direction::kInbound ? child->spi_in : child->spi_out))
          n += c->packets;
    return n;
  };
  if (ctx_.installer != nullptr) dpd_polled_ = now;
  // Inbound ESP proves liveness as well as IKE does (§5.3: only query an idle peer).
  if (ctx_.installer != nullptr) {
    if (const std::uint64_t in = packets(dp::Direction::kInbound); in != last_in_packets_) {
      last_in_packets_ = in;
      last_alive_ = now;
      dpd_outstanding_ = false;
    }
  }
  // On-demand DPD (RFC 3706 §5.3 leaves the timing to us): ESP flows out but nothing
  // authenticated came back for kOnDemandDpdAfter: probe now, so that a peer behind a
  // rebound NAT (or we, behind one) learns the new port from the authenticated exchange.
  bool on_demand = false;
  if (ctx_.installer != nullptr) {
    if (const std::uint64_t out = packets(dp::Direction::kOutbound); out != last_out_packets_) {
      last_out_packets_ = out;
      on_demand = !dpd_outstanding_ && now - last_alive_ >= kOnDemandDpdAfter;
    }
  }
  const Millis interval{std::chrono::seconds(cfg_->dpd.interval_s)};
  const Millis timeout{std::chrono::seconds(cfg_->dpd.timeout_s)};
  if (dpd_outstanding_) {
    if (now - dpd_first_sent_ >= timeout) {
      log(LogLevel::kWarn, tag() + ": dead peer detected: no R-U-THERE-ACK within " +
                               std::to_string(cfg_->dpd.timeout_s) + "s (DPD action " +
                               (cfg_->dpd.action == DpdAction::kRestart ? "restart" : "hold") + ")");
      dpd_dead_ = true;
      teardown(false);
      fail("dead peer detected (DPD)");
      return;
    }
    if (now >= dpd_next_) {
      send_dpd(notify::kRUThere, ++dpd_seq_);
      dpd_next_ = now + interval;
    }
    return;
  }
  if (now - last_alive_ < interval && !on_demand) return;
  if (on_demand && now - last_alive_ < interval) count(&IkeCounters::on_demand_dpd);
  if (dpd_seq_ == 0) {
    while (dpd_seq_ == 0) dpd_seq_ = get32(crypto::random_bytes(4).data()) & 0x7fffffffU;
  } else {
    ++dpd_seq_;
  }
  dpd_first_seq_ = dpd_seq_;
  dpd_outstanding_ = true;
  dpd_first_sent_ = now;
  dpd_next_ = now + interval;
  log(LogLevel::kDebug, tag() + ": DPD R-U-THERE seq " + std::to_string(dpd_seq_));
  send_dpd(notify::kRUThere, dpd_seq_);
}

// RFC 3948 §2.3: NAT keepalives (one 0xFF byte) from the side behind the NAT keep its
// mapping open.
void IkeSa::keepalive_tick(Millis now) {
  const bool encap = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) {
    return s.sas.current() && s.sas.current()->udp_encap;
  });
  if (!nat_local_ || !encap || now < keepalive_next_) return;
  keepalive_next_ = now + kNatKeepaliveInterval;
  static const std::uint8_t kKeepalive[1] = {0xff};
  auto r = ctx_.sender->send({local_, remote_, kKeepalive});
  (void)r;
}

}  // namespace ipsecgw::ike
