'use strict';
// nami@0.7.2 against an AMI endpoint. On the wire nami sends a bogus
// "id: N" header before "Action:", numbers ActionIDs 0,1,2… per process,
// and takes its first socket read as the banner alone (it drops anything
// read together with the banner).
const namiLib = require('nami');
const { ORIGINATE, Run, waitFor, expect, expectListed, isOurChannel } = require('./lib/harness');

const LIB = 'nami';

async function main() {
  const run = new Run(LIB);
  const { cfg } = run;
  const quiet = (level) => (msg) => run.debug(`${level} ${typeof msg === 'string' ? msg : JSON.stringify(msg)}`);
  const nami = new namiLib.Nami({
    host: cfg.host,
    port: cfg.port,
    username: cfg.user,
    secret: cfg.secret,
    logger: { error: quiet('error'), warn: quiet('warn'), info: quiet('info'), debug: quiet('debug') },
  });
  const send = (action) => new Promise((resolve) => nami.send(action, resolve));
  const on = (name) => (fn) => {
    nami.on(name, fn);
    return () => nami.removeListener(name, fn);
  };
  let closed = false;
  nami.on('namiConnectionClose', () => { closed = true; });

  const loggedIn = await run.flow('login', () => new Promise((resolve, reject) => {
    nami.once('namiConnected', resolve);
    nami.once('namiLoginIncorrect', () => reject(new Error('namiLoginIncorrect: Login refused')));
    nami.once('namiInvalidPeer', (data) => reject(new Error(`namiInvalidPeer: first read was ${JSON.stringify(String(data).slice(0, 120))}`)));
    nami.once('namiConnectionError', (ev) => reject(new Error(`connection error: ${ev.error && ev.error.message}`)));
    nami.once('namiConnectionClose', () => reject(new Error('connection closed before the Login reply')));
    nami.open();
  }));
  if (!loggedIn) return run.finish('login failed');

  await run.flow('ping', async () => {
    const res = await send(new namiLib.Actions.Ping());
    expect(res.response === 'Success', `Ping: Response ${res.response}, Message ${res.message}`);
    expect(res.ping === 'Pong', `Ping: no "Ping: Pong" header (got ${JSON.stringify(res.ping)})`);
  });

  const newchannels = [];
  const collect = (ev) => newchannels.push(ev);
  nami.on('namiEventNewchannel', collect);
  let originated = null;
  await run.flow('originate', async () => {
    const action = new namiLib.Actions.Originate();
    action.Channel = ORIGINATE.channel;
    action.Application = ORIGINATE.application;
    action.Data = ORIGINATE.data;
    action.Async = 'true';
    const id = String(action.ActionID);
    const orr = waitFor(on('namiEventOriginateResponse'), (ev) => ev.actionid === id, `OriginateResponse with ActionID ${id}`);
    orr.catch(() => {});
    const res = await send(action);
    expect(res.response === 'Success', `Originate: Response ${res.response}, Message ${res.message}`);
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
  nami.removeListener('namiEventNewchannel', collect);

  // nami collects a list itself: a Response whose Message mentions
  // "follow" is held, and the events with its ActionID are appended until
  // one whose name or EventList contains "Complete".
  await run.flow('list', async () => {
    const res = await send(new namiLib.Actions.CoreShowChannels());
    expect(res.response === 'Success', `CoreShowChannels: Response ${res.response}, Message ${res.message}`);
    expect(res.eventlist === 'start', `CoreShowChannels: EventList ${JSON.stringify(res.eventlist)}, want "start"`);
    const last = res.events[res.events.length - 1];
    expect(last && last.event === 'CoreShowChannelsComplete', `list did not end with CoreShowChannelsComplete (got ${last && last.event})`);
    const items = res.events.filter((e) => e.event === 'CoreShowChannel');
    expect(String(items.length) === last.listitems, `ListItems ${last.listitems} but ${items.length} CoreShowChannel events`);
    expectListed(originated && originated.channel, items.map((e) => e.channel));
  });

  // nami.close() sends Logoff but does not wait for it: send it by hand to
  // see Asterisk's Goodbye and the close that follows.
  await run.flow('logoff', async () => {
    const gone = closed ? Promise.resolve() : waitFor(on('namiConnectionClose'), () => true, 'the server to close the connection');
    gone.catch(() => {});
    const res = await send(new namiLib.Actions.Logoff());
    expect(res.response === 'Goodbye', `Logoff: Response ${res.response}, Message ${res.message}`);
    await gone;
  });

  run.na('md5', 'nami logs in by itself at open() with Username/Secret; it has no Challenge/MD5 login');
  run.finish();
}

main();
