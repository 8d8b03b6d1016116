"""A DNS server on 127.0.0.1 (UDP) that answers from a table: the stand-in for public resolvers in tests."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class FakeDns:
    """`answers[(name, type)] = [values]`; anything else is NXDOMAIN. `queries` records what was asked."""

    answers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> FakeDns:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name, rtype = question.name.to_text().rstrip("."), dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rtype))
            reply = dns.message.make_response(query)
            values = self.answers.get((name, rtype))
            if values is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            else:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", rtype, *values))
            self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()

    def __enter__(self) -> FakeDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
