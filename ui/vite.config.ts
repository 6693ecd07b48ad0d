/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The daemon serves the app at the origin root; /api/v1 is same-origin. `npm run dev`
// proxies the API to a running daemon (FLM_UI_DEV_API, default the loopback UI port).
export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    // No inline module preload polyfill: the daemon's CSP forbids inline scripts.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: { '/api': process.env.FLM_UI_DEV_API ?? 'http://127.0.0.1:8782' },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test/setup.ts'],
  },
});
