// Send HL7 v2 messages with Medplum's MLLP client (@medplum/hl7) and print one JSON line per ACK.
// usage: node medplum_send.js PORT FILE...   (a file may hold several messages)
'use strict';
const { Hl7Client } = require('@medplum/hl7');
const { Hl7Message } = require('@medplum/core');
const fs = require('fs');

async function main() {
  const client = new Hl7Client({ host: '127.0.0.1', port: parseInt(process.argv[2], 10) });
  try {
    for (const file of process.argv.slice(3)) {
      const text = fs.readFileSync(file, 'latin1').replace(/\r?\n/g, '\r').trim();
      for (const one of text.split(/\r(?=MSH\|)/)) {
        const sent = Hl7Message.parse(one);
        const ack = await client.sendAndWait(sent, { timeoutMs: 20000 });
        const msa = ack.getSegment('MSA');
        console.log(JSON.stringify({
          file: file.split('/').pop(),
          control_id: sent.getSegment('MSH').getField(10).toString(),
          ack_type: ack.getSegment('MSH').getField(9).toString(),
          code: msa.getField(1).toString(),
          acked: msa.getField(2).toString(),
        }));
      }
    }
  } finally {
    client.close();
  }
}

// exit at once: the client's ACK timers would keep Node alive for their full timeout
main().then(() => process.exit(0), (err) => { console.error(String(err)); process.exit(1); });
