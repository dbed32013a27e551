// The table's runner for the guest page's connection protocol (receiver/web/send-core.js):
// evaluated in the page with one case (tests/cases/sender_connection.py says the format);
// returns what it saw after each step, in the shape the Python runner reports.
async (kase) => {
  const core = await import('/static/send-core.js');
  const c = kase.config;
  const WALL_ZERO_US = 1_700_000_000_000_000;
  const frameSamples = Math.round((c.rate_hz * c.frame_ms) / 1000);
  let k = 0;
  const protocol = new core.SenderProtocol({
    name: 'case',
    params: {
      codec: c.codec,
      rateHz: c.rate_hz,
      channels: c.channels,
      frameMs: c.frame_ms,
      bitrate: 32000,
      preSkip: c.pre_skip,
      frameSamples,
    },
    spool: new core.Spool(Math.round(c.spool_s * c.rate_hz), c.channels, c.rate_hz),
    policy: {
      reconnect: c.reconnect,
      reconnectTimeoutS: c.reconnect_timeout_s,
      finishTimeoutS: c.finish_timeout_s,
      backoffFirstS: c.backoff_first_s,
      backoffMaxS: c.backoff_max_s,
      retryAfterMaxS: c.retry_after_max_s,
      silenceTimeoutS: c.silence_timeout_s,
      opusPrimeS: c.opus_prime_s,
      retryFinalErrorsWhenResuming: c.retry_final_errors_when_resuming,
    },
    random: () => c.random[k++ % c.random.length],
    streamId: 'c0ffee',
    software: 'test',
  });
  const errorOf = (e) => {
    if (e.kind === 'unreachable') return { message: `cannot reach the receiver (${e.why})`, retry: true, refused: false };
    if (e.kind === 'refused') {
      return { message: e.reason, retry: e.retry, refused: true, retryAfterS: e.retry_after_s ?? null };
    }
    return { message: e.message, retry: e.kind === 'retry', refused: false };
  };
  const wallUs = (at) => WALL_ZERO_US + Math.round(at * 1e6);
  const event = (step) => {
    const now = step.at;
    switch (step.event) {
      case 'captured': {
        const position = protocol.spool.end + (step.gap || 0);
        const pcm = new Int16Array(step.samples * c.channels).fill(step.value ?? 1000);
        const captureUs = WALL_ZERO_US + Math.round((position * 1e6) / c.rate_hz);
        return protocol.captured(now, core.makeBlock(position, pcm, captureUs, c.channels));
      }
      case 'connected':
        return protocol.connected(now, {
          type: 'accept',
          protocol: step.version ?? 2,
          stream: 'case',
          recording: null,
          resume_timestamp: step.resume,
          resume_secret: step.secret ?? null,
        });
      case 'hello': // the shell sends it: nothing to do but what it keeps
        protocol.hello(wallUs(now));
        return [];
      case 'connect_failed':
        return protocol.connectFailed(now, errorOf(step.error));
      case 'ack':
        return protocol.ack(now, step.position);
      case 'done':
        return protocol.done(now, { type: 'done', timestamp: step.timestamp, gap_samples: step.gap_samples || 0 });
      case 'closed':
        return protocol.closed(now, step.code, step.reason || '');
      case 'start':
      case 'stop':
      case 'tick':
      case 'heard':
      case 'retry':
        return protocol[step.event](now);
      default:
        return [];
    }
  };
  const describe = (a, now) => {
    if (a.type === 'wait') return ['wait', a.until - now];
    if (a.type === 'close') return [a.abort ? 'abort' : 'close'];
    if (a.type === 'notice') return ['notice', a.kind];
    if (a.type === 'finish') return ['finish', a.state];
    return [a.type];
  };
  let full = false;
  const seen = [];
  for (const step of kase.steps) {
    if (step.event === 'link') full = step.full;
    let actions = event(step);
    for (let more; !full && (more = protocol.writable(wallUs(step.at))).length; ) actions = actions.concat(more);
    const r = protocol.report;
    seen.push({
      actions: actions.filter((a) => a.type !== 'send').map((a) => describe(a, step.at)),
      sent: actions.filter((a) => a.type === 'send').map((a) => [a.header.timestamp, a.header.samples, a.header.flags]),
      state: protocol.state,
      attempt: protocol.attempt,
      deadline: protocol.deadline,
      report: {
        captured: r.capturedSamples,
        acked: r.ackedSamples,
        confirmed: r.confirmedSamples,
        lost: r.lostSamples,
        resent: r.resentSamples,
        reconnects: r.reconnects,
        packets: r.packetsSent,
      },
    });
  }
  return seen;
}
