#!/usr/bin/env python3
"""Turn ../shared/pdu-vectors/public.jsonl (real PDUs from other projects and carriers) into one
fixture file per PDU under pdu-fixtures/public/.

The vectors' own decode (by an independent script) becomes the fixture's expectation, rewritten
into this project's JSON conventions; for malformed vectors the expected error class is set here,
with the reason, from smpp-spec.md §3 and §10. Run again when the vector file changes:
    python3 scripts/import-vectors.py ../shared/pdu-vectors/public.jsonl
"""
import json
import os
import sys

HEADER_KEYS = {"command_length", "command_id", "command_status", "status_name", "sequence_number",
               "bytes_supplied", "esm_class_decoded", "udh", "receipt", "receipt_carried_in"}

HEADER_ONLY = {"generic_nack", "unbind", "unbind_resp", "enquire_link", "enquire_link_resp", "replace_sm_resp",
               "cancel_sm_resp", "cancel_broadcast_sm_resp"}

# Malformed vectors: what the codec must report, and why.
ERRORS = {
    "ch_unknown_request_cmd_0x110": ("pdu", "ESME_RINVCMDID", "unknown command_id: generic_nack, session goes on"),
    "ch_unknown_cmd_with_1byte_body": ("pdu", "ESME_RINVCMDID", "unknown command_id; the framer skips exactly 17 octets"),
    "ch_negative_command_length": ("frame", "ESME_RINVCMDLEN", "command_length 0xF0000011 above the maximum: fatal, nothing allocated"),
    "ch_submit_sm_resp_missing_nul": ("pdu", "ESME_RINVMSGLEN", "message_id has no NUL inside command_length"),
    "ch_deliver_sm_sm_length_overrun_nextel": ("pdu", "ESME_RINVMSGLEN", "sm_length 16 with 8 octets left"),
    "mz_unbind_len_15": ("frame", "ESME_RINVCMDLEN", "command_length 15 < 16: fatal"),
    "mz_bind_resp_len_253_truncated": ("truncated", None, "command_length 253 with 29 octets: the framer waits for more"),
    "mz_bind_resp_len_28_cuts_tlv": ("pdu", "ESME_RINVPARLEN", "inside the 28-octet frame the TLV value is cut off"),
    "gs_query_sm_truncated": ("truncated", None, "command_length 30 with 29 octets: the framer waits for more"),
    "cu_query_broadcast_sm_as_0x111": ("pdu", "ESME_RINVMSGLEN", "a query_broadcast_sm body under broadcast_sm's id: message_id has no NUL"),
    "cu_cmd_0x0000ffff": ("pdu", "ESME_RINVCMDID", "unknown command_id 0x0000FFFF"),
    "rb_deliver_sm_len_mismatch_roman8": ("pdu", "ESME_RINVMSGLEN", "sm_length 41 overruns the 61-octet frame"),
    "ex_resp_cmd_0x80003302_trailing": ("pdu", "ESME_RINVCMDID", "unknown response id; the 3 octets after it belong to the next PDU"),
}


def octets(value):
    """A vector string ('hex:…' for non-printable) as bytes."""
    if isinstance(value, str) and value.startswith("hex:"):
        return bytes.fromhex(value[4:])
    return value.encode("utf-8")


def cstring(value):
    b = octets(value)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def convert_body(fields):
    body = {}
    for key, value in fields.items():
        if key in HEADER_KEYS:
            continue
        if key == "short_message":
            body[key] = octets(value).hex()
        elif key == "dest_addresses":
            body[key] = [
                {"dest_flag": 1, "dest_addr_ton": d["ton"], "dest_addr_npi": d["npi"], "destination_addr": cstring(d["addr"])}
                if d["dest_flag"] == 1 else {"dest_flag": 2, "dl_name": cstring(d["dl_name"])}
                for d in value
            ]
        elif key == "unsuccess_smes":
            body[key] = [
                {"dest_addr_ton": u["ton"], "dest_addr_npi": u["npi"], "destination_addr": cstring(u["addr"]),
                 "error_status_code": u["error_status_code"]}
                for u in value
            ]
        elif isinstance(value, str):
            body[key] = cstring(value)
        else:
            body[key] = value
    return body


def convert_tlv(t):
    length = t["length"]
    if "value_hex" in t:
        raw = bytes.fromhex(t["value_hex"])
    elif isinstance(t["value"], int):
        raw = t["value"].to_bytes(length, "big")
    else:
        raw = octets(t["value"])
        raw += b"\0" * (length - len(raw))
    assert len(raw) == length, t
    return {"tag": t["tag"], "value_hex": raw.hex()}


RECEIPT_KEYS = {"id": "text_id", "sub": "sub", "dlvrd": "dlvrd", "submit date": "submit_date",
                "done date": "done_date", "stat": "stat", "err": "err", "text": "text", "Text": "text"}


def convert_receipt(fields):
    r = fields.get("receipt")
    if not r:
        return None
    out = {RECEIPT_KEYS[k]: octets(v).hex() for k, v in r.items()}
    out["carried_in"] = fields.get("receipt_carried_in", "short_message")
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "../shared/pdu-vectors/public.jsonl"
    out_dir = os.path.join(os.path.dirname(__file__), "..", "pdu-fixtures", "public")
    os.makedirs(out_dir, exist_ok=True)
    count = 0
    for line in open(src):
        v = json.loads(line)
        f = v["fields"]
        fixture = {"name": v["name"], "source": v["source"], "note": v["note"], "hex": v["hex"], "valid": v["valid"]}
        if v["valid"]:
            body = convert_body(f)
            if not body and v["command"] not in HEADER_ONLY:
                body = None  # a response sent without its body (smpp-spec.md §3)
            expect = {
                "command": v["command"],
                "command_status": int(f["command_status"], 16),
                "sequence_number": f["sequence_number"],
                "body": body,
                "tlvs": [convert_tlv(t) for t in v["tlvs"]],
            }
            receipt = convert_receipt(f)
            if receipt:
                expect["receipt"] = receipt
            fixture["expect"] = expect
        else:
            cls, status, why = ERRORS[v["name"]]
            fixture["error"] = {"class": cls, "status": status, "why": why}
        fixture["anomalies"] = v["anomalies"]
        with open(os.path.join(out_dir, v["name"] + ".json"), "w") as fh:
            json.dump(fixture, fh, indent=1)
            fh.write("\n")
        count += 1
    print(f"{count} fixtures written to {os.path.normpath(out_dir)}")


if __name__ == "__main__":
    main()
