import { defineConfig } from "vite";

// The service worker: one classic script at dist/sw.js (a stable name at the
// root, so that its scope is the whole app and the browser finds updates),
// built after the app into the same directory.
export default defineConfig({
  publicDir: false,
  build: {
    outDir: "dist",
    emptyOutDir: false,
    sourcemap: true,
    target: "es2022",
    lib: {
      entry: "src/sw/sw.ts",
      formats: ["iife"],
      name: "notifySW",
      fileName: () => "sw.js",
    },
  },
});
