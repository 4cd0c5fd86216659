// @ts-check
// Lint: rules that catch real faults (floating promises, promises where a value is expected, `any`
// leaking in, unused code), not style: the formatter (Prettier) owns layout.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'runs/', 'rank-tables/', 'test/fixtures/'] },
  {
    files: ['**/*.{ts,mts}'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // An async method without await still turns a throw into a rejection; interfaces ask for promises.
      '@typescript-eslint/require-await': 'off',
      // Control characters in patterns are deliberate here: hostile values are refused by them.
      'no-control-regex': 'off',
      // A redundant `as` or `!` is noise, not a fault; it would only churn code seven people edit.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests read JSON and use vitest's asymmetric matchers (typed `any`); a wrong shape fails the assertion.
    // They also destructure functions from modules and pass methods to expect(), which unbound-method flags.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.{js,mjs}', 'bin/npurun'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: { 'no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }] },
  },
  {
    // The report page's script runs in the browser, and so do bench's page.evaluate() callbacks.
    files: ['src/report/assets/**/*.js', 'bench/**/*.mjs'],
    languageOptions: { globals: globals.browser },
  },
);
