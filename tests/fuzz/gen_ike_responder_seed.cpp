// Writes or checks the seed of fuzz_ike_responder: a whole IKEv1 exchange (Main Mode and Quick
// Mode) as the initiator sends it to the reproducible responder of ike_responder_harness.hpp.
//
//   gen_ike_responder_seed --write FILE   run an initiator daemon against the responder and
//                                         record what the initiator sent
//   gen_ike_responder_seed --check FILE   replay FILE into a fresh responder: it must install
//                                         an inbound and an outbound SA (the seed reaches the
//                                         end of Quick Mode); exit 1 otherwise
// The check is a test (suite fuzz): a change to the responder's answers (nonce, cookie or key
// handling) that the seed no longer matches fails it, and the seed must be written again.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/fuzz/ike_responder_harness.hpp"

namespace {

using namespace ipsecgw;
using namespace ipsecgw::ike;
using namespace ipsecgw::ike::fuzz;

int write_seed(const char* path) {
  Responder r;
  FixedClock& clock = r.clock;
  RecordingSender isender;
  CountingInstaller iinst{0x2000};
  FixedKeys ikeys{2};
  Daemon initiator{isender, iinst, clock, &ikeys};
  if (!initiator.add_connection(fuzz_connection(false)).ok()) return 2;
  Bytes seed;
  initiator.tick();  // bi-directional: initiates Main Mode
  for (int round = 0; round < 20 && r.installer.outbound == 0; ++round) {
    for (auto& m : std::exchange(isender.sent, {})) {
      append_record(seed, m.to.port, m.data);
      r.deliver(m.to.port, m.data);
    }
    for (auto& m : std::exchange(r.sender.sent, {}))
      initiator.on_datagram({m.to, m.from, m.data});
    clock.t += Millis{100};
    initiator.tick();
    r.daemon.tick();
  }
  // The initiator's last message (QM3) is what the responder installs its SAs on.
  for (auto& m : std::exchange(isender.sent, {})) {
    append_record(seed, m.to.port, m.data);
    r.deliver(m.to.port, m.data);
  }
  if (r.installer.inbound == 0 || r.installer.outbound == 0) {
    std::fprintf(stderr, "gen_ike_responder_seed: the exchange did not complete\n");
    return 1;
  }
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(seed.data()),
                                              static_cast<std::streamsize>(seed.size()));
  std::printf("wrote %zu bytes to %s\n", seed.size(), path);
  return 0;
}

int check_seed(const char* path) {
  std::ifstream f(path, std::ios::binary);
  const Bytes seed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Responder r;
  r.run(seed.data(), seed.size());
  const auto st = r.daemon.status("fuzz");
  std::printf("%s: %zu bytes, responder installed %d inbound / %d outbound SAs, state %s\n",
              path, seed.size(), r.installer.inbound, r.installer.outbound, to_string(st.state));
  if (r.installer.inbound < 1 || r.installer.outbound < 1) {
    std::fprintf(stderr, "the seed no longer reaches the end of Quick Mode: write it again "
                         "(gen_ike_responder_seed --write %s)\n", path);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--write") == 0) return write_seed(argv[2]);
  if (argc == 3 && std::strcmp(argv[1], "--check") == 0) return check_seed(argv[2]);
  std::fprintf(stderr, "usage: gen_ike_responder_seed --write|--check FILE\n");
  return 2;
}
