#!/usr/bin/env node
// Real-time AMI event monitor over a raw socket.
//
// Reproduces: the ViciStack-style "Asterisk AMI commands guide", its Node.js
// event monitor: net.createConnection to the AMI port, Login, split the stream
// on blank lines, parse "Key: Value" lines, and log call events (Newchannel,
// Hangup with its cause, ...) as they come.
// Changed: host, port and credentials come from the environment (AMI_HOST,
// AMI_PORT, AMI_USER, AMI_SECRET); the guide runs forever, this one stops
// after MONITOR_SECONDS (default 15) or once it has seen both a Newchannel and
// a Hangup, prints a count per event, logs off and exits 0 only if it saw
// both. Node's standard library only.
// Written from what the guide is known to contain (its text was not reachable
// from here): the structure above, not a byte-for-byte copy.
'use strict';
const net = require('net');

const host = process.env.AMI_HOST || '127.0.0.1';
const port = Number(process.env.AMI_PORT || 5038);
const user = process.env.AMI_USER || 'admin';
const secret = process.env.AMI_SECRET || 'adminpass';
const seconds = Number(process.env.MONITOR_SECONDS || 15);

const counts = {};
let buffer = '';
let loggedIn = false;
let done = false;

const client = net.createConnection({ host, port }, () => {
  client.write(`Action: Login\r\nUsername: ${user}\r\nSecret: ${secret}\r\n\r\n`);
});

function parse(block) {
  const msg = {};
  for (const line of block.split('\r\n')) {
    const i = line.indexOf(': ');
    if (i > 0) msg[line.slice(0, i)] = line.slice(i + 2);
  }
  return msg;
}

function finish(code) {
  if (done) return;
  done = true;
  console.log('counts ' + JSON.stringify(counts));
  client.write('Action: Logoff\r\n\r\n');
  client.end();
  setTimeout(() => process.exit(code), 200);
}

client.on('data', (data) => {
  buffer += data.toString();
  let idx;
  while ((idx = buffer.indexOf('\r\n\r\n')) !== -1) {
    const block = buffer.slice(0, idx);
    buffer = buffer.slice(idx + 4);
    if (block.startsWith('Asterisk Call Manager')) {
      // The banner line shares the first block with nothing else.
      const rest = block.split('\r\n').slice(1).join('\r\n');
      if (!rest) continue;
    }
    const msg = parse(block);
    if (msg.Response) {
      console.log(`Response: ${msg.Response} ${msg.Message || ''}`);
      if (!loggedIn) {
        if (msg.Response !== 'Success') finish(1);
        loggedIn = true;
      }
      continue;
    }
    if (!msg.Event) continue;
    counts[msg.Event] = (counts[msg.Event] || 0) + 1;
    switch (msg.Event) {
      case 'Newchannel':
        console.log(`[NEW] ${msg.Channel} ${msg.CallerIDNum} -> ${msg.Exten}`);
        break;
      case 'Hangup':
        console.log(`[HANGUP] ${msg.Channel} cause=${msg.Cause} (${msg['Cause-txt']})`);
        break;
      case 'DialBegin':
        console.log(`[DIAL] ${msg.Channel} -> ${msg.DestChannel}`);
        break;
      case 'BridgeEnter':
        console.log(`[BRIDGE] ${msg.Channel} in ${msg.BridgeUniqueid}`);
        break;
    }
    if (counts.Newchannel && counts.Hangup) finish(0);
  }
});

client.on('error', (err) => {
  console.error('AMI error: ' + err.message);
  process.exit(1);
});
client.on('close', () => {
  if (!done) {
    console.error('AMI connection closed');
    process.exit(1);
  }
});
setTimeout(() => finish(1), seconds * 1000);
