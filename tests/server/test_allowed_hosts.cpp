// The Host header check against DNS rebinding (http_server.h): which Host values a server bound
// to loopback, or beyond it, serves, and what --allowed-hosts accepts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/http_server.h"
#include "util/error.h"

namespace nemotron::server {
namespace {

using Hosts = std::vector<std::string>;

TEST(AllowedHosts, ParsesNamesAndAddresses) {
  EXPECT_EQ(parse_allowed_hosts(""), Hosts{});
  EXPECT_EQ(parse_allowed_hosts(" Example.COM, ,10.0.0.5,::1,[fe80::2],my-box_1.lan "),
            (Hosts{"example.com", "10.0.0.5", "[::1]", "[fe80::2]", "my-box_1.lan"}));
  EXPECT_EQ(parse_allowed_hosts("*"), Hosts{"*"});
}

TEST(AllowedHosts, RefusesWhatIsNotAHost) {
  for (const char* bad : {"http://example.com", "example.com:8080", "example.com/x", "a b", "[::1", "[nothost]",
                          "[::1]:80", "user@example.com", "a:b"}) {
    try {
      parse_allowed_hosts(std::string("ok.example,") + bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--allowed-hosts"), std::string::npos) << msg;
    }
  }
}

TEST(AllowedHosts, LoopbackBindServesLoopbackNamesOnly) {
  for (const char* bind : {"127.0.0.1", "::1", "localhost", "[::1]"}) {
    for (const char* host : {"localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:80", "127.1.2.3:9", "[::1]",
                             "[::1]:8080", " localhost "})
      EXPECT_TRUE(host_allowed(bind, {}, host)) << bind << " " << host;
    for (const char* host : {"evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io",
                             "::1", "[::1", "[::1]x", "localhost:", "localhost:http", "localhost:80:80",
                             "[::2]", "10.0.0.1", "localhost."})
      EXPECT_FALSE(host_allowed(bind, {}, host)) << bind << " " << host;
  }
  EXPECT_TRUE(host_allowed("127.0.0.1", {}, ""));  // no Host header (HTTP/1.0)
  EXPECT_TRUE(host_allowed("127.0.0.1", {"evil.example"}, "Evil.Example:1234"));
  EXPECT_TRUE(host_allowed("127.0.0.1", {"[fe80::2]"}, "[FE80::2]:80"));
  EXPECT_FALSE(host_allowed("127.0.0.1", {"evil.example"}, "other.example"));
  EXPECT_TRUE(host_allowed("127.0.0.1", {"*"}, "anything.example"));
}

TEST(AllowedHosts, BeyondLoopbackChecksOnlyAGivenList) {
  for (const char* bind : {"0.0.0.0", "::", "10.1.2.3", ""})
    EXPECT_TRUE(host_allowed(bind, {}, "evil.example")) << bind;
  EXPECT_TRUE(host_allowed("0.0.0.0", {"api.example"}, "api.example:443"));
  EXPECT_TRUE(host_allowed("0.0.0.0", {"api.example"}, "localhost:8080"));
  EXPECT_FALSE(host_allowed("0.0.0.0", {"api.example"}, "evil.example"));
}

}  // namespace
}  // namespace nemotron::server
