'use strict';
// asterisk-ami-client@1.1.5 against an AMI endpoint. On the wire it sends
// "Action: login" with ActionID __auth_<ms>__ as soon as TCP connects,
// before the banner arrives, and numbers other actions --spec_<ms>. It
// hands the socket to a fresh parser after the Login reply, so events
// read together with that reply (FullyBooted…) are lost to it.
const AmiClient = require('asterisk-ami-client');
const { ORIGINATE, Run, waitFor, expect, expectListed, isOurChannel } = require('./lib/harness');

const LIB = 'asterisk-ami-client';

async function main() {
  const run = new Run(LIB);
  const { cfg } = run;
  const client = new AmiClient({ reconnect: false, keepAlive: false });
  const on = (name) => (fn) => {
    client.on(name, fn);
    return () => client.removeListener(name, fn);
  };
  client.on('internalError', (err) => run.debug(`internalError ${err && err.message}`));
  client.on('event', (ev) => run.debug(`event ${ev.Event} ${ev.ActionID || ''}`));
  client.on('response', (res) => run.debug(`response ${res.Response} ${res.Message || ''}`));
  let closed = false;
  client.on('disconnect', () => { closed = true; });

  const loggedIn = await run.flow('login', async () => {
    try {
      await client.connect(cfg.user, cfg.secret, { host: cfg.host, port: cfg.port });
    } catch (err) {
      throw new Error(`connect/login: ${err && err.message ? err.message : err}`);
    }
  });
  if (!loggedIn) return run.finish('login failed');

  await run.flow('ping', async () => {
    const res = await client.action({ Action: 'Ping' }, true);
    expect(res.Response === 'Success', `Ping: Response ${res.Response}, Message ${res.Message}`);
    expect(res.Ping === 'Pong', `Ping: no "Ping: Pong" header (got ${JSON.stringify(res.Ping)})`);
  });

  const newchannels = [];
  const collect = (ev) => newchannels.push(ev);
  client.on('Newchannel', collect);
  let originated = null;
  await run.flow('originate', async () => {
    const msg = {
      Action: 'Originate',
      Channel: ORIGINATE.channel,
      Application: ORIGINATE.application,
      Data: ORIGINATE.data,
      Async: 'true',
    };
    const orr = waitFor(on('OriginateResponse'), (ev) => msg.ActionID && ev.ActionID === msg.ActionID, 'OriginateResponse with our ActionID');
    orr.catch(() => {});
    const res = await client.action(msg, true);
    expect(res.Response === 'Success', `Originate: Response ${res.Response}, Message ${res.Message}`);
    const ev = await orr;
    expect(ev.Response === 'Success', `OriginateResponse: Response ${ev.Response}, Reason ${ev.Reason}`);
    originated = ev;
  });

  await run.flow('event', async () => {
    expect(originated, 'no OriginateResponse to correlate with');
    expect(isOurChannel(originated.Channel), `OriginateResponse Channel ${originated.Channel}`);
    expect(newchannels.some((e) => e.Channel === originated.Channel),
      `no Newchannel for ${originated.Channel} (saw ${newchannels.length} Newchannel events)`);
  });
  client.removeListener('Newchannel', collect);

  // No list helper: the list's events carry the action's ActionID, which
  // action() writes into the message object before sending it.
  await run.flow('list', async () => {
    const msg = { Action: 'CoreShowChannels' };
    const items = [];
    const done = waitFor(on('event'), (ev) => {
      if (!msg.ActionID || ev.ActionID !== msg.ActionID) return false;
      if (ev.Event === 'CoreShowChannel') items.push(ev);
      return ev.Event === 'CoreShowChannelsComplete';
    }, 'CoreShowChannelsComplete');
    done.catch(() => {});
    const res = await client.action(msg, true);
    expect(res.Response === 'Success', `CoreShowChannels: Response ${res.Response}, Message ${res.Message}`);
    expect(res.EventList === 'start', `CoreShowChannels: EventList ${JSON.stringify(res.EventList)}, want "start"`);
    const complete = await done;
    expect(String(items.length) === complete.ListItems, `ListItems ${complete.ListItems} but ${items.length} CoreShowChannel events`);
    expectListed(originated && originated.Channel, items.map((e) => e.Channel));
  });

  await run.flow('logoff', async () => {
    const gone = closed ? Promise.resolve() : waitFor(on('disconnect'), () => true, 'the server to close the connection');
    gone.catch(() => {});
    const res = await client.action({ Action: 'Logoff' }, true);
    expect(res.Response === 'Goodbye', `Logoff: Response ${res.Response}, Message ${res.Message}`);
    await gone;
  });

  run.na('md5', 'asterisk-ami-client logs in by itself in connect() with Username/Secret; it has no Challenge/MD5 login');
  run.finish();
}

main();
