'use strict';
// asterisk-manager@0.2.0 against an AMI endpoint. On the wire it sends
// Login as soon as TCP connects (it does not wait for the banner), with a
// lower-case "Action: login", "Event: on" (singular, so Asterisk ignores
// it) and headers sorted alphabetically; ActionIDs are Date.now().
const Manager = require('asterisk-manager');
const { ORIGINATE, Run, waitFor, expect, expectListed, isOurChannel } = require('./lib/harness');

const LIB = 'asterisk-manager';

async function main() {
  const run = new Run(LIB);
  const { cfg } = run;
  // Built without a port so that the login callback is ours: the
  // five-argument constructor logs in too, but drops the login's error.
  const ami = Manager();
  Object.assign(ami.options, {
    port: cfg.port, host: cfg.host, username: cfg.user, password: cfg.secret, events: true,
  });
  const action = (req) => new Promise((resolve, reject) => {
    ami.action(req, (err, res) => {
      if (err) reject(new Error(`${req.action}: Response ${err.response}, Message ${err.message}`));
      else resolve(res);
    });
  });
  const on = (name) => (fn) => {
    ami.on(name, fn);
    return () => ami.removeListener(name, fn);
  };
  ami.on('error', (err) => run.debug(`error ${err && err.message}`));
  ami.on('managerevent', (ev) => run.debug(`event ${ev.event} ${ev.actionid || ''}`));
  ami.on('response', (res) => run.debug(`response ${res.response} ${res.actionid || ''} ${res.message || ''}`));
  let closed = false;
  ami.on('close', () => { closed = true; });

  const loggedIn = await run.flow('login', () => new Promise((resolve, reject) => {
    ami.once('close', () => reject(new Error('connection closed before the Login reply')));
    ami.connect(cfg.port, cfg.host, () => {
      ami.login((err) => {
        if (err) reject(new Error(`Login: Response ${err.response}, Message ${err.message}`));
        else resolve();
      });
    });
  }));
  if (!loggedIn) return run.finish('login failed');

  await run.flow('ping', async () => {
    const res = await action({ action: 'ping' });
    expect(res.response === 'Success', `Ping: Response ${res.response}`);
    expect(res.ping === 'Pong', `Ping: no "Ping: Pong" header (got ${JSON.stringify(res.ping)})`);
  });

  const newchannels = [];
  const collect = (ev) => newchannels.push(ev);
  ami.on('newchannel', collect);
  let originated = null;
  await run.flow('originate', async () => {
    let id;
    const orr = waitFor(on('originateresponse'), (ev) => ev.actionid === id, 'OriginateResponse with our ActionID');
    orr.catch(() => {});
    const res = await new Promise((resolve, reject) => {
      id = ami.action({
        action: 'originate',
        channel: ORIGINATE.channel,
        application: ORIGINATE.application,
        data: ORIGINATE.data,
        async: 'true',
      }, (err, r) => (err ? reject(new Error(`Originate: Response ${err.response}, Message ${err.message}`)) : resolve(r)));
    });
    expect(res.response === 'Success', `Originate: Response ${res.response}`);
    const ev = await orr;
    expect(ev.response === 'Success', `OriginateResponse: Response ${ev.response}, Reason ${ev.reason}`);
    originated = ev;
  });

  await run.flow('event', async () => {
    expect(originated, 'no OriginateResponse to correlate with');
    expect(isOurChannel(originated.channel), `OriginateResponse Channel ${originated.channel}`);
    expect(newchannels.some((e) => e.channel === originated.channel),
      `no Newchannel for ${originated.channel} (saw ${newchannels.length} Newchannel events)`);
  });
  ami.removeListener('newchannel', collect);

  // No list helper: the list's events carry the action's ActionID and
  // arrive as 'managerevent'.
  await run.flow('list', async () => {
    const items = [];
    let id;
    const done = waitFor(on('managerevent'), (ev) => {
      if (ev.actionid !== id) return false;
      if (ev.event === 'CoreShowChannel') items.push(ev);
      return ev.event === 'CoreShowChannelsComplete';
    }, 'CoreShowChannelsComplete');
    done.catch(() => {});
    const res = await new Promise((resolve, reject) => {
      id = ami.action({ action: 'CoreShowChannels' }, (err, r) => (err ? reject(new Error(`CoreShowChannels: ${err.message}`)) : resolve(r)));
    });
    expect(res.response === 'Success', `CoreShowChannels: Response ${res.response}`);
    expect(res.eventlist === 'start', `CoreShowChannels: EventList ${JSON.stringify(res.eventlist)}, want "start"`);
    const complete = await done;
    expect(String(items.length) === complete.listitems, `ListItems ${complete.listitems} but ${items.length} CoreShowChannel events`);
    expectListed(originated && originated.channel, items.map((e) => e.channel));
  });

  await run.flow('logoff', async () => {
    const gone = closed ? Promise.resolve() : waitFor(on('close'), () => true, 'the server to close the connection');
    gone.catch(() => {});
    const res = await action({ action: 'logoff' });
    expect(res.response === 'Goodbye', `Logoff: Response ${res.response}, Message ${res.message}`);
    await gone;
    ami.disconnect();
  });

  run.na('md5', 'asterisk-manager holds every action but login until logged in (ManagerAction), so Challenge cannot come first; its login() sends Secret only');
  run.finish();
}

main();
