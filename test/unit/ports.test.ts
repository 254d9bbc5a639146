// How the launcher gets ports for its children: a Node child binds port 0 and reports the port in a line
// (waitForReport, loggedPort); redis-server and HAProxy, which cannot, start on a picked port and are
// started again on another when that one was taken in between (startOnFreePort).
import { loggedPort, portTaken, startOnFreePort, startProcess, waitForReport } from '../../stack/processes.js';

describe('startOnFreePort', () => {
  test('a start whose port was taken is tried again on another port', async () => {
    const tried: number[] = [];
    const { port, started } = await startOnFreePort(async (port) => {
      tried.push(port);
      if (tried.length < 3) throw new Error(`redis exited:\nCould not create server TCP listening socket *:${port}: bind: Address already in use`);
      return 'up';
    });
    expect(started).toBe('up');
    expect(tried).toHaveLength(3);
    expect(new Set(tried).size).toBe(3);
    expect(port).toBe(tried[2]);
  });

  test('any other failure is thrown at once', async () => {
    let calls = 0;
    await expect(startOnFreePort(async () => {
      calls++;
      throw new Error('haproxy exited: parsing [haproxy.cfg:12] : unknown keyword');
    })).rejects.toThrow(/unknown keyword/);
    expect(calls).toBe(1);
  });

  test('it gives up after the attempts it was given', async () => {
    let calls = 0;
    await expect(startOnFreePort(async () => {
      calls++;
      throw new Error('[ALERT] Starting frontend fe_public: cannot bind socket (Address already in use)');
    }, 2)).rejects.toThrow(/cannot bind socket/);
    expect(calls).toBe(2);
  });

  test.each([
    ['Could not create server TCP listening socket *:6379: bind: Address already in use', true],
    ['[ALERT]    (1) : Starting frontend fe_public: cannot bind socket (Address already in use) [127.0.0.1:8080]', true],
    ['cannot start haproxy: 127.0.0.1:8080 is already in use', true],
    ['haproxy exited before listening on 8080: parsing error', false],
  ])('portTaken(%j) is %s', (message, taken) => {
    expect(portTaken(new Error(message))).toBe(taken);
  });
});

describe('waitForReport', () => {
  test('resolves with what the first accepted line of the output says', async () => {
    const child = startProcess('reporter', process.execPath, ['-e', 'console.log("starting"); setTimeout(() => console.log(JSON.stringify({ level: "info", msg: "idgate listening on http://127.0.0.1:4321", host: "127.0.0.1", port: 4321 })), 50); setTimeout(() => {}, 5000)']);
    try {
      await expect(waitForReport(child, loggedPort('idgate listening on '))).resolves.toBe(4321);
    } finally {
      await child.stop();
    }
  });

  test('rejects with the output when the child exits without reporting', async () => {
    const child = startProcess('quitter', process.execPath, ['-e', 'console.error("Address already in use"); process.exit(1)']);
    await expect(waitForReport(child, loggedPort('idgate listening on '))).rejects.toThrow(/quitter exited before reporting its port:\n[^]*Address already in use/);
    await child.stop();
  });
});
