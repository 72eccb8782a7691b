#!/usr/bin/env python3
"""Closed-loop SIP client for scripts/alloc-count.sh: one request in flight at a time, so that a
server-side count divided by the number of requests is the cost of one.

  closed_loop.py register HOST PORT COUNT PREFIX   REGISTER of COUNT distinct users PREFIX0..
  closed_loop.py message HOST PORT COUNT PREFIX    registers PREFIX-bob at a socket of its own, then
                                                   sends COUNT MESSAGEs to it through the server and
                                                   answers each with 200 OK (the proxied round trip)
Exits non-zero when a request does not get its 200 OK."""
import socket
import sys

mode, host, port, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
domain = f"{host}:{port}"


def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock, sock.getsockname()[1]


def register(sock, local_port, user, branch):
    sock.sendto((f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{branch}\r\n"
                 f"Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=r-{branch}\r\nTo: <sip:{user}@{domain}>\r\n"
                 f"Call-ID: {branch}@closed-loop\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{local_port}>\r\n"
                 f"Expires: 3600\r\nContent-Length: 0\r\n\r\n").encode(), (host, port))
    answer = sock.recvfrom(65535)[0]
    if not answer.startswith(b"SIP/2.0 200"):
        sys.exit(f"REGISTER for {user}: {answer[:40]!r}")


def answer_ok(sock, request, address):
    head = request.split(b"\r\n\r\n")[0].split(b"\r\n")
    kept = [line for line in head[1:] if line.split(b":")[0].strip().lower() in
            (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")]
    kept = [line + b";tag=uas" if line.lower().startswith((b"to:", b"t:")) and b"tag=" not in line else line for line in kept]
    sock.sendto(b"SIP/2.0 200 OK\r\n" + b"\r\n".join(kept) + b"\r\nContent-Length: 0\r\n\r\n", address)


if mode == "register":
    sock, local_port = udp()
    for index in range(count):
        register(sock, local_port, f"{prefix}{index}", f"{prefix}-{index}")
elif mode == "message":
    uac, uac_port = udp()
    uas, uas_port = udp()
    bob = f"{prefix}-bob"
    register(uas, uas_port, bob, f"{prefix}-reg")
    body = b"Hello Bob, a short instant message."
    for index in range(count):
        uac.sendto((f"MESSAGE sip:{bob}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{uac_port};branch=z9hG4bK-{prefix}-m{index}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:alice@{domain}>;tag=a{index}\r\nTo: <sip:{bob}@{domain}>\r\n"
                    f"Call-ID: {prefix}-m{index}@closed-loop\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body, (host, port))
        request, address = uas.recvfrom(65535)
        if not request.startswith(b"MESSAGE"):
            sys.exit(f"expected the forwarded MESSAGE: {request[:40]!r}")
        answer_ok(uas, request, address)
        answer = uac.recvfrom(65535)[0]
        if not answer.startswith(b"SIP/2.0 200"):
            sys.exit(f"MESSAGE {index}: {answer[:40]!r}")
else:
    sys.exit(f"unknown mode {mode}")
