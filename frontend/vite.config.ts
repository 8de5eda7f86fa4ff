/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";
import type { ProxyOptions } from "vite";

// `npm run dev` proxies the API to a gateway: ECHOBASE_API_URL, else blue's default port.
const api = process.env.ECHOBASE_API_URL ?? "http://127.0.0.1:3102";
const toGateway: ProxyOptions = {
  target: api,
  // The dev server is not one of the gateway's allowed origins; the gateway lets a request
  // from a loopback peer through when it has neither Origin nor Referer.
  configure: (proxy) =>
    proxy.on("proxyReq", (request) => {
      request.removeHeader("origin");
      request.removeHeader("referer");
    }),
};

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    sourcemap: false,
    // The polyfill would be an inline script, which the Content-Security-Policy refuses.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  server: { proxy: { "/api": toGateway, "/health": toGateway } },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test-setup.ts"],
    css: false,
  },
});
