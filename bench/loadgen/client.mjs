// mastok's load generator: simulated participants and supervisors over WebSockets (Node + ws).
//
//   node bench/loadgen/client.mjs JOB.json
//
// JOB.json says what to do (`job.kind`), the harness (bench/) writes it and reads `job.out`.
// Kinds:
//   join    participants doing the whole join flow (State, Land, Resume+Consent, Agree,
//           Instructions, wait, Starting, Disconnect), arriving in a ramp, at a constant rate
//           or in a closed loop; one record per participant.
//   echo    the same client doing the same socket work against an echo server: connect,
//           3 request/response frames, the server closes.
//   hold    participants who join and stay (Instructions, then idle); driven by commands on
//           stdin, one JSON line each ({"cmd": "open", "count": N} / "close"), answers on stdout.
//   probe   new participants one after another: the time until Consent.
//   fanout  supervisors connected to one campaign, participants joining it one after the
//           other: the delay from each Agree to every supervisor's JoiningSize.
//   supervise  supervisors who connect to one campaign and read every frame; driven on stdin
//           ({"cmd": "open", "count": N} / "status" / "close"), answers on stdout.
//   restart participants waiting across a server restart, driven on stdin: "wait" places them
//           (in each campaign a full pool with one member away), "resume" brings them all
//           back with their tokens and waits for Starting.
//   failover participants waiting on a leader that is killed, driven on stdin: "wait" places
//           them (job.counts[c] in campaign c, pools that cannot start), each then comes back
//           by itself when its socket closes, trying job.urls in turn; "collect" waits until
//           all are back (or gave up) and reports; "fill" fills every pool through the last
//           URL and waits for Starting; "close".
//
// Every loop is bounded in count and time (job.deadline_s); every socket is closed at the end;
// SIGINT/SIGTERM close everything and exit. Times are performance.now() milliseconds.

import { readFileSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import WebSocket from "ws";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
// Milliseconds since the epoch, high resolution: comparable across client processes.
const now = () => performance.timeOrigin + performance.now();
const open = new Set(); // every live socket, closed on exit
const started = now();
const deadlineMs = (job.deadline_s ?? 300) * 1000;

function shutdown(code) {
  for (const ws of open) ws.terminate();
  process.exit(code);
}
process.on("SIGINT", () => shutdown(130));
process.on("SIGTERM", () => shutdown(143));
const watchdog = setTimeout(() => {
  process.stderr.write(`loadgen: deadline of ${job.deadline_s} s reached, giving up\n`);
  shutdown(3);
}, deadlineMs);
watchdog.unref();

let localIndex = 0;
function socket(url, headers = {}, handshakeMs = (job.flow_timeout_s ?? 60) * 1000) {
  // Spread client sockets over several loopback source addresses: more ephemeral ports.
  const addresses = job.local_addresses ?? ["127.0.0.1"];
  const localAddress = addresses[localIndex++ % addresses.length];
  const options = {
    headers,
    localAddress,
    handshakeTimeout: handshakeMs,
    // A browser offers permessage-deflate; so do we (ws's default, said out loud).
    perMessageDeflate: job.deflate ?? true,
  };
  if (job.origin) options.origin = job.origin;
  const ws = new WebSocket(url, options);
  open.add(ws);
  ws.on("close", () => open.delete(ws));
  return ws;
}

const frame = (kind, payload) =>
  JSON.stringify(payload === undefined ? { kind } : { kind, payload });

function fingerprint(i) {
  // What a browser fingerprint looks like: a hex digest, one per participant.
  const base = `${job.run_id ?? "run"}-${i}-${Math.random()}`;
  let h1 = 0x811c9dc5,
    h2 = 0x01000193;
  for (let k = 0; k < base.length; k++) {
    h1 = Math.imul(h1 ^ base.charCodeAt(k), 16777619) >>> 0;
    h2 = Math.imul(h2 ^ base.charCodeAt(k), 2246822519) >>> 0;
  }
  return (h1.toString(16) + h2.toString(16)).padStart(16, "0") + i.toString(16);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- participants -------------------------------------------------------------------------

// One participant through the join flow. `stay`: keep the socket open once waiting (hold).
// `stopAt`: "consent" ends the flow at Consent (probe). `resume`: come back with this token
// (`Resume` instead of `Land`). `url`: the server's (job.url unless given); `timeoutMs`: the
// flow's bound (job.flow_timeout_s unless given).
function participant(
  i,
  slug,
  { stay = false, stopAt = null, think = 0, resume = null, url = job.url, timeoutMs = null } = {},
) {
  return new Promise((resolve) => {
    const r = { i, slug, t0: now() };
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const bound = timeoutMs ?? (job.flow_timeout_s ?? 60) * 1000;
    const ws = socket(`${url}?slug=${encodeURIComponent(slug)}`, {}, bound);
    r.ws = ws;
    const timer = setTimeout(() => {
      r.err = r.err ?? `timeout after ${r.last ?? "nothing"}`;
      ws.terminate();
      finish();
    }, bound);
    ws.on("open", () => {
      r.open = now();
    });
    ws.on("message", (data) => {
      const t = now();
      let f;
      try {
        f = JSON.parse(data);
      } catch {
        r.err = "not JSON";
        return;
      }
      r.last = f.kind;
      switch (f.kind) {
        case "State":
          r.state = t;
          if (f.payload !== "Running" && f.payload !== "Busy") r.err = `State ${f.payload}`;
          if (resume) {
            ws.send(frame("Resume", resume));
            r.resumed = now();
          } else {
            ws.send(frame("Land", fingerprint(i)));
            r.land = now();
          }
          break;
        case "Resume":
          r.resume = t;
          r.token = f.payload;
          break;
        case "Consent":
          r.consent = t;
          if (stopAt === "consent") {
            ws.close(1000);
            break;
          }
          if (think > 0) {
            setTimeout(() => {
              if (ws.readyState === WebSocket.OPEN) {
                ws.send(frame("Agree"));
                r.agree = now();
              }
            }, think);
          } else {
            ws.send(frame("Agree"));
            r.agree = now();
          }
          break;
        case "Instructions":
          r.instructions = t;
          if (stay) finish();
          break;
        case "Pending":
          r.pending = t;
          if (stay) finish();
          break;
        case "JoiningSize":
          r.joining = f.payload;
          break;
        case "Waiting": // the time waited (issue 11): pages that know only Mastok's frames ignore it
          break;
        case "Starting":
          r.starting = t;
          r.url = f.payload;
          break;
        case "Disconnect":
          r.disconnect = t;
          r.reason = f.payload;
          break;
        case "Error":
          r.err = `Error ${f.payload}`;
          break;
        default:
          r.err = `unexpected ${f.kind}`;
      }
    });
    ws.on("error", (e) => {
      r.err = r.err ?? `socket: ${e.message}`;
    });
    ws.on("close", (code) => {
      r.closed = now();
      r.code = code;
      finish();
    });
  });
}

// A socket that opens and says nothing (the idle reference for memory).
function idle(i) {
  return new Promise((resolve) => {
    const r = { i, t0: now() };
    const ws = socket(job.url);
    r.ws = ws;
    const timer = setTimeout(() => {
      r.err = "timeout";
      ws.terminate();
      resolve(r);
    }, (job.flow_timeout_s ?? 60) * 1000);
    ws.on("open", () => {
      r.open = now();
      r.instructions = r.open;
      clearTimeout(timer);
      resolve(r);
    });
    ws.on("error", (e) => {
      r.err = r.err ?? `socket: ${e.message}`;
    });
    ws.on("close", (code) => {
      r.code = code;
      clearTimeout(timer);
      resolve(r);
    });
  });
}

function echoFlow(i, url) {
  return new Promise((resolve) => {
    const r = { i, t0: now(), rtt: [] };
    let sent = 0;
    let sentAt = 0;
    const ws = socket(url);
    const timer = setTimeout(
      () => {
        r.err = "timeout";
        ws.terminate();
      },
      (job.flow_timeout_s ?? 60) * 1000,
    );
    const send = () => {
      sent += 1;
      ws.send(frame(sent === 1 ? "Land" : "Agree", sent === 1 ? fingerprint(i) : undefined));
      sentAt = now();
    };
    ws.on("open", () => {
      r.open = now();
      send();
    });
    ws.on("message", () => {
      r.last = now();
      r.rtt.push(r.last - sentAt);
      if (sent < 3) send();
    });
    ws.on("error", (e) => {
      r.err = r.err ?? `socket: ${e.message}`;
    });
    ws.on("close", (code) => {
      r.closed = now();
      r.code = code;
      if (sent < 3 && !r.err) r.err = `closed after ${sent} frames`;
      clearTimeout(timer);
      resolve(r);
    });
  });
}

// Arrival schedules: when participant i (of n) starts, in ms from the start.
function arrivalTimes(arrival, n) {
  if (arrival.mode === "ramp") {
    // The arrival rate rises linearly from 0 to 2n/D over D seconds: A(t) = n (t/D)^2.
    const d = arrival.seconds * 1000;
    return Array.from({ length: n }, (_, i) => d * Math.sqrt((i + 0.5) / n));
  }
  if (arrival.mode === "rate") {
    return Array.from({ length: n }, (_, i) => (i * 1000) / arrival.rate);
  }
  throw new Error(`unknown arrival mode ${arrival.mode}`);
}

// Start `flow(i)` for i in 0..n-1 on schedule (open loop) or `concurrency` at a time (closed).
// With several client processes (job.clients > 1), this one runs every participant i with
// i % clients == client: the schedule is the same, the work is shared.
async function drive(n, arrival, flow, t0 = now()) {
  const results = new Array(n);
  const clients = job.clients ?? 1;
  const mine = (i) => i % clients === (job.client ?? 0);
  if (arrival.mode === "closed") {
    let next = job.client ?? 0;
    const worker = async () => {
      while (next < n && now() - started < deadlineMs) {
        const i = next;
        next += clients;
        results[i] = await flow(i);
      }
    };
    const workers = Math.max(1, Math.round(Math.min(arrival.concurrency, n) / clients));
    await Promise.all(Array.from({ length: workers }, worker));
    return results;
  }
  const times = arrivalTimes(arrival, n);
  const pending = [];
  let i = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const elapsed = now() - t0;
      while (i < n && times[i] <= elapsed) {
        const k = i++;
        if (mine(k)) pending.push(flow(k).then((r) => (results[k] = r)));
      }
      if (i < n) setTimeout(tick, Math.max(0, Math.min(5, times[i] - (now() - t0))));
      else resolve();
    };
    tick();
  });
  await Promise.all(pending);
  return results;
}

