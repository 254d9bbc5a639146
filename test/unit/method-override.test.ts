// `_method` in the query, read as the frameworks that honour it read it (check/method-override.ts).
import { methodOverrideOf } from '../../service/src/check/method-override.js';

test.each([
  ['', undefined],
  ['a=1&b=2', undefined],
  ['method=DELETE', undefined],
  ['x_method=DELETE', undefined],
  ['_method=DELETE', { method: 'DELETE' }],
  ['a=1&_method=delete', { method: 'DELETE' }],
  ['_METHOD=Put', { method: 'PUT' }],
  ['%5Fmethod=DELETE', { method: 'DELETE' }],
  ['_%6Dethod=DELETE', { method: 'DELETE' }],
  ['.method=DELETE', { method: 'DELETE' }],
  // PHP drops leading spaces from a name before it renames the rest: " method" is "method" there.
  ['+method=DELETE', undefined],
  ['%20method=DELETE', undefined],
  ['_method+=DELETE', { method: 'DELETE' }],
  ['[method=DELETE', { method: 'DELETE' }],
  ['_method[]=DELETE', { method: 'DELETE' }],
  ['_method=DELETE&_method=delete', { method: 'DELETE' }],
  ['_method=%44ELETE', { method: 'DELETE' }],
  ['%zz=1&q=%zz', undefined],
])('%s: %j', (query, expected) => {
  expect(methodOverrideOf(query)).toEqual(expected);
});

test.each([
  ['_method=DELETE&_method=GET', 'two methods'],
  ['_method=', 'is not a method'],
  ['_method', 'is not a method'],
  ['_method=DEL%20ETE', 'is not a method'],
  ['_method=%zz', 'is not a method'],
  ['_method=GET%0AX', 'is not a method'],
])('%s has no single method to judge', (query, problem) => {
  expect(methodOverrideOf(query)).toEqual({ problem: expect.stringContaining(problem) });
});
