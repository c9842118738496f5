"""Interop: python-smpplib as a client of smpp-proxy.

Binds as a transceiver, submits N messages asking for receipts, reads until every response and
receipt is in (or the deadline passes), unbinds, and prints one JSON line: the message ids the
proxy gave and the ids in the receipts (receipted_message_id TLV and the text's id:).
Usage: python smpplib_client.py HOST PORT SYSTEM_ID PASSWORD N

Over TLS when SMPP_TLS_CA names the CA to trust (the proxy's certificate is checked against it
and HOST), with SMPP_TLS_CERT / SMPP_TLS_KEY as the client's certificate if set. A connect or
bind that fails prints {"failed": "..."} (the error as Python reports it) and exits 0.
"""
import json
import os
import re
import socket
import ssl
import sys
import time

import smpplib.client
import smpplib.consts

host, port, system_id, password, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ids, receipts, errors = [], [], []



class Client(smpplib.client.Client):
    """smpplib's client, its TLS checking the server's name and its connect errors kept whole
    (smpplib wraps the socket without a name and reports any failure as "Connection refused")."""

    def _create_socket(self):
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self._ssl_context is None:
            return raw
        return self._ssl_context.wrap_socket(raw, server_hostname=self.host)

    def connect(self):
        self._socket = self._create_socket()
        self.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN


context = None
if os.environ.get("SMPP_TLS_CA"):
    context = ssl.create_default_context(cafile=os.environ["SMPP_TLS_CA"])
    if os.environ.get("SMPP_TLS_CERT"):
        context.load_cert_chain(os.environ["SMPP_TLS_CERT"], os.environ["SMPP_TLS_KEY"])
client = Client(host, port, timeout=1, allow_unknown_opt_params=True, ssl_context=context)


def sent(pdu):
    ids.append(pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else pdu.message_id)


def received(pdu):
    text = pdu.short_message or b""
    m = re.search(rb"id:(\S+)", text)
    tlv = pdu.receipted_message_id
    receipts.append({
        "tlv": tlv.decode() if isinstance(tlv, bytes) else tlv,
        "text": m.group(1).decode() if m else None,
    })


def error(pdu):
    errors.append(int(pdu.status))


client.set_message_sent_handler(sent)
client.set_message_received_handler(received)
client.set_error_pdu_handler(error)
try:
    client.connect()
    client.bind_transceiver(system_id=system_id, password=password)
except Exception as e:  # noqa: BLE001 - the test reads what failed
    print(json.dumps({"failed": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
for i in range(n):
    client.send_message(
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr="447700900000",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        destination_addr="447700900123",
        short_message=f"smpplib message {i}".encode(),
        registered_delivery=True,
    )
deadline = time.time() + 20
while (len(ids) + len(errors) < n or len(receipts) < n) and time.time() < deadline:
    try:
        client.read_once(auto_send_enquire_link=False)
    except OSError:
        pass  # socket.timeout: read again until the deadline
client.unbind()
client.disconnect()
print(json.dumps({"ids": ids, "receipts": receipts, "errors": errors}))
