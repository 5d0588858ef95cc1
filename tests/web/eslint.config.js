// ESLint (flat config) for the demo page's modules (static/**/*.js, browser) and these
// tests (node). run.sh runs it from the repository root:
//   node tests/web/node_modules/eslint/bin/eslint.js -c tests/web/eslint.config.js static tests/web
import js from '@eslint/js';
import globals from 'globals';

const quality = {
  'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
  'no-var': 'error',
  'prefer-const': 'error',
  eqeqeq: ['error', 'always'],
  curly: ['error', 'multi-line'],
  'no-eval': 'error', // the page runs under script-src 'self': no eval of any kind
  'no-implied-eval': 'error',
  'no-new-func': 'error',
  'no-console': 'error',
  'no-shadow': 'error',
  'no-use-before-define': ['error', { functions: false, classes: true, variables: true }],
  'no-param-reassign': 'off',
  'no-return-await': 'off',
  'prefer-template': 'error',
  'object-shorthand': 'error',
  'no-await-in-loop': 'off',
};

export default [
  { ignores: ['**/node_modules/**', '**/artifacts/**', 'static/vendor/**'] },
  js.configs.recommended,
  {
    files: ['static/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.browser } },
    rules: quality,
  },
  {
    files: ['tests/web/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.node, ...globals.browser } },
    rules: { ...quality, 'no-console': 'off' },
  },
];
