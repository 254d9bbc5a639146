// A TCP proxy on loopback that holds every chunk, both ways, for `delayMs` before passing it on: a
// slow Redis or a slow IdP, for the fault tests. The delay can change while connections are open.
import net from 'node:net';

export interface DelayProxy {
  readonly port: number;
  /** Milliseconds each chunk waits from now on (0: pass at once). */
  delayMs: number;
  close(): Promise<void>;
}

/** `targetPort` may be a function, asked at each connection: a target that starts after its proxy. */
export async function startDelayProxy(targetPort: number | (() => number), listenPort = 0): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  // Chunks still held when the proxy closes: their timers are cleared so that nothing outlives close().
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;
  const later = (fn: () => void, ms: number) => {
    if (closed) return; // every socket is destroyed already
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  const proxy = { delayMs: 0 } as { delayMs: number };
  const pipe = (from: net.Socket, to: net.Socket) => {
    // Chunks keep their order: each leaves no earlier than the one before it.
    let lastAt = 0;
    from.on('data', (chunk) => {
      const at = Math.max(Date.now() + proxy.delayMs, lastAt);
      lastAt = at;
      later(() => {
        if (!to.destroyed) to.write(chunk);
      }, at - Date.now());
    });
    from.on('end', () => later(() => to.end(), Math.max(0, lastAt - Date.now())));
    from.on('error', () => to.destroy());
    from.on('close', () => later(() => to.destroy(), Math.max(0, lastAt - Date.now()) + 10));
  };
  const server = net.createServer((client) => {
    const upstream = net.connect({ port: typeof targetPort === 'number' ? targetPort : targetPort(), host: '127.0.0.1' });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  return Object.assign(proxy, {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        for (const s of sockets) s.destroy();
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
      }),
  });
}
