// The desired state on disk: YAML in the config file's schema for the Neutron sections
// (ikepolicies, ipsecpolicies, endpoint_groups, ipsec_site_connections with references by name
// -- by id where a name is empty or not unique), plus what the API adds: an `id` on every
// object, a `vpnservices` list and each connection's `vpnservice`. docs/api.md shows an example.
//
// save() is atomic: a temp file in the same directory, written with mode 0600 (it holds PSKs),
// fsync, rename over the file, fsync of the directory. A reader sees the old or the new file,
// never a mix. load() reads the file with read() into one buffer and parses it with
// parse_state_and_wipe (no copy of the text or its parse tree is freed unwiped). load() of a file the config loader would also read (a single `vpnservice:` with
// ports etc.) takes its Neutron resources and ignores the gateway-only keys.
#pragma once

#include <string>
#include <string_view>

#include "app/model/model.hpp"
#include "common/result.hpp"

namespace ipsecgw::model {

// Parses the Neutron sections; validates each object with the model's rules (errors name
// "ikepolicies[1].lifetime.value: ..."), then the whole state. Keeps stored ids.
// skip_manual_keys: connections with manual_keys (static SAs, the gateway's config file only)
// are left out instead of refused -- the gateway reading its config file's Neutron sections.
// The text (PSKs among it) is parsed from a copy that is wiped, as parse_state_and_wipe does.
Result<State> parse_state(std::string_view yaml_text, const Environment& env,
                          bool skip_manual_keys = false);
// The same, parsing `text` in place: `text`, the parsed YAML tree and the JSON made of it are
// overwritten with zeros before this returns, on errors too (the state file holds PSKs).
Result<State> parse_state_and_wipe(std::string& text, const Environment& env,
                                   bool skip_manual_keys = false);
// The YAML text save() writes.
std::string emit_state(const State& s);

class Store {
 public:
  explicit Store(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  // A missing file is an empty state.
  Result<State> load(const Environment& env) const;
  Result<void> save(const State& s) const;

 private:
  std::string path_;
};

}  // namespace ipsecgw::model
