// Interop: node-smpp as an upstream SMSC behind smpp-proxy.
// Accepts any bind, answers submit_sm with hex ids, and when a receipt is asked for sends a
// deliver_sm receipt (text + receipted_message_id + message_state) on a receiver-capable
// session. Prints "listening PORT" once ready; prints counts on SIGTERM.
// Usage: node node_smsc.js
const smpp = require('smpp');
let next = 0x5000, submits = 0, receipts = 0;
const receivers = [];
const server = smpp.createServer((session) => {
  session.on('bind_transceiver', (pdu) => { session.send(pdu.response()); receivers.push(session); });
  session.on('bind_transmitter', (pdu) => session.send(pdu.response()));
  session.on('bind_receiver', (pdu) => { session.send(pdu.response()); receivers.push(session); });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('close', () => { const i = receivers.indexOf(session); if (i >= 0) receivers.splice(i, 1); });
  session.on('submit_sm', (pdu) => {
    submits += 1;
    const id = (next++).toString(16);
    session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 1) {
      setTimeout(() => {
        const to = receivers[receipts % Math.max(receivers.length, 1)] || session;
        receipts += 1;
        to.deliver_sm({
          source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 4,
          short_message: `id:${id} sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000 text:hello`,
          receipted_message_id: id, message_state: 2,
        });
      }, 5);
    }
  });
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => { console.log(JSON.stringify({ submits, receipts })); process.exit(0); });
