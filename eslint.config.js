// ESLint for kagome's TypeScript: only rules that catch real mistakes, type-aware so a promise
// left floating or handed where a callback's result is ignored is seen across modules.
// Style (line length, quotes) is the formatter's (.prettierrc.json), not the linter's.
// `npm run lint` runs it; `npm test` runs it before building and testing.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    // Compiled output, installed packages and the test runner's copy are not sources.
    ignores: ['dist/**', 'node_modules/**', 'packaging/**', '**/*.js', '**/*.d.ts'],
  },
  {
    files: [
      'lib/**/*.ts',
      'dbus/**/*.ts',
      'bin/**/*.ts',
      'xdg/**/*.ts',
      'test/**/*.ts',
      'bench/**/*.ts',
    ],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits loses its rejection (an unhandled rejection ends the service)
      // and its ordering; fire-and-forget is written `void p` with a comment saying why.
      // node:test's test() and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'it', 'describe', 'suite', 'only', 'skip', 'todo'],
            },
          ],
        },
      ],
      // An async function where a void callback is expected (an event handler, a timer, an
      // if's condition): its rejection is lost and a condition is always true.
      '@typescript-eslint/no-misused-promises': 'error',
      // `await` on something that is not a promise is a misunderstanding of the called API.
      '@typescript-eslint/await-thenable': 'error',
      // A switch over a union names every member, even with a default: a new member (a field
      // code, a bridge kind) is then a list of places to decide, not a silent default.
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: false, requireDefaultForNonUnion: false },
      ],
      eqeqeq: 'error',
    },
  },
  // The layers (CONTRIBUTING.md): bin/ → dbus/ → lib/ → xdg/, and a leaf that everything may
  // use (lib/errors.ts, lib/requirements.ts). An import that runs the other way fails here.
  {
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(\\.\\./)+(dbus|bin)/',
              message: 'lib/ is the engine: it does not import dbus/ or bin/ (CONTRIBUTING.md).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['dbus/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^(\\.\\./)+bin/', message: 'dbus/ does not import bin/ (CONTRIBUTING.md).' },
          ],
        },
      ],
    },
  },
  {
    files: ['xdg/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(\\.\\./)+(lib/(?!(errors|requirements)\\.js$)|dbus/|bin/)',
              message:
                'xdg/ holds freedesktop formats: of lib/ it imports only errors.js and requirements.js (CONTRIBUTING.md).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['lib/errors.ts', 'lib/requirements.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.\\.?/(?!errors\\.js$)',
              message: 'the leaf imports nothing of kagome but errors.js (CONTRIBUTING.md).',
            },
          ],
        },
      ],
    },
  },
);
