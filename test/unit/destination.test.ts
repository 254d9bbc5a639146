// WebDAV's Destination header as the second path idgate judges (check/destination.ts).
import { destinationPathOf } from '../../service/src/check/destination.js';

const HOST = 'app.example.com:8080';

test.each([
  ['/dav/b', '/dav/b'],
  ['/dav/x/../b', '/dav/b'],
  ['/dav/%2e%2e/admin/x', '/admin/x'],
  ['/dav//b/', '/dav/b/'],
  ['http://app.example.com:8080/dav/b', '/dav/b'],
  ['https://APP.example.com.:8080/dav/b', '/dav/b'],
  ['http://app.example.com:8080', '/'],
])('%s is the path %s', (value, path) => {
  expect(destinationPathOf(value, HOST)).toEqual({ path });
});

test.each([
  ['http://other.example/dav/b', 'another host'],
  ['http://app.example.com/dav/b', 'another host'],
  ['http://app.example.com:9090/dav/b', 'another host'],
  ['dav/b', 'not a path'],
  ['/dav/b?x=1', 'a query'],
  ['/dav/..;/admin/', 'semicolon'],
  ['/dav/..%2fadmin/', 'Destination: the path holds'],
  ['/../x', 'above the root'],
  ['/dav/a b', 'not a path'],
])('%s is refused (%s)', (value, problem) => {
  expect(destinationPathOf(value, HOST)).toEqual({ problem: expect.stringContaining(problem) });
});
