// IKEv1 crypto primitives over OpenSSL 3 (no DPDK): MODP Diffie-Hellman groups 2, 5 and 14,
// the negotiated hash and its HMAC PRF, AES-CBC without padding (IKE pads itself, RFC 2409
// Appendix B) and RAND_bytes. Secrets are returned in SecureBytes; OpenSSL objects are held in
// handle<> wrappers so every error path frees and wipes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/secure_bytes.hpp"

namespace ipsecgw::crypto {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// IKE group numbers (RFC 2409 §6, RFC 3526).
enum class DhGroup : std::uint16_t {
  kModp1024 = 2,   // RFC 2409 §6.2 (Second Oakley Group)
  kModp1536 = 5,   // RFC 3526 §2
  kModp2048 = 14,  // RFC 3526 §3
};

// Size in bytes of the group's prime (and so of public values and shared secrets).
std::size_t dh_group_bytes(DhGroup g) noexcept;
bool dh_group_supported(std::uint16_t id) noexcept;
std::string_view to_string(DhGroup g) noexcept;  // "modp1024" ...

// The group's prime p as big-endian bytes (from OpenSSL's RFC 2409/3526 constants).
Bytes dh_group_prime(DhGroup g);

// One ephemeral DH key pair. Move-only; the private key lives inside OpenSSL and is freed (and
// cleared by OpenSSL) with the object.
class DhKeyPair {
 public:
  static Result<DhKeyPair> generate(DhGroup g);
  // The pair for a given private exponent x (big-endian, 0 < x < p-1): public value 2^x mod p.
  // For reproducible exchanges (fuzzing with a fixed DH source, test vectors), never for keys
  // that protect traffic.
  static Result<DhKeyPair> from_private(DhGroup g, ByteView x);
  DhKeyPair(DhKeyPair&&) noexcept;
  DhKeyPair& operator=(DhKeyPair&&) noexcept;
  ~DhKeyPair();

  DhGroup group() const noexcept { return group_; }
  // g^x mod p, big-endian, left-padded to dh_group_bytes() (RFC 2409 §5: KE data).
  const Bytes& public_value() const noexcept { return pub_; }
  // g^xy mod p, left-padded to the group size. Fails when the peer value has the wrong length
  // or is outside 1 < y < p-1 (RFC 2631 §2.1.5 style range check, small-subgroup guard).
  Result<SecureBytes> shared_secret(ByteView peer_public) const;

 private:
  struct Impl;
  DhKeyPair(DhGroup g, std::unique_ptr<Impl> impl, Bytes pub);
  DhGroup group_;
  std::unique_ptr<Impl> impl_;
  Bytes pub_;
};

// Checks 1 < y < p-1 for a big-endian value of exactly the group size.
bool dh_public_value_valid(DhGroup g, ByteView y);

enum class HashAlg : std::uint8_t { kSha1, kSha256 };
constexpr std::size_t hash_len(HashAlg a) noexcept { return a == HashAlg::kSha1 ? 20 : 32; }
std::string_view to_string(HashAlg a) noexcept;  // "sha1", "sha256"

// HASH(a | b | ...) with the negotiated hash (e.g. the phase-1 IV, RFC 2409 Appendix B).
Bytes hash(HashAlg a, std::initializer_list<ByteView> parts);
// prf(key, a | b | ...) = HMAC-<hash>(key, a | b | ...) (RFC 2409 §4: the HMAC version of the
// negotiated hash is the PRF when none is negotiated). Output is secret: SecureBytes.
SecureBytes prf(HashAlg a, ByteView key, std::initializer_list<ByteView> parts);

// AES-CBC without padding, key 16/24/32 bytes, iv 16 bytes, data a multiple of 16 bytes.
Result<Bytes> aes_cbc_encrypt(ByteView key, ByteView iv, ByteView plaintext);
Result<Bytes> aes_cbc_decrypt(ByteView key, ByteView iv, ByteView ciphertext);

// Cryptographically strong random bytes (RAND_bytes). Aborts if the DRBG fails: no IKE
// exchange can be run safely without it.
void random_bytes(std::span<std::uint8_t> out);
Bytes random_bytes(std::size_t n);

}  // namespace ipsecgw::crypto
