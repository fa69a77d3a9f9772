import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves the app with hot reload and forwards the API to a
// notifyd started with `make run` (grpc-web, REST, and the dev token endpoint).
const notifyd = process.env.NOTIFYD_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    target: "es2022",
  },
  server: {
    host: "127.0.0.1",
    proxy: {
      "/dev/token": notifyd,
      "/v1": notifyd,
      "/notify.v1.": notifyd,
    },
  },
});
