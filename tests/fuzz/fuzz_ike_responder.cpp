// libFuzzer target: datagram sequences through the whole IKE message handler of a responder
// (ike::Daemon::on_datagram: cookies, half-open table, Main Mode, Quick Mode, Informational,
// DPD), with fixed DH, nonce and cookie sources so that the recorded exchange in
// seeds/fuzz_ike_responder reaches the end of Quick Mode and mutations of any of its messages
// are handled with the keys it established (format: ike_responder_harness.hpp).
//
// Besides AddressSanitizer, checked: the responder never installs more SAs than one Quick Mode
// per input record allows (an SA pair per completed Quick Mode).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "ike/log.hpp"
#include "tests/fuzz/ike_responder_harness.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ipsecgw::ike::set_log_level(ipsecgw::ike::LogLevel::kError);  // a line per message otherwise
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ipsecgw::ike::fuzz::Responder r;
  r.run(data, size);
  const int records = static_cast<int>(size / 3);
  if (r.installer.inbound > records || r.installer.outbound > records) {
    std::fprintf(stderr, "fuzz_ike_responder: %d inbound / %d outbound SAs from %d records\n",
                 r.installer.inbound, r.installer.outbound, records);
    std::abort();
  }
  return 0;
}
