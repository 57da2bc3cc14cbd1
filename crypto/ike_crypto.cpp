#include "crypto/ike_crypto.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/dh.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <atomic>
#include <cstdlib>

#include "common/handle.hpp"
#include "crypto/dh_ops.hpp"

namespace ipsecgw::crypto {

namespace {

using bn_ptr = handle<BIGNUM, BN_clear_free>;
using bn_ctx_ptr = handle<BN_CTX, BN_CTX_free>;
using evp_pkey_ptr = handle<EVP_PKEY, EVP_PKEY_free>;
using evp_pkey_ctx_ptr = handle<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using param_bld_ptr = handle<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using param_ptr = handle<OSSL_PARAM, OSSL_PARAM_free>;
using evp_md_ctx_ptr = handle<EVP_MD_CTX, EVP_MD_CTX_free>;
using evp_mac_ptr = handle<EVP_MAC, EVP_MAC_free>;
using evp_mac_ctx_ptr = handle<EVP_MAC_CTX, EVP_MAC_CTX_free>;
using evp_cipher_ctx_ptr = handle<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;

// The primes are the RFC constants as OpenSSL carries them:
//   group 2:  RFC 2409 §6.2, p = 2^1024 - 2^960 - 1 + 2^64 * { [2^894 pi] + 129093 }
//   group 5:  RFC 3526 §2,   p = 2^1536 - 2^1472 - 1 + 2^64 * { [2^1406 pi] + 741804 }
//   group 14: RFC 3526 §3,   p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }
// and the generator is 2 for all three.
bn_ptr group_prime(DhGroup g) {
  switch (g) {
    case DhGroup::kModp1024: return bn_ptr(BN_get_rfc2409_prime_1024(nullptr));
    case DhGroup::kModp1536: return bn_ptr(BN_get_rfc3526_prime_1536(nullptr));
    case DhGroup::kModp2048: return bn_ptr(BN_get_rfc3526_prime_2048(nullptr));
  }
  return nullptr;
}

const char* md_name(HashAlg a) { return a == HashAlg::kSha1 ? "SHA1" : "SHA256"; }

// Domain parameters (p, g) plus, optionally, a public value, as an OSSL_PARAM array.
param_ptr dh_params(DhGroup g, const BIGNUM* pub) {
  bn_ptr p = group_prime(g);
  bn_ptr gen(BN_new());
  if (!p || !gen || BN_set_word(gen.get(), 2) != 1) return nullptr;
  param_bld_ptr bld(OSSL_PARAM_BLD_new());
  if (!bld) return nullptr;
  if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_P, p.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_G, gen.get()) != 1)
    return nullptr;
  if (pub != nullptr && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub) != 1)
    return nullptr;
  return param_ptr(OSSL_PARAM_BLD_to_param(bld.get()));
}

evp_pkey_ptr pkey_from(DhGroup g, const BIGNUM* pub) {
  param_ptr params = dh_params(g, pub);
  if (!params) return nullptr;
  evp_pkey_ctx_ptr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* out = nullptr;
  int selection = pub != nullptr ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEY_PARAMETERS;
  if (EVP_PKEY_fromdata(ctx.get(), &out, selection, params.get()) != 1) return nullptr;
  return evp_pkey_ptr(out);
}

}  // namespace

std::size_t dh_group_bytes(DhGroup g) noexcept {
  switch (g) {
    case DhGroup::kModp1024: return 128;
    case DhGroup::kModp1536: return 192;
    case DhGroup::kModp2048: return 256;
  }
  return 0;
}

bool dh_group_supported(std::uint16_t id) noexcept { return id == 2 || id == 5 || id == 14; }

std::string_view to_string(DhGroup g) noexcept {
  switch (g) {
    case DhGroup::kModp1024: return "modp1024";
    case DhGroup::kModp1536: return "modp1536";
    case DhGroup::kModp2048: return "modp2048";
  }
  return "unknown";
}

std::string_view to_string(HashAlg a) noexcept { return a == HashAlg::kSha1 ? "sha1" : "sha256"; }

Bytes dh_group_prime(DhGroup g) {
  bn_ptr p = group_prime(g);
  Bytes out(dh_group_bytes(g));
  if (!p || BN_bn2binpad(p.get(), out.data(), static_cast<int>(out.size())) < 0) out.clear();
  return out;
}

bool dh_public_value_valid(DhGroup g, ByteView y) {
  if (y.size() != dh_group_bytes(g)) return false;
  bn_ptr p = group_prime(g);
  bn_ptr v(BN_bin2bn(y.data(), static_cast<int>(y.size()), nullptr));
  bn_ptr pm1(BN_dup(p.get()));
  if (!p || !v || !pm1 || BN_sub_word(pm1.get(), 1) != 1) return false;
  // 1 < y < p-1: rejects 0, 1 and p-1 (the order-1 and order-2 elements) and anything >= p.
  return BN_cmp(v.get(), BN_value_one()) > 0 && BN_cmp(v.get(), pm1.get()) < 0;
}

