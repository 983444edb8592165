'use strict';
// Shared plumbing for the per-library conformance scripts: the endpoint
// from the environment, the fixed list of flows, one result line per flow
// and a hard timeout. The scripts themselves only talk to their library.
//
// Environment:
//   AMI_HOST, AMI_PORT      endpoint (default 127.0.0.1:5038)
//   AMI_USER, AMI_SECRET    account (default admin / adminpass)
//   AMI_TIMEOUT_MS          hard timeout of one script (default 20000)
//   AMI_DEBUG=1             print the library's own log to stderr

const FLOWS = ['login', 'ping', 'list', 'originate', 'event', 'logoff', 'md5'];

// The call every script originates: the lab's extension 100 answers, runs
// 1 s and hangs up; the ;1 leg runs Wait(1).
const ORIGINATE = {
  channel: 'Local/100@lab',
  application: 'Wait',
  data: '1',
};

const FLOW_TIMEOUT_MS = 6000;

function config() {
  const env = process.env;
  return {
    host: env.AMI_HOST || '127.0.0.1',
    port: Number(env.AMI_PORT || 5038),
    user: env.AMI_USER || 'admin',
    secret: env.AMI_SECRET || 'adminpass',
    timeoutMs: Number(env.AMI_TIMEOUT_MS || 20000),
    debug: env.AMI_DEBUG === '1',
  };
}

// Run records the outcome of each flow of one library and prints
// "PASS <library> <flow>", "FAIL <library> <flow>: <detail>" or
// "N/A <library> <flow>: <reason>" once per flow.
class Run {
  constructor(library) {
    this.library = library;
    this.cfg = config();
    this.results = new Map();
    this.log = [];
    this.hard = setTimeout(() => {
      this.finish(`hard timeout of ${this.cfg.timeoutMs} ms`);
    }, this.cfg.timeoutMs);
    process.on('uncaughtException', (err) => {
      this.finish(`uncaught exception: ${err && err.stack ? err.stack.split('\n')[0] : err}`);
    });
    process.on('unhandledRejection', (err) => {
      this.finish(`unhandled rejection: ${err && err.message ? err.message : err}`);
    });
  }

  debug(line) {
    this.log.push(String(line).replace(/\s+/g, ' '));
    if (this.cfg.debug) process.stderr.write(`[${this.library}] ${line}\n`);
  }

  record(flow, verdict, detail) {
    if (this.results.has(flow)) return;
    this.results.set(flow, verdict);
    const tail = detail ? `: ${String(detail).replace(/\s+/g, ' ').slice(0, 300)}` : '';
    process.stdout.write(`${verdict} ${this.library} ${flow}${tail}\n`);
  }

  na(flow, reason) {
    this.record(flow, 'N/A', reason);
  }

  // flow runs fn under a per-flow timeout and records PASS or FAIL. It
  // returns whether the flow passed; it never throws.
  async flow(name, fn, timeoutMs = FLOW_TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([Promise.resolve().then(fn), timeout]);
      this.record(name, 'PASS');
      return true;
    } catch (err) {
      this.record(name, 'FAIL', err && err.message ? err.message : err);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  // finish marks every flow not yet reported as failed with why, and
  // exits: 0 only when no flow failed.
  finish(why) {
    clearTimeout(this.hard);
    for (const f of FLOWS) {
      if (!this.results.has(f)) this.record(f, 'FAIL', `not run: ${why || 'script ended early'}`);
    }
    const failed = [...this.results.values()].some((v) => v === 'FAIL');
    if (failed && !this.cfg.debug && this.log.length) {
      process.stderr.write(`[${this.library}] last library log lines:\n`);
      for (const l of this.log.slice(-20)) process.stderr.write(`  ${l.slice(0, 400)}\n`);
    }
    process.exit(failed ? 1 : 0);
  }
}

// waitFor resolves with the first value for which test(value) is true,
// among the values passed to the listener subscribe installs; subscribe
// returns a function that removes it.
function waitFor(subscribe, test, what, timeoutMs = FLOW_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    let unsubscribe = () => {};
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    unsubscribe = subscribe((v) => {
      let ok = false;
      try {
        ok = test(v);
      } catch (err) {
        clearTimeout(timer);
        unsubscribe();
        reject(err);
        return;
      }
      if (ok) {
        clearTimeout(timer);
        unsubscribe();
        resolve(v);
      }
    });
  });
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

// isOurNewchannel tells whether a Newchannel event belongs to the call
// the scripts originate (Local/100@lab-XXXXXXXX;1 or ;2).
function isOurChannel(name) {
  return typeof name === 'string' && name.startsWith(`${ORIGINATE.channel}-`);
}

// expectListed throws unless the originated call (either leg of
// originated, a Local channel name ending in ;1 or ;2) is among names: the
// call lasts about 1 s after its OriginateResponse, so a list taken right
// then shows it. Without an originated call there is nothing to check.
function expectListed(originated, names) {
  if (!originated) return;
  const base = originated.replace(/;[12]$/, '');
  expect(names.includes(`${base};1`) || names.includes(`${base};2`),
    `the list of ${names.length} channels does not show the originated call ${base}`);
}

module.exports = { FLOWS, ORIGINATE, Run, waitFor, expect, expectListed, isOurChannel };
