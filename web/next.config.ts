import type { NextConfig } from "next";
import { fileURLToPath } from "node:url";

const config: NextConfig = {
  // Static files only (no Node server in production): every route is a real exported page,
  // and what it shows comes from its query string (/profile?handle=…, /post?id=…).
  output: "export",
  reactStrictMode: true,
  poweredByHeader: false,
  images: { unoptimized: true },
  turbopack: { root: fileURLToPath(new URL(".", import.meta.url)) },
};

export default config;