struct DhKeyPair::Impl {
  evp_pkey_ptr key;
};

DhKeyPair::DhKeyPair(DhGroup g, std::unique_ptr<Impl> impl, Bytes pub)
    : group_(g), impl_(std::move(impl)), pub_(std::move(pub)) {}
DhKeyPair::DhKeyPair(DhKeyPair&&) noexcept = default;
DhKeyPair& DhKeyPair::operator=(DhKeyPair&&) noexcept = default;
DhKeyPair::~DhKeyPair() = default;

namespace {
std::atomic<std::uint64_t> g_dh_ops{0};
}  // namespace

std::uint64_t dh_operations() noexcept { return g_dh_ops.load(std::memory_order_relaxed); }

Result<DhKeyPair> DhKeyPair::generate(DhGroup g) {
  if (dh_group_bytes(g) == 0) return make_error("unsupported DH group");
  g_dh_ops.fetch_add(1, std::memory_order_relaxed);
  evp_pkey_ptr domain = pkey_from(g, nullptr);
  if (!domain) return make_error("DH: cannot build domain parameters");
  evp_pkey_ctx_ptr kctx(EVP_PKEY_CTX_new_from_pkey(nullptr, domain.get(), nullptr));
  if (!kctx || EVP_PKEY_keygen_init(kctx.get()) != 1) return make_error("DH: keygen init failed");
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_generate(kctx.get(), &key) != 1) return make_error("DH: key generation failed");
  auto impl = std::make_unique<Impl>();
  impl->key.reset(key);
  BIGNUM* pub_raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PUB_KEY, &pub_raw) != 1)
    return make_error("DH: cannot read public value");
  bn_ptr pub_bn(pub_raw);
  Bytes pub(dh_group_bytes(g));
  if (BN_bn2binpad(pub_bn.get(), pub.data(), static_cast<int>(pub.size())) < 0)
    return make_error("DH: public value too long");
  return DhKeyPair(g, std::move(impl), std::move(pub));
}

Result<DhKeyPair> DhKeyPair::from_private(DhGroup g, ByteView x) {
  if (dh_group_bytes(g) == 0) return make_error("unsupported DH group");
  bn_ptr p = group_prime(g);
  bn_ptr gen(BN_new());
  bn_ptr priv(BN_bin2bn(x.data(), static_cast<int>(x.size()), nullptr));
  bn_ptr pub_bn(BN_new());
  bn_ctx_ptr ctx(BN_CTX_new());
  if (!p || !gen || !priv || !pub_bn || !ctx || BN_set_word(gen.get(), 2) != 1)
    return make_error("DH: out of memory");
  if (BN_is_zero(priv.get()) || BN_cmp(priv.get(), p.get()) >= 0)
    return make_error("DH: private value out of range");
  if (BN_mod_exp(pub_bn.get(), gen.get(), priv.get(), p.get(), ctx.get()) != 1)
    return make_error("DH: modular exponentiation failed");
  param_bld_ptr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_P, p.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_G, gen.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub_bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get()) != 1)
    return make_error("DH: cannot build key parameters");
  param_ptr params(OSSL_PARAM_BLD_to_param(bld.get()));
  evp_pkey_ctx_ptr kctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !kctx || EVP_PKEY_fromdata_init(kctx.get()) != 1 ||
      EVP_PKEY_fromdata(kctx.get(), &key, EVP_PKEY_KEYPAIR, params.get()) != 1)
    return make_error("DH: cannot build key pair");
  auto impl = std::make_unique<Impl>();
  impl->key.reset(key);
  Bytes pub(dh_group_bytes(g));
  if (BN_bn2binpad(pub_bn.get(), pub.data(), static_cast<int>(pub.size())) < 0)
    return make_error("DH: public value too long");
  return DhKeyPair(g, std::move(impl), std::move(pub));
}