function strip(r) {
  // The socket is not data.
  const { ws: _ws, ...rest } = r;
  return rest;
}

function cpuUsage() {
  const u = process.cpuUsage();
  return { user_ms: u.user / 1000, system_ms: u.system / 1000 };
}

function write(result) {
  writeFileSync(
    job.out,
    JSON.stringify({ kind: job.kind, cpu: cpuUsage(), wall_ms: now() - started, ...result }),
  );
}

// -- jobs -------------------------------------------------------------------------------------

// job.t0: a common start (epoch ms) for several client processes sharing one schedule.
const startAt = () => Math.max(now(), job.t0 ?? 0);

async function joinJob() {
  const slugs = job.slugs;
  const t0 = startAt();
  const records = await drive(
    job.count,
    job.arrival,
    // Participants are dealt to campaigns a pool at a time (job.group of them), so every
    // campaign gets whole pools.
    (i) =>
      participant(i, slugs[Math.floor(i / (job.group ?? 1)) % slugs.length], {
        think: job.think_ms ?? 0,
      }),
    t0,
  );
  write({ t0, records: records.filter(Boolean).map(strip) });
}

async function echoJob() {
  const t0 = startAt();
  const records = await drive(job.count, job.arrival, (i) => echoFlow(i, job.url), t0);
  write({ t0, records: records.filter(Boolean) });
}

