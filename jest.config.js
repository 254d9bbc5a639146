/** @type {import('jest').Config} */
export default {
  preset: 'ts-jest/presets/default-esm',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  testTimeout: 30000,
  // Two test files at a time on a 2-core machine (jest would run one): the end-to-end and fault tests
  // spend most of their time waiting on the processes they start, and each picks its own ports and
  // processes (docs/design-notes.md has the figures).
  maxWorkers: 2,
};
