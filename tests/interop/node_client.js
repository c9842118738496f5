// Interop: node-smpp (farhadi/node-smpp) as a client of smpp-proxy.
// Binds as a transceiver, submits N messages asking for receipts, collects the ids the proxy
// gives and the receipts' ids, unbinds, prints one JSON line.
// Usage: node node_client.js HOST PORT SYSTEM_ID PASSWORD N
const smpp = require('smpp');
const [host, port, systemId, password, nText] = process.argv.slice(2);
const n = Number(nText);
const ids = [], receipts = [], errors = [];
const session = smpp.connect({ url: `smpp://${host}:${port}`, auto_enquire_link_period: 0 });
const done = () => {
  if (ids.length + errors.length < n || receipts.length < n) return;
  session.unbind(() => {
    session.close();
    console.log(JSON.stringify({ ids, receipts, errors }));
  });
};
session.on('deliver_sm', (pdu) => {
  const text = Buffer.isBuffer(pdu.short_message) ? pdu.short_message.toString()
    : (pdu.short_message && pdu.short_message.message) || '';
  const m = /id:(\S+)/.exec(text);
  receipts.push({ tlv: pdu.receipted_message_id || null, text: m ? m[1] : null });
  session.send(pdu.response());
  done();
});
session.bind_transceiver({ system_id: systemId, password }, (pdu) => {
  if (pdu.command_status !== 0) { console.error('bind failed', pdu.command_status); process.exit(1); }
  for (let i = 0; i < n; i++) {
    session.submit_sm({
      source_addr_ton: 1, source_addr: '447700900000',
      dest_addr_ton: 1, destination_addr: '447700900123',
      short_message: `node-smpp message ${i}`, registered_delivery: 1,
    }, (resp) => {
      if (resp.command_status === 0) ids.push(resp.message_id); else errors.push(resp.command_status);
      done();
    });
  }
});
setTimeout(() => { console.log(JSON.stringify({ ids, receipts, errors, timeout: true })); process.exit(2); }, 20000).unref();