async function probeJob() {
  const records = [];
  for (let i = 0; i < job.count && now() - started < deadlineMs; i++) {
    const r = await participant(job.first_index + i, job.slugs[i % job.slugs.length], {
      stopAt: "consent",
    });
    records.push(strip(r));
    await sleep(job.gap_ms ?? 20);
  }
  write({ records });
}

async function holdJob() {
  // Participants who join and stay. Commands on stdin, one JSON answer line each on stdout.
  const held = [];
  let index = job.first_index ?? 0;
  const answer = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.cmd === "open") {
      const t0 = now();
      const slugOf = (k) => job.slugs[Math.floor(k / job.per_campaign)];
      const first = index;
      index += cmd.count;
      const records = await drive(
        cmd.count,
        { mode: "closed", concurrency: cmd.concurrency ?? 100 },
        (k) => (job.idle ? idle(first + k) : participant(first + k, slugOf(first + k), { stay: true })),
      );
      let ok = 0;
      const errors = {};
      for (const r of records) {
        if (r && !r.err && (r.instructions || r.pending) && r.ws.readyState === WebSocket.OPEN) {
          ok += 1;
          held.push(r.ws);
        } else if (r) {
          const key = r.err ?? `closed ${r.code}`;
          errors[key] = (errors[key] ?? 0) + 1;
          r.ws.terminate();
        }
      }
      answer({
        opened: ok,
        failed: cmd.count - ok,
        errors,
        seconds: (now() - t0) / 1000,
        pending: records.filter((r) => r && r.pending).length,
      });
    } else if (cmd.cmd === "count") {
      answer({ open: held.filter((ws) => ws.readyState === WebSocket.OPEN).length });
    } else if (cmd.cmd === "close") {
      for (const ws of held) ws.close(1000);
      const deadline = now() + 10000;
      while (open.size && now() < deadline) await sleep(50);
      answer({ closed: held.length, left: open.size, cpu: cpuUsage() });
      break;
    }
  }
  shutdown(0);
}

async function fanoutJob() {
  // Supervisors first; each must have its initial State/JoiningSize/PendingSize.
  const auth = { Authorization: `Basic ${Buffer.from(job.credentials).toString("base64")}` };
  const supervisors = [];
  for (let s = 0; s < job.supervisors; s++) {
    const sup = { frames: [], waiters: [] };
    sup.ws = socket(job.supervise_url, auth);
    sup.ws.on("message", (data) => {
      const t = now();
      const f = JSON.parse(data);
      if (f.kind !== "JoiningSize") return;
      for (const w of sup.waiters) if (w.payload === f.payload && w.after <= t) w.resolve(t);
      sup.waiters = sup.waiters.filter((w) => !(w.payload === f.payload && w.after <= t));
    });
    await new Promise((resolve, reject) => {
      sup.ws.once("open", resolve);
      sup.ws.once("error", reject);
    });
    supervisors.push(sup);
  }
  await sleep(200);
  const seen = (sup, payload, after) =>
    new Promise((resolve) => {
      const w = { payload, after, resolve };
      sup.waiters.push(w);
      setTimeout(() => resolve(null), (job.flow_timeout_s ?? 60) * 1000);
    });
  const changes = [];
  const flows = [];
  for (let k = 0; k < job.changes && now() - started < deadlineMs; k++) {
    // A participant up to Consent, then its Agree is the pool change we time.
    // The Agree that fills a pool sets it aside while its session is created: supervisors
    // see the joining pool empty (docs/protocol.md, Pools).
    const filled = (k % job.per_session) + 1;
    const expected = `${filled === job.per_session ? 0 : filled}/${job.per_session}`;
    const ws = socket(`${job.url}?slug=${encodeURIComponent(job.slug)}`);
    const consent = new Promise((resolve) => {
      ws.on("message", (data) => {
        const f = JSON.parse(data);
        if (f.kind === "State") ws.send(frame("Land", fingerprint(k)));
        else if (f.kind === "Consent") resolve();
      });
      ws.on("close", resolve);
    });
    flows.push(new Promise((resolve) => ws.on("close", resolve)));
    await consent;
    const t = now();
    const waits = supervisors.map((sup) => seen(sup, expected, t));
    ws.send(frame("Agree"));
    const times = await Promise.all(waits);
    const missing = times.filter((x) => x === null).length;
    const got = times.filter((x) => x !== null);
    changes.push({
      k,
      expected,
      first_ms: Math.min(...got) - t,
      last_ms: Math.max(...got) - t,
      missing,
    });
    if (job.gap_ms) await sleep(job.gap_ms);
  }
  for (const sup of supervisors) sup.ws.close(1000);
  await Promise.race([Promise.all(flows), sleep(5000)]);
  write({ changes });
}

