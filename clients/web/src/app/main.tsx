import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import "../react/notify.css";
import "./app.css";
import { App } from "./App";
import { loadAppConfig } from "./config";
import { applyTheme, loadTheme } from "./theme";

applyTheme(loadTheme());
void loadAppConfig().then(() =>
  createRoot(document.getElementById("root")!).render(
    <StrictMode>
      <App />
    </StrictMode>,
  ),
);
