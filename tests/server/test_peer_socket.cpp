// PeerSocket: finding the accepted socket of a connection from its addresses, and telling a
// live client (idle or with pipelined bytes waiting) from one that closed (FIN) or reset (RST).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "server/peer_socket.h"

namespace nemotron::server {
namespace {

int port_of(int fd, bool peer) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  EXPECT_EQ(peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                 : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len),
            0);
  return ntohs(a.sin_port);
}

// A listening socket on 127.0.0.1, one client connected to it and the accepted end.
struct Connection {
  int listener = -1, client = -1, server = -1;
  Connection() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(listener, 4), 0);
    a.sin_port = htons(static_cast<uint16_t>(port_of(listener, false)));
    client = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    server = accept(listener, nullptr, nullptr);
    EXPECT_GE(server, 0);
  }
  ~Connection() {
    for (int fd : {listener, client, server})
      if (fd >= 0) close(fd);
  }
  PeerSocket find() const {
    return PeerSocket::find("127.0.0.1", port_of(server, false), "127.0.0.1", port_of(client, false));
  }
};

// closed() after the kernel has delivered what the peer did (loopback: at once; allow 2 s).
bool becomes_closed(const PeerSocket& p) {
  for (int i = 0; i < 200; ++i) {
    if (p.closed()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(PeerSocket, FindsTheAcceptedEndOnly) {
  Connection c;
  EXPECT_TRUE(c.find().found());
  const int local = port_of(c.server, false), remote = port_of(c.client, false);
  EXPECT_FALSE(PeerSocket::find("127.0.0.1", local, "127.0.0.1", remote + 1).found());
  EXPECT_FALSE(PeerSocket::find("127.0.0.2", local, "127.0.0.1", remote).found());
  EXPECT_FALSE(PeerSocket::find("127.0.0.1", local, "127.0.0.2", remote).found());
  EXPECT_FALSE(PeerSocket::find("127.0.0.1", 0, "", -1).found());
  EXPECT_FALSE(PeerSocket().closed());  // not found: never reports a close
}

TEST(PeerSocket, LiveClientIsNotClosedEvenWithPipelinedBytes) {
  Connection c;
  const PeerSocket p = c.find();
  ASSERT_TRUE(p.found());
  EXPECT_FALSE(p.closed());
  ASSERT_EQ(write(c.client, "GET / HTTP/1.1\r\n", 16), 16);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(p.closed());
  char buf[16];
  EXPECT_EQ(recv(c.server, buf, sizeof(buf), MSG_DONTWAIT), 16);  // closed() only peeked
}

TEST(PeerSocket, ClientCloseIsSeen) {
  Connection c;
  const PeerSocket p = c.find();
  ASSERT_TRUE(p.found());
  close(c.client);
  c.client = -1;
  EXPECT_TRUE(becomes_closed(p));
}

TEST(PeerSocket, ClientCloseWithUnreadBytesIsSeen) {
  Connection c;
  const PeerSocket p = c.find();
  ASSERT_TRUE(p.found());
  ASSERT_EQ(write(c.client, "x", 1), 1);
  close(c.client);
  c.client = -1;
  EXPECT_TRUE(becomes_closed(p));
}

TEST(PeerSocket, ClientResetIsSeen) {
  Connection c;
  const PeerSocket p = c.find();
  ASSERT_TRUE(p.found());
  linger l{1, 0};
  ASSERT_EQ(setsockopt(c.client, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
  close(c.client);
  c.client = -1;
  EXPECT_TRUE(becomes_closed(p));
}

}  // namespace
}  // namespace nemotron::server