// Commands on stdin, one JSON line each; `handle(cmd)` answers each (one JSON line on stdout)
// until it returns false.
async function commands(handle) {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const [more, answer] = await handle(JSON.parse(line));
    process.stdout.write(JSON.stringify(answer) + "\n");
    if (!more) break;
  }
}

// One supervisor: connected with the admin's credentials, reading every frame; resolves once it
// has the campaign's whole view (State, JoiningSize, PendingSize) or failed.
function supervisor(k, auth) {
  return new Promise((resolve) => {
    const s = { k, t0: now(), frames: 0, last: {} };
    const ws = socket(job.supervise_url, auth);
    s.ws = ws;
    const timer = setTimeout(() => {
      s.err = "timeout before the whole view";
      ws.terminate();
      resolve(s);
    }, (job.flow_timeout_s ?? 60) * 1000);
    const whole = () => ["State", "JoiningSize", "PendingSize"].every((kind) => kind in s.last);
    ws.on("message", (data) => {
      const f = JSON.parse(data);
      s.frames += 1;
      s.last[f.kind] = f.payload;
      if (s.ready === undefined && whole()) {
        s.ready = now();
        clearTimeout(timer);
        resolve(s);
      }
    });
    ws.on("error", (e) => {
      s.err = s.err ?? `socket: ${e.message}`;
    });
    ws.on("close", (code) => {
      s.code = code;
      clearTimeout(timer);
      resolve(s);
    });
  });
}

