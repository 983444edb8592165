'use strict';
// The reconnect flow of the three Node libraries, run by the conformance kit
// (test/conformance) with AMI_HOST/AMI_PORT on the proxy: each library logs
// in and prints "READY <library>"; the kit then stops the proxy and starts it
// again on the same port; each library must notice the loss and be logged in
// again (a Ping answered Success) within RECONNECT_MS. A library that
// reconnects by itself passes as "auto"; one that does not is given a new
// client by the flow, as its users must do, and passes as "manual".
// Prints "PASS|FAIL <library> reconnect: <how>"; exits non-zero on a FAIL.
const namiLib = require('nami');
const Manager = require('asterisk-manager');
const AmiClient = require('asterisk-ami-client');

const env = process.env;
const cfg = {
  host: env.AMI_HOST || '127.0.0.1',
  port: Number(env.AMI_PORT || 5038),
  user: env.AMI_USER || 'admin',
  secret: env.AMI_SECRET || 'adminpass',
};
// asterisk-manager waits 10 s before its first reconnection attempt.
const RECONNECT_MS = Number(env.RECONNECT_MS || 45000);
const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// retry calls fn until it resolves, every 250 ms, for at most ms.
async function retry(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`${what}: still failing after ${ms} ms: ${last && last.message}`);
    await sleep(250);
  }
}

function within(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// nami has no reconnection: on namiConnectionClose the flow opens a new Nami.
async function nami(ready) {
  const open = () => within(new Promise((resolve, reject) => {
    const n = new namiLib.Nami({ host: cfg.host, port: cfg.port, username: cfg.user, secret: cfg.secret, logger: quiet });
    n.once('namiConnected', () => resolve(n));
    n.once('namiLoginIncorrect', () => reject(new Error('login refused')));
    n.once('namiConnectionError', (ev) => reject(new Error(`connection error ${ev.error && ev.error.message}`)));
    n.once('namiConnectionClose', () => reject(new Error('closed before login')));
    n.open();
  }), 5000, 'no login');
  const n = await open();
  const lost = within(new Promise((resolve) => n.once('namiConnectionClose', resolve)), RECONNECT_MS, 'the connection was not lost');
  ready();
  await lost;
  const n2 = await retry(open, RECONNECT_MS, 'a new Nami');
  const res = await within(new Promise((resolve) => n2.send(new namiLib.Actions.Ping(), resolve)), 5000, 'no Ping reply');
  if (res.response !== 'Success') throw new Error(`Ping: Response ${res.response}`);
  n2.close();
  return 'manual: nami does not reconnect; a new Nami logged in';
}

// asterisk-manager reconnects by itself with keepConnected() (after 10 s,
// then 20 s...) and logs in again; actions wait until it has.
async function asteriskManager(ready) {
  const ami = Manager();
  Object.assign(ami.options, { port: cfg.port, host: cfg.host, username: cfg.user, password: cfg.secret, events: false });
  ami.on('error', () => {});
  const action = (req) => within(new Promise((resolve, reject) => {
    ami.action(req, (err, r) => (err ? reject(new Error(`${req.action}: ${err.message || err.response}`)) : resolve(r)));
  }), 5000, `no ${req.action} reply`);
  await within(new Promise((resolve, reject) => {
    ami.connect(cfg.port, cfg.host, () => ami.login((err) => (err ? reject(new Error(`login: ${err.message}`)) : resolve())));
    // As the library's README does, right after connecting: keepConnected
    // arms only while the socket is opening (isConnected() === false; it
    // is undefined before connect() and true once open).
    ami.keepConnected();
  }), 5000, 'no login');
  const lost = within(new Promise((resolve) => ami.once('close', resolve)), RECONNECT_MS, 'the connection was not lost');
  ready();
  await lost;
  const res = await retry(() => action({ action: 'ping' }), RECONNECT_MS, 'Ping after the reconnection');
  if (res.response !== 'Success') throw new Error(`Ping: Response ${res.response}`);
  ami.disconnect();
  return 'auto: asterisk-manager reconnected (keepConnected) and logged in again by itself';
}

// asterisk-ami-client reconnects by itself with {reconnect: true}.
async function asteriskAmiClient(ready) {
  const client = new AmiClient({ reconnect: true, maxAttemptsCount: 200, attemptsDelay: 250 });
  client.on('internalError', () => {});
  await within(client.connect(cfg.user, cfg.secret, { host: cfg.host, port: cfg.port }), 5000, 'no login');
  const lost = within(new Promise((resolve) => client.once('disconnect', resolve)), RECONNECT_MS, 'the connection was not lost');
  ready();
  await lost;
  const res = await retry(() => within(client.action({ Action: 'Ping' }, true), 3000, 'no Ping reply'),
    RECONNECT_MS, 'Ping after the reconnection');
  if (res.Response !== 'Success') throw new Error(`Ping: Response ${res.Response}`);
  client.disconnect();
  return 'auto: asterisk-ami-client reconnected ({reconnect: true}) and logged in again by itself';
}

async function main() {
  const libs = { nami, 'asterisk-manager': asteriskManager, 'asterisk-ami-client': asteriskAmiClient };
  let failed = false;
  await Promise.all(Object.entries(libs).map(async ([name, fn]) => {
    try {
      const how = await fn(() => process.stdout.write(`READY ${name}\n`));
      process.stdout.write(`PASS ${name} reconnect: ${how}\n`);
    } catch (err) {
      failed = true;
      process.stdout.write(`FAIL ${name} reconnect: ${err && err.message}\n`);
    }
  }));
  process.exit(failed ? 1 : 0);
}

process.on('unhandledRejection', () => {});
main();
