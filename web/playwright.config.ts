import { defineConfig } from "@playwright/test";

// Browser journeys against a running stack that serves web/out on the edge's origin.
// BASE_URL: e.g. http://127.0.0.1:8080 (socialmesh up) or the dev proxy (scripts/serve.mjs).
// The browser is the system Chromium (never `npx playwright install`).
export default defineConfig({
  testDir: "e2e",
  timeout: 90_000,
  expect: { timeout: 20_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: process.env.BASE_URL ?? "http://127.0.0.1:3100",
    viewport: { width: 1000, height: 900 },
    trace: "off",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
