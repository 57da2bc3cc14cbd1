// libFuzzer target: arbitrary bytes through the ISAKMP wire codec (ike/isakmp.hpp).
//
// Every parser gets the input (as a whole datagram, as a decrypted payload chain with trailing
// padding allowed, and as each typed payload body). Besides ASan, the codec's own consistency is
// checked:
//  - a datagram that parse_message accepts is rebuilt byte for byte by build_message from its
//    header and payload bodies (the parser keeps everything that is on the wire);
//  - typed bodies: build_x(parse_x(b)) parses again to the same bytes when built once more
//    (reserved fields may be normalised to zero, nothing else may change).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "ike/isakmp.hpp"

using namespace ipsecgw::ike;

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz_isakmp: %s\n", what);
  std::abort();
}

template <class Parse, class Build>
void roundtrip(ByteView b, Parse parse, Build build, const char* what) {
  auto first = parse(b);
  if (!first) return;
  const Bytes once = build(*first);
  auto again = parse(ByteView(once));
  if (!again) die(what);
  if (build(*again) != once) die(what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView in(data, size);

  if (auto m = parse_message(in)) {
    PayloadChain chain;
    for (const auto& p : m->payloads) {
      if (p.wire.size() != p.body.size() + kGenericHeaderLen) die("wire/body sizes disagree");
      chain.add(p.type, p.body);
    }
    if (build_message(m->hdr, chain) != Bytes(in.begin(), in.end()))
      die("build_message(parse_message(d)) != d");
  }

  if (size >= 1) {
    // A decrypted Phase 2 body: chain from data[0], padding after the last payload allowed.
    auto chain = parse_payloads(data[0], in.subspan(1), true);
    if (chain) {
      for (const auto& p : *chain)
        if (!validate_body(p.type, p.body)) die("parse_payloads kept a body validate_body rejects");
    }
  }

  roundtrip(in, parse_sa, build_sa, "SA payload does not round-trip");
  roundtrip(in, parse_id, build_id, "ID payload does not round-trip");
  roundtrip(in, parse_notify, build_notify, "notify payload does not round-trip");
  roundtrip(in, parse_delete, build_delete, "delete payload does not round-trip");
  if (auto attrs = parse_attributes(in)) {
    Bytes o;
    write_attributes(*attrs, o);
    if (o != Bytes(in.begin(), in.end())) die("attributes do not round-trip");
  }
  return 0;
}