Result<SecureBytes> DhKeyPair::shared_secret(ByteView peer_public) const {
  if (!impl_) return make_error("DH: no key");
  if (!dh_public_value_valid(group_, peer_public))
    return make_error("DH: peer public value invalid (length or not 1 < y < p-1)");
  g_dh_ops.fetch_add(1, std::memory_order_relaxed);
  bn_ptr y(BN_bin2bn(peer_public.data(), static_cast<int>(peer_public.size()), nullptr));
  evp_pkey_ptr peer = pkey_from(group_, y.get());
  if (!peer) return make_error("DH: cannot import peer public value");
  evp_pkey_ctx_ptr dctx(EVP_PKEY_CTX_new_from_pkey(nullptr, impl_->key.get(), nullptr));
  if (!dctx || EVP_PKEY_derive_init(dctx.get()) != 1 ||
      EVP_PKEY_CTX_set_dh_pad(dctx.get(), 1) != 1 ||
      EVP_PKEY_derive_set_peer(dctx.get(), peer.get()) != 1)
    return make_error("DH: derive setup failed");
  std::size_t len = 0;
  if (EVP_PKEY_derive(dctx.get(), nullptr, &len) != 1) return make_error("DH: derive failed");
  SecureBytes out(len);
  if (EVP_PKEY_derive(dctx.get(), out.data(), &len) != 1) return make_error("DH: derive failed");
  if (len != dh_group_bytes(group_)) {
    // Left-pad to the group size (RFC 2409 §5: g^xy is the full-length value).
    SecureBytes padded(dh_group_bytes(group_));
    if (len > padded.size()) return make_error("DH: shared secret too long");
    std::memcpy(padded.data() + (padded.size() - len), out.data(), len);
    return padded;
  }
  return out;
}

Bytes hash(HashAlg a, std::initializer_list<ByteView> parts) {
  evp_md_ctx_ptr ctx(EVP_MD_CTX_new());
  Bytes out(hash_len(a));
  unsigned int n = 0;
  if (!ctx || EVP_DigestInit_ex2(ctx.get(), EVP_get_digestbyname(md_name(a)), nullptr) != 1)
    std::abort();
  for (auto p : parts)
    if (!p.empty() && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) != 1) std::abort();
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &n) != 1 || n != out.size()) std::abort();
  return out;
}

SecureBytes prf(HashAlg a, ByteView key, std::initializer_list<ByteView> parts) {
  evp_mac_ptr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  evp_mac_ctx_ptr ctx(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);
  if (!ctx) std::abort();
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(md_name(a)), 0),
      OSSL_PARAM_construct_end()};
  // An empty key is legal HMAC; OpenSSL wants a non-null pointer.
  static const std::uint8_t kEmpty = 0;
  if (EVP_MAC_init(ctx.get(), key.empty() ? &kEmpty : key.data(), key.size(), params) != 1)
    std::abort();
  for (auto p : parts)
    if (!p.empty() && EVP_MAC_update(ctx.get(), p.data(), p.size()) != 1) std::abort();
  SecureBytes out(hash_len(a));
  std::size_t n = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &n, out.size()) != 1 || n != out.size()) std::abort();
  return out;
}

namespace {
const EVP_CIPHER* aes_cbc(std::size_t key_len) {
  switch (key_len) {
    case 16: return EVP_aes_128_cbc();
    case 24: return EVP_aes_192_cbc();
    case 32: return EVP_aes_256_cbc();
  }
  return nullptr;
}

Result<Bytes> aes_cbc(ByteView key, ByteView iv, ByteView in, bool enc) {
  const EVP_CIPHER* c = aes_cbc(key.size());
  if (c == nullptr) return make_error("AES-CBC: key must be 16, 24 or 32 bytes");
  if (iv.size() != 16) return make_error("AES-CBC: IV must be 16 bytes");
  if (in.size() % 16 != 0) return make_error("AES-CBC: data not a multiple of the block size");
  evp_cipher_ctx_ptr ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_CipherInit_ex2(ctx.get(), c, key.data(), iv.data(), enc ? 1 : 0, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1)
    return make_error("AES-CBC: init failed");
  Bytes out(in.size());
  int n1 = 0, n2 = 0;
  if (!in.empty() &&
      EVP_CipherUpdate(ctx.get(), out.data(), &n1, in.data(), static_cast<int>(in.size())) != 1)
    return make_error("AES-CBC: update failed");
  if (EVP_CipherFinal_ex(ctx.get(), out.data() + n1, &n2) != 1)
    return make_error("AES-CBC: final failed");
  out.resize(static_cast<std::size_t>(n1 + n2));
  return out;
}
}  // namespace

Result<Bytes> aes_cbc_encrypt(ByteView key, ByteView iv, ByteView plaintext) {
  return aes_cbc(key, iv, plaintext, true);
}
Result<Bytes> aes_cbc_decrypt(ByteView key, ByteView iv, ByteView ciphertext) {
  return aes_cbc(key, iv, ciphertext, false);
}

void random_bytes(std::span<std::uint8_t> out) {
  if (out.empty()) return;
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) std::abort();
}

Bytes random_bytes(std::size_t n) {
  Bytes b(n);
  random_bytes(std::span<std::uint8_t>(b));
  return b;
}

}  // namespace ipsecgw::crypto