function tally(values) {
  const out = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

async function superviseJob() {
  const auth = { Authorization: `Basic ${Buffer.from(job.credentials).toString("base64")}` };
  const sups = [];
  await commands(async (cmd) => {
    if (cmd.cmd === "open") {
      const t0 = now();
      const opened = await drive(
        cmd.count,
        { mode: "closed", concurrency: cmd.concurrency ?? 50 },
        (k) => supervisor(sups.length + k, auth),
      );
      const ok = opened.filter((s) => s.ready !== undefined && !s.err);
      sups.push(...ok);
      const errors = tally(opened.filter((s) => !ok.includes(s)).map((s) => s.err ?? `closed ${s.code}`));
      return [true, { opened: ok.length, failed: cmd.count - ok.length, errors, seconds: (now() - t0) / 1000 }];
    }
    if (cmd.cmd === "status") {
      const live = sups.filter((s) => s.ws.readyState === WebSocket.OPEN);
      return [
        true,
        {
          open: live.length,
          frames: sups.reduce((n, s) => n + s.frames, 0),
          joining: tally(live.map((s) => s.last.JoiningSize)),
          pending: tally(live.map((s) => s.last.PendingSize)),
          state: tally(live.map((s) => s.last.State)),
          cpu: cpuUsage(),
        },
      ];
    }
    for (const s of sups) s.ws.close(1000);
    const deadline = now() + 10000;
    while (open.size && now() < deadline) await sleep(50);
    return [false, { closed: sups.length, left: open.size, cpu: cpuUsage() }];
  });
  shutdown(0);
}

// A campaign's pool across a restart: `per_session` members agree, the first of them drops its
// socket before the others agree (it keeps its place: away), so the pool is full but not with
// members present and no session starts. After the restart they all come back.
async function poolWithOneAway(c, slug) {
  const first = c * job.per_session;
  const away = await participant(first, slug, { stay: true });
  if (away.ws.readyState === WebSocket.OPEN) {
    const closed = new Promise((resolve) => away.ws.once("close", resolve));
    away.ws.close(1000);
    await closed;
  }
  await sleep(50);
  const present = await Promise.all(
    Array.from({ length: job.per_session - 1 }, (_, k) =>
      participant(first + 1 + k, slug, { stay: true }),
    ),
  );
  return [away, ...present];
}

async function restartJob() {
  let members = [];
  await commands(async (cmd) => {
    if (cmd.cmd === "wait") {
      const t0 = now();
      const pools = await Promise.all(job.slugs.map((slug, c) => poolWithOneAway(c, slug)));
      members = pools.flat();
      await sleep(300); // a session that should not start would have by now
      const placed = members.filter((r) => r.token && r.instructions && !r.err && !r.starting);
      const errors = tally(members.filter((r) => !placed.includes(r)).map((r) => r.err ?? r.last));
      const started = members.filter((r) => r.starting).length;
      return [true, { placed: placed.length, started, errors, seconds: (now() - t0) / 1000 }];
    }
    // "resume": everyone back with its token, at once; each waits for its Starting.
    const t0 = now();
    const back = await Promise.all(
      members.map((r) => participant(r.i, r.slug, { resume: r.token })),
    );
    return [false, { t0, records: back.map(strip) }];
  });
  shutdown(0);
}

// -- failover: participants following the rooms from a killed leader to its standby ------------

// Every participant socket closed by the server (the leader killed) comes back by itself, with
// its token, trying job.urls in turn as a page behind a proxy that follows the leader would:
// a refused connection, a 503 or a socket closed before the participant's step is back moves
// on to the next address, after job.retry_ms (jittered) once every address failed. Bounded by
// job.retry_attempts attempts and job.resume_within_s seconds from the drop.
function comeBack(m) {
  const urls = job.urls;
  const b = { dropped: now(), attempts: 0, refused: {} };
  m.back = b;
  const until = b.dropped + (job.resume_within_s ?? 60) * 1000;
  m.returned = (async () => {
    let k = 0;
    while (b.attempts < (job.retry_attempts ?? 200) && now() < until) {
      b.attempts += 1;
      const r = await participant(m.i, m.slug, {
        resume: m.token,
        stay: true,
        url: urls[k % urls.length],
        timeoutMs: Math.min(until - now(), (job.attempt_timeout_s ?? 10) * 1000),
      });
      if (r.instructions || r.pending) {
        Object.assign(b, { ...r, via: k % urls.length });
        m.socket = r;
        return;
      }
      if (r.resume || r.disconnect || (r.err && r.err.startsWith("Error"))) {
        Object.assign(b, r); // the server answered, and not with the place: no retrying that
        return;
      }
      const why = r.open ? `closed ${r.code} after ${r.last ?? "nothing"}` : r.err;
      b.refused[why] = (b.refused[why] ?? 0) + 1;
      k += 1;
      if (k % urls.length === 0) await sleep((job.retry_ms ?? 250) * (0.5 + Math.random()));
    }
    b.err = b.err ?? `not back after ${b.attempts} attempts`;
  })();
}

// Placed participants: in each campaign job.counts[c] who agreed and wait in a pool that cannot
// start (per_session is larger); each comes back by itself if its socket is closed.
async function place(placed) {
  const slots = job.slugs.flatMap((slug, c) => Array.from({ length: job.counts[c] }, () => slug));
  const records = await drive(
    slots.length,
    { mode: "closed", concurrency: job.concurrency ?? 100 },
    (i) => participant(i, slots[i], { stay: true, url: job.urls[0] }),
  );
  for (const r of records) {
    placed.push(r);
    if (r.token && r.instructions && !r.err) r.ws.once("close", () => comeBack(r));
  }
}

// Waits (a bounded poll) until `done(r)` holds for every record or `seconds` passed.
async function until(records, done, seconds) {
  const deadline = now() + seconds * 1000;
  while (now() < deadline && !records.every(done)) await sleep(20);
}

// A placed participant's record: its placing, its drop and return (the attempt that got its
// step back: `t0` when it started, `resume` its Resume frame, `token_back` the token in it).
function backRecord(m) {
  const b = m.back ?? {};
  return {
    i: m.i,
    slug: m.slug,
    token: m.token,
    placed: m.instructions ?? null,
    joining_before: m.joining ?? null,
    dropped: b.dropped ?? null,
    attempts: b.attempts ?? 0,
    refused: b.refused ?? {},
    via: b.via ?? null,
    t0: b.t0 ?? null,
    opened: b.open ?? null,
    resume: b.resume ?? null,
    token_back: b.token ?? null,
    instructions: b.instructions ?? null,
    pending: b.pending ?? null,
    consent: b.consent ?? null,
    joining: m.socket?.joining ?? b.joining ?? null, // JoiningSize follows Instructions
    err: b.err ?? null,
    starting: m.socket?.starting ?? null,
    url: m.socket?.url ?? null,
    err_after: m.socket?.err ?? null,
  };
}

async function failoverJob() {
  const placed = [];
  const newcomers = [];
  await commands(async (cmd) => {
    if (cmd.cmd === "wait") {
      const t0 = now();
      await place(placed);
      await sleep(300); // a session that should not start would have by now
      const ok = placed.filter((r) => r.token && r.instructions && !r.err && !r.starting);
      const errors = tally(placed.filter((r) => !ok.includes(r)).map((r) => r.err ?? r.last));
      const started = placed.filter((r) => r.starting).length;
      return [true, { placed: ok.length, started, errors, seconds: (now() - t0) / 1000 }];
    }
    if (cmd.cmd === "collect") {
      // Everyone dropped and back (or given up), within the command's bound.
      const settled = (m) => m.back && (m.socket || m.back.err || m.back.resume || m.back.disconnect);
      await until(placed, settled, cmd.timeout_s ?? 60);
      await Promise.race([Promise.all(placed.map((m) => m.returned)), sleep(1000)]);
      await sleep(200); // the rest of the last ones' step (JoiningSize, Waiting)
      return [true, { records: placed.map(backRecord), cpu: cpuUsage() }];
    }
    if (cmd.cmd === "fill") {
      // Newcomers through the new leader fill every pool: each campaign starts one session.
      const t0 = now();
      const slots = job.slugs.flatMap((slug, c) =>
        Array.from({ length: job.per_session - job.counts[c] }, () => slug),
      );
      const url = job.urls[job.urls.length - 1];
      const joined = await drive(
        slots.length,
        { mode: "closed", concurrency: job.concurrency ?? 100 },
        (k) => participant(placed.length + k, slots[k], { stay: true, url }),
      );
      newcomers.push(...joined);
      const everyone = [...placed.filter((m) => m.socket).map((m) => m.socket), ...newcomers];
      await until(everyone, (r) => r.starting || r.err || r.closed, cmd.timeout_s ?? 60);
      return [
        true,
        {
          t0,
          records: placed.map(backRecord),
          newcomers: newcomers.map(strip),
        },
      ];
    }
    for (const ws of open) ws.close(1000);
    const deadline = now() + 10000;
    while (open.size && now() < deadline) await sleep(50);
    return [false, { left: open.size, cpu: cpuUsage() }];
  });
  shutdown(0);
}

// -- a simulated study (bench/study.py, scenario 12) ------------------------------------------
//
// job.participants: the harness's seeded schedule, one entry each: {i, slug, at_ms (arrival,
// from the start), role, leave_ms, ready_ms}. Roles: "stay" (answers every ReadyCheck after
// ready_ms), "silent" (never answers one), "leave" (sends Leave leave_ms after its Agree),
// "close" (closes its socket, code 1000, leave_ms after its Agree). Everyone Agrees at once.
// One record each: arrival, Agree, the frames that ended its wait, and every outcome seen
// (there must be exactly one).
function studyParticipant(p) {
  return new Promise((resolve) => {
    const r = { i: p.i, slug: p.slug, role: p.role, at_ms: p.at_ms, t0: now(), checks: 0 };
    r.browser_id = `${job.run_id ?? "run"}-study-${p.i}`;
    r.outcomes = []; // the Disconnect reasons seen; our own close counts as "closed"
    r.refused = []; // Error frames (a Leave while the session is being created, say)
    let done = false;
    const ws = socket(`${job.url}?slug=${encodeURIComponent(p.slug)}`);
    const later = (ms, action) => setTimeout(() => ws.readyState === WebSocket.OPEN && action(), ms);
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(
      () => {
        r.err = `timeout after ${r.last ?? "nothing"}`;
        ws.terminate();
        finish();
      },
      (job.flow_timeout_s ?? 180) * 1000,
    );
    ws.on("message", (data) => {
      const t = now();
      const f = JSON.parse(data);
      r.last = f.kind;
      switch (f.kind) {
        case "State":
          ws.send(frame("Land", r.browser_id));
          break;
        case "Consent":
          ws.send(frame("Agree"));
          r.agree = now();
          if (p.role === "leave") later(p.leave_ms, () => leaveNow(ws, r));
          if (p.role === "close") later(p.leave_ms, () => closeNow(ws, r));
          break;
        case "Instructions":
          r.instructions = r.instructions ?? t;
          break;
        case "Pending":
          r.pending = r.pending ?? t;
          break;
        case "ReadyCheck":
          r.checks += 1;
          r.ready_check = r.ready_check ?? t;
          if (p.role !== "silent") {
            later(p.ready_ms, () => {
              ws.send(frame("Ready"));
              r.ready = now();
            });
          }
          break;
        case "Starting":
          r.starting = t;
          r.url = f.payload;
          break;
        case "Exit":
          r.exit = f.payload.outcome;
          break;
        case "Disconnect":
          r.disconnect = t;
          r.outcomes.push(f.payload);
          break;
        case "Error":
          r.refused.push(String(f.payload).slice(0, 80));
          break;
        case "Resume":
        case "JoiningSize":
        case "Waiting":
          break;
        default:
          r.err = `unexpected ${f.kind}`;
      }
    });
    ws.on("error", (e) => {
      r.err = r.err ?? `socket: ${e.message}`;
    });
    ws.on("close", (code) => {
      r.closed = now();
      r.code = code;
      finish();
    });
  });
}

function leaveNow(ws, r) {
  if (r.outcomes.length) return;
  ws.send(frame("Leave"));
  r.leave_sent = now();
}

function closeNow(ws, r) {
  if (r.outcomes.length) return;
  r.outcomes.push("closed");
  r.disconnect = now();
  ws.close(1000);
}

async function studyJob() {
  const t0 = startAt();
  const flows = job.participants.map(
    (p) =>
      new Promise((resolve) => {
        setTimeout(() => studyParticipant(p).then(resolve), Math.max(0, t0 + p.at_ms - now()));
      }),
  );
  const records = await Promise.all(flows);
  write({ t0, records });
}

const jobs = {
  join: joinJob,
  echo: echoJob,
  probe: probeJob,
  hold: holdJob,
  fanout: fanoutJob,
  supervise: superviseJob,
  restart: restartJob,
  failover: failoverJob,
  study: studyJob,
};
jobs[job.kind]()
  .then(() => shutdown(0))
  .catch((error) => {
    process.stderr.write(`loadgen: ${error.stack ?? error}\n`);
    shutdown(1);
  });
